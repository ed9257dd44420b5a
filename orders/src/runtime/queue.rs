//! The local stand-in for Lambda's SQS event source mapping: receives batches from a
//! route's queue, hands them to the route's handler as an `SqsEvent`, deletes what
//! succeeded and leaves the reported failures to reappear after the visibility timeout,
//! until the queue's redrive policy moves them to the dead-letter queue.

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use backend::{QueueMessage, Queues};
use handlers::Handler;
use tokio::sync::watch;

/// How long an idle receive waits for a message (SQS long polling).
const WAIT: Duration = Duration::from_secs(1);

pub struct QueuePoller {
    pub queue: String,
    pub queues: Arc<dyn Queues>,
    pub handler: Arc<Handler>,
    pub batch_size: usize,
    pub visibility_timeout: Duration,
    /// `arn:aws:sqs:<region>:<account>:<queue>`, as records carry it.
    pub queue_arn: String,
    pub region: String,
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
            let receipts: HashMap<String, String> = messages
                .iter()
                .map(|m| (m.message_id.clone(), m.receipt_handle.clone()))
                .collect();
            let response = self.handler.handle(self.event(messages)).await;
            let failed: Vec<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            let done: Vec<String> = receipts
                .into_iter()
                .filter(|(id, _)| !failed.contains(&id.as_str()))
                .map(|(_, receipt)| receipt)
                .collect();
            if let Err(e) = self.queues.delete(&self.queue, &done).await {
                tracing::error!(queue = %self.queue, error = %e, "deleting handled messages failed; they will be delivered again");
            }
        }
        tracing::info!(queue = %self.queue, "queue poller stopped");
    }

    fn event(&self, messages: Vec<QueueMessage>) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = messages
            .into_iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.attributes.insert(
                    "ApproximateReceiveCount".into(),
                    m.receive_count.to_string(),
                );
                r.attributes.insert(
                    "SentTimestamp".into(),
                    m.sent_at.timestamp_millis().to_string(),
                );
                r.message_id = Some(m.message_id);
                r.receipt_handle = Some(m.receipt_handle);
                r.body = Some(m.body);
                r.event_source = Some("aws:sqs".into());
                r.event_source_arn = Some(self.queue_arn.clone());
                r.aws_region = Some(self.region.clone());
                r
            })
            .collect();
        event
    }
}
