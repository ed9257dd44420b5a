//! The local stand-in for the intake Lambda's SQS event source mapping: receives batches
//! from the intake queue, hands them to the intake handler, deletes what is done with
//! (applied, duplicate, or dead-lettered as invalid by the handler itself) and records the
//! error of each failed message, which reappears after the visibility timeout until the
//! redrive policy moves it to the intake DLQ.

use std::{sync::Arc, time::Duration};

use backend::Queues;
use command_api::{Intake, IntakeDelivery};
use tokio::sync::watch;

/// How long an idle receive waits for a message (SQS long polling).
const WAIT: Duration = Duration::from_secs(1);

pub struct IntakePoller {
    pub intake: Intake,
    pub queues: Arc<dyn Queues>,
    pub batch_size: usize,
    pub visibility_timeout: Duration,
}

impl IntakePoller {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let queue = self.intake.queue().to_owned();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let received = tokio::select! {
                r = self.queues.receive(&queue, self.batch_size, self.visibility_timeout, WAIT) => r,
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
            let (deliveries, receipts): (Vec<IntakeDelivery>, Vec<String>) =
                messages.into_iter().map(IntakeDelivery::received).unzip();
            let ids: Vec<String> = deliveries.iter().map(|d| d.message_id.clone()).collect();
            let failed = self.intake.handle(deliveries).await;
            let mut done = Vec::with_capacity(ids.len());
            for (id, receipt) in ids.iter().zip(receipts) {
                match failed.iter().find(|(failed_id, _)| failed_id == id) {
                    Some((_, error)) => {
                        if let Err(e) = self.queues.record_failure(&queue, &receipt, error).await {
                            tracing::warn!(queue, message_id = %id, error = %e, "could not record why a message failed");
                        }
                    }
                    None => done.push(receipt),
                }
            }
            if let Err(e) = self.queues.delete(&queue, &done).await {
                tracing::error!(queue, error = %e, "deleting handled messages failed; they will be delivered again");
            }
        }
        tracing::info!(queue, "intake poller stopped");
    }
}
