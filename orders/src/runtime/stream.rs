//! The local stand-in for Lambda's DynamoDB stream event source mapping: reads the change
//! feed in batches, hands each batch's events to the projector core, checkpoints what
//! succeeded and retries what did not.

use std::{sync::Arc, time::Duration};

use backend::{
    ChangeFeed, Checkpoint, EventPublisher, FeedError, ReadModel,
    telemetry::{Stage, timed},
};
use events_schema::Recorded;
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
    let mut failing: Option<(Checkpoint, u32)> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let batch = tokio::select! {
            batch = feed.next_batch(BATCH_SIZE, IDLE_WAIT) => batch,
            _ = shutdown.changed() => break,
        };
        let (positions, records): (Vec<Checkpoint>, Vec<Recorded>) = match batch {
            Ok(batch) if batch.is_empty() => continue,
            Ok(batch) => batch.into_iter().map(|c| (c.at, c.recorded)).unzip(),
            Err(FeedError::Unreadable { at, reason }) => {
                tracing::error!(at = %at, %reason, "the change feed holds a record that is not an order event");
                if let Some(skip) = give_up(&mut failing, at, &mut shutdown).await {
                    save(feed.as_ref(), &skip).await;
                }
                continue;
            }
            Err(FeedError::Store(e)) => {
                tracing::error!(error = %e, "reading the change feed failed; retrying");
                backoff(1, &mut shutdown).await;
                continue;
            }
        };
        let outcome = timed(Stage::Projector, projector.project(&records)).await;
        let done_upto = match outcome {
            Ok(()) => positions.last().cloned(),
            Err(failed) => {
                let at = positions[failed.first.min(positions.len() - 1)].clone();
                tracing::error!(at = %at, error = %failed, "projecting failed; retrying from the failed record");
                match give_up(&mut failing, at, &mut shutdown).await {
                    Some(skip) => Some(skip),
                    None => failed
                        .first
                        .checked_sub(1)
                        .and_then(|i| positions.get(i).cloned()),
                }
            }
        };
        if let Some(at) = done_upto {
            save(feed.as_ref(), &at).await;
        }
    }
    tracing::info!("projector stopped");
}

/// Counts another failure of the record at `at`: `Some(at)` once it has failed
/// `MAX_ATTEMPTS` times (to be checkpointed past), else waits before the retry.
async fn give_up(
    failing: &mut Option<(Checkpoint, u32)>,
    at: Checkpoint,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Checkpoint> {
    let attempts = match failing.take() {
        Some((seen, n)) if seen == at => n + 1,
        _ => 1,
    };
    if attempts >= MAX_ATTEMPTS {
        tracing::error!(at = %at, attempts, "skipping a stream record that keeps failing; run `orders rebuild` once fixed");
        return Some(at);
    }
    *failing = Some((at, attempts));
    backoff(attempts, shutdown).await;
    None
}

async fn save(feed: &dyn ChangeFeed, at: &Checkpoint) {
    if let Err(e) = feed.checkpoint(at).await {
        tracing::error!(error = %e, "saving the checkpoint failed; records will be projected again");
    }
}

/// Waits before a retry (longer each time), unless shutdown comes first.
async fn backoff(attempt: u32, shutdown: &mut watch::Receiver<bool>) {
    let delay = Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7)));
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}
