//! The local stand-in for Lambda's DynamoDB stream event source mapping: reads the change
//! feed in batches, hands each batch's events to the projector core, checkpoints what
//! succeeded and retries what did not.
//!
//! Like a mapping with `BisectBatchOnFunctionError`, bounded `MaximumRetryAttempts` and an
//! on-failure destination: after a failure the poller narrows down to the failing record
//! (batches of one), retries it with a growing backoff, and once it has failed
//! `max_attempts` times parks it ([`ParkedRecords`]) with its error and only then
//! checkpoints past it. Nothing is skipped: `orders parked replay` projects it later. If
//! parking itself fails, the record is not checkpointed and is tried again.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use backend::{
    ChangeFeed, Checkpoint, EventPublisher, FeedError, ListQuery, Page, ParkedRecords, ReadModel,
    StoreError,
    telemetry::{Stage, timed},
};
use events_schema::{Order, OrderId, Recorded};
use projector::Projector;
use tokio::sync::watch;

/// Records per batch, like the event source mapping's `BatchSize`.
const BATCH_SIZE: usize = 500;
/// How long an idle poll waits for a new record before asking again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// The first retry's wait; each further one doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct StreamPoller {
    pub feed: Arc<dyn ChangeFeed>,
    pub read_model: Arc<dyn ReadModel>,
    pub publisher: Arc<dyn EventPublisher>,
    pub parked: Arc<dyn ParkedRecords>,
    /// EventBridge `Source` of published events.
    pub source: String,
    /// Tries of one record before it is parked (at least 1).
    pub max_attempts: u32,
    /// Test hook: the read model refuses every order whose description contains this text.
    pub fail_marker: Option<String>,
}

/// The record being retried alone, and how often it has failed.
struct Suspect {
    at: Checkpoint,
    attempts: u32,
}

impl StreamPoller {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let read_model: Arc<dyn ReadModel> = match &self.fail_marker {
            Some(marker) => Arc::new(Refusing {
                inner: self.read_model.clone(),
                marker: marker.clone(),
            }),
            None => self.read_model.clone(),
        };
        let projector = Projector {
            read_model: read_model.as_ref(),
            publisher: self.publisher.as_ref(),
            source: &self.source,
        };
        // After a failure, batches of one until the failing record is done or parked.
        let mut isolate = false;
        let mut suspect: Option<Suspect> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let max = if isolate { 1 } else { BATCH_SIZE };
            let batch = tokio::select! {
                batch = self.feed.next_batch(max, IDLE_WAIT) => batch,
                _ = shutdown.changed() => break,
            };
            let (positions, records): (Vec<Checkpoint>, Vec<Recorded>) = match batch {
                Ok(batch) if batch.is_empty() => continue,
                Ok(batch) => batch.into_iter().map(|c| (c.at, c.recorded)).unzip(),
                Err(FeedError::Unreadable { at, reason }) => {
                    tracing::error!(at = %at, %reason, "the change feed holds a record that is not an order event");
                    isolate = true;
                    let error = format!("not an order event: {reason}");
                    self.failed(&mut suspect, at, None, &error, &mut shutdown)
                        .await;
                    continue;
                }
                Err(FeedError::Store(e)) => {
                    tracing::error!(error = %e, "reading the change feed failed; retrying");
                    backoff(1, &mut shutdown).await;
                    continue;
                }
            };
            match timed(Stage::Projector, projector.project(&records)).await {
                Ok(()) => {
                    if let Some(last) = positions.last() {
                        save(self.feed.as_ref(), last).await;
                    }
                    isolate = false;
                    suspect = None;
                }
                Err(failed) => {
                    let first = failed.first.min(positions.len() - 1);
                    if let Some(done) = first.checked_sub(1).map(|i| &positions[i]) {
                        save(self.feed.as_ref(), done).await;
                    }
                    let at = positions[first].clone();
                    if positions.len() - first > 1 {
                        // Any of the rest may be the cause: retry them one at a time.
                        tracing::warn!(at = %at, error = %failed, "projecting a batch failed; retrying its records one at a time");
                        isolate = true;
                        continue;
                    }
                    tracing::error!(at = %at, error = %failed, "projecting a record failed");
                    isolate = true;
                    self.failed(
                        &mut suspect,
                        at,
                        Some(&records[first]),
                        &failed.reason,
                        &mut shutdown,
                    )
                    .await;
                }
            }
        }
        tracing::info!("projector stopped");
    }

    /// Counts another failure of the record at `at`: parks it and checkpoints past it once
    /// it has failed `max_attempts` times, else waits before the retry.
    async fn failed(
        &self,
        suspect: &mut Option<Suspect>,
        at: Checkpoint,
        recorded: Option<&Recorded>,
        error: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let attempts = match suspect.take() {
            Some(s) if s.at == at => s.attempts + 1,
            _ => 1,
        };
        if attempts < self.max_attempts.max(1) {
            *suspect = Some(Suspect { at, attempts });
            backoff(attempts, shutdown).await;
            return;
        }
        // Parked first, then checkpointed: a crash in between parks it again (the same
        // entry), never loses it.
        match self.parked.park(&at, recorded, attempts, error).await {
            Ok(()) => {
                backend::emf::parked(1, &at.to_string());
                tracing::error!(at = %at, attempts, %error, "parked a stream record that keeps failing; `orders parked replay` projects it once fixed");
                save(self.feed.as_ref(), &at).await;
            }
            Err(e) => {
                tracing::error!(at = %at, error = %e, "parking a failing record failed; it stays in the feed and is tried again");
                *suspect = Some(Suspect { at, attempts });
                backoff(attempts, shutdown).await;
            }
        }
    }
}

async fn save(feed: &dyn ChangeFeed, at: &Checkpoint) {
    if let Err(e) = feed.checkpoint(at).await {
        tracing::error!(error = %e, "saving the checkpoint failed; records will be projected again");
    }
}

/// Waits before a retry (longer each time), unless shutdown comes first.
async fn backoff(attempt: u32, shutdown: &mut watch::Receiver<bool>) {
    let delay = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}

/// The test hook's read model: refuses a batch holding an order with the marker.
struct Refusing {
    inner: Arc<dyn ReadModel>,
    marker: String,
}

#[async_trait]
impl ReadModel for Refusing {
    async fn apply(&self, orders: &[Order]) -> Result<(), StoreError> {
        if let Some(o) = orders
            .iter()
            .find(|o| o.description.as_str().contains(self.marker.as_str()))
        {
            return Err(StoreError::new(
                "updating the read model",
                format!("injected failure for order {}", o.order_id),
            ));
        }
        self.inner.apply(orders).await
    }

    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, StoreError> {
        self.inner.get(order_id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
}
