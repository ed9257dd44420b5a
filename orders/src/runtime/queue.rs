//! The local stand-in for Lambda's SQS event source mapping: receives batches from a queue
//! (a route's queue, or the intake queue), hands them to the queue's consumer, deletes what
//! succeeded and records the error of each reported failure, which reappears after the
//! visibility timeout until the queue's redrive policy moves it to the dead-letter queue.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use backend::{
    QueueMessage, Queues,
    telemetry::{Stage, timed},
};
use handlers::{Delivery, Handler};
use tokio::sync::watch;

/// How long an idle receive waits for a message (SQS long polling).
const WAIT: Duration = Duration::from_secs(1);

/// What a queue's messages are handed to: a status handler, or the intake (each a Lambda
/// function on AWS).
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Handles a batch; the message ids of those that failed, each with its error (every
    /// other message is done with).
    async fn consume(&self, messages: Vec<QueueMessage>) -> Vec<(String, String)>;
    /// The pipeline stage whose CPU time handling a batch (its deletes included) counts
    /// towards, if any (`/metrics`).
    fn stage(&self) -> Option<Stage> {
        None
    }
}

#[async_trait]
impl Consumer for Handler {
    async fn consume(&self, messages: Vec<QueueMessage>) -> Vec<(String, String)> {
        let deliveries: Vec<Delivery> = messages
            .into_iter()
            .map(|m| Delivery::received(m).0)
            .collect();
        self.handle(deliveries)
            .await
            .into_iter()
            .map(|f| (f.id, f.error))
            .collect()
    }

    fn stage(&self) -> Option<Stage> {
        Some(Stage::Handlers)
    }
}

#[async_trait]
impl Consumer for command_api::Intake {
    async fn consume(&self, messages: Vec<QueueMessage>) -> Vec<(String, String)> {
        let deliveries = messages
            .into_iter()
            .map(|m| command_api::IntakeDelivery::received(m).0)
            .collect();
        self.handle(deliveries).await
    }
}

pub struct QueuePoller {
    pub queue: String,
    pub queues: Arc<dyn Queues>,
    pub consumer: Arc<dyn Consumer>,
    pub batch_size: usize,
    pub visibility_timeout: Duration,
}

impl QueuePoller {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let queue = self.queue.as_str();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let received = tokio::select! {
                r = self.queues.receive(queue, self.batch_size, self.visibility_timeout, WAIT) => r,
                _ = shutdown.changed() => break,
            };
            let messages = match received {
                Ok(m) if m.is_empty() => continue,
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(queue, error = %e, "receiving failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
            };
            let work = self.settle(messages);
            match self.consumer.stage() {
                Some(stage) => timed(stage, work).await,
                None => work.await,
            }
        }
        tracing::info!(queue, "queue poller stopped");
    }

    /// Hands a batch to the consumer, then deletes what it is done with and records the
    /// error of each failure.
    async fn settle(&self, messages: Vec<QueueMessage>) {
        let queue = self.queue.as_str();
        let receipts: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.message_id.clone(), m.receipt_handle.clone()))
            .collect();
        let failed = self.consumer.consume(messages).await;
        let mut done = Vec::with_capacity(receipts.len());
        for (id, receipt) in receipts {
            match failed.iter().find(|(failed_id, _)| *failed_id == id) {
                Some((_, error)) => {
                    if let Err(e) = self.queues.record_failure(queue, &receipt, error).await {
                        tracing::warn!(queue, message_id = %id, error = %e, "could not record why a message failed");
                    }
                }
                None => done.push(receipt),
            }
        }
        if let Err(e) = self.queues.delete(queue, &done).await {
            tracing::error!(queue, error = %e, "deleting handled messages failed; they will be delivered again");
        }
    }
}
