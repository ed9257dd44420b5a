//! The local stand-in for Lambda's SQS event source mapping: receives batches from a
//! route's queue, hands them to the route's handler as deliveries, deletes what succeeded
//! and leaves the reported failures to reappear after the visibility timeout, until the
//! queue's redrive policy moves them to the dead-letter queue.

use std::{sync::Arc, time::Duration};

use backend::{
    Queues,
    telemetry::{Stage, timed},
};
use handlers::{Delivery, Handler};
use tokio::sync::watch;

/// How long an idle receive waits for a message (SQS long polling).
const WAIT: Duration = Duration::from_secs(1);

pub struct QueuePoller {
    pub queue: String,
    pub queues: Arc<dyn Queues>,
    pub handler: Arc<Handler>,
    pub batch_size: usize,
    pub visibility_timeout: Duration,
}

impl QueuePoller {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let received = tokio::select! {
                r = self.queues.receive(&self.queue, self.batch_size, self.visibility_timeout, WAIT) => r,
                _ = shutdown.changed() => break,
            };
            let messages = match received {
                Ok(m) if m.is_empty() => continue,
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(queue = %self.queue, error = %e, "receiving failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
            };
            let (deliveries, receipts): (Vec<Delivery>, Vec<String>) =
                messages.into_iter().map(Delivery::received).unzip();
            let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
            let work = async {
                let failed = self.handler.handle(deliveries).await;
                let mut done = Vec::with_capacity(ids.len());
                for (id, receipt) in ids.iter().zip(receipts) {
                    match failed.iter().find(|f| &f.id == id) {
                        None => done.push(receipt),
                        Some(f) => {
                            if let Err(e) = self
                                .queues
                                .record_failure(&self.queue, &receipt, &f.error)
                                .await
                            {
                                tracing::warn!(queue = %self.queue, error = %e, "recording a message's failure failed");
                            }
                        }
                    }
                }
                if let Err(e) = self.queues.delete(&self.queue, &done).await {
                    tracing::error!(queue = %self.queue, error = %e, "deleting handled messages failed; they will be delivered again");
                }
            };
            timed(Stage::Handlers, work).await;
        }
        tracing::info!(queue = %self.queue, "queue poller stopped");
    }
}
