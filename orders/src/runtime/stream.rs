//! The local stand-in for Lambda's DynamoDB stream event source mapping: reads the change
//! feed in batches, hands each batch to the projector exactly as Lambda would, checkpoints
//! what succeeded and retries what did not.

use std::{sync::Arc, time::Duration};

use backend::{ChangeFeed, EventPublisher, ReadModel};
use projector::Projector;
use tokio::sync::watch;

/// Records per batch, like the event source mapping's `BatchSize`.
const BATCH_SIZE: usize = 500;
/// How long an idle poll waits for a new record before asking again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// After this many failures of the same record it is skipped (and logged), like a mapping's
/// `MaximumRetryAttempts`; `orders rebuild` recomputes the projection from the events.
const MAX_ATTEMPTS: u32 = 10;

pub async fn run(
    feed: Arc<dyn ChangeFeed>,
    read_model: Arc<dyn ReadModel>,
    publisher: Arc<dyn EventPublisher>,
    source: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let projector = Projector {
        read_model: read_model.as_ref(),
        publisher: publisher.as_ref(),
        source: &source,
    };
    let mut failing: Option<(String, u32)> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let batch = tokio::select! {
            batch = feed.next_batch(BATCH_SIZE, IDLE_WAIT) => batch,
            _ = shutdown.changed() => break,
        };
        let batch = match batch {
            Ok(batch) if batch.records.is_empty() => continue,
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "reading the change feed failed; retrying");
                backoff(1, &mut shutdown).await;
                continue;
            }
        };
        let sequence: Vec<String> = batch
            .records
            .iter()
            .filter_map(|r| r.change.sequence_number.clone())
            .collect();
        let response = projector.handle(batch).await;
        let failed = response
            .batch_item_failures
            .first()
            .and_then(|f| f.item_identifier.clone());
        let done_upto = match &failed {
            None => sequence.last().cloned(),
            Some(seq) => {
                let attempts = match &failing {
                    Some((s, n)) if s == seq => n + 1,
                    _ => 1,
                };
                failing = Some((seq.clone(), attempts));
                if attempts >= MAX_ATTEMPTS {
                    tracing::error!(sequence_number = %seq, attempts, "skipping a stream record that keeps failing; run `orders rebuild` once fixed");
                    failing = None;
                    Some(seq.clone())
                } else {
                    let before = sequence.iter().take_while(|s| *s != seq).last().cloned();
                    backoff(attempts, &mut shutdown).await;
                    before
                }
            }
        };
        if let Some(seq) = done_upto
            && let Err(e) = feed.checkpoint(&seq).await
        {
            tracing::error!(error = %e, "saving the checkpoint failed; records will be projected again");
        }
    }
    tracing::info!("projector stopped");
}

/// Waits before a retry (longer each time), unless shutdown comes first.
async fn backoff(attempt: u32, shutdown: &mut watch::Receiver<bool>) {
    let delay = Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7)));
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}
