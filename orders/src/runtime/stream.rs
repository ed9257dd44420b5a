//! The local stand-in for Lambda's DynamoDB stream event source mapping: reads the change
//! feed in batches, hands each batch's events to the projector core, checkpoints what
//! succeeded and retries what did not.
//!
//! Like a mapping with `BisectBatchOnFunctionError`, bounded `MaximumRetryAttempts` and an
//! on-failure destination: after a failure the poller narrows down to the failing record
//! (batches of one), retries it with a growing backoff, and once it has failed
//! `max_attempts` times parks it ([`ParkedRecords`]) with its error and only then
//! checkpoints past it. Nothing is skipped: `orders parked replay` projects it later. If
//! parking itself fails, the record is not checkpointed and is tried again. An outage of
//! the read model or the bus (a retryable store error) is waited out without counting
//! towards parking: it is not the record's fault.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use backend::{
    ChangeFeed, Checkpoint, EventPublisher, FeedError, ListQuery, Page, ParkedRecords, ReadModel,
    StoreError,
    telemetry::{Stage, timed},
};
use events_schema::{Order, OrderId, Recorded, Status};
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
        let mut outage = 0u32;
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
                    outage = 0;
                }
                Err(failed) => {
                    let first = failed.first.min(positions.len() - 1);
                    if let Some(done) = first.checked_sub(1).map(|i| &positions[i]) {
                        save(self.feed.as_ref(), done).await;
                    }
                    let at = positions[first].clone();
                    if failed.transient {
                        // An outage (busy database, throttling, unreachable bus) is not
                        // the record's fault: wait it out without moving towards parking,
                        // or every record would be parked during a long outage.
                        outage = outage.saturating_add(1);
                        tracing::warn!(at = %at, error = %failed, "the read model or the bus is unavailable; retrying");
                        backoff(outage, &mut shutdown).await;
                        continue;
                    }
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

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        self.inner.count_by_status().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    };

    use backend::{BusEntry, Change, ParkedRecord, embedded::SqliteChangeFeed};
    use events_schema::{Command, Description, EventContext, Metadata, PlaceOrder};

    use super::*;

    fn placed(n: usize, description: &str) -> Change {
        let id = OrderId::parse(&format!("O-{n}")).expect("an id");
        let command = Command::Place(PlaceOrder {
            description: Description::parse(description).expect("a description"),
            register_date: chrono::Utc::now(),
            delivery_date: None,
            customer_id: None,
        });
        let events = events_schema::decide(&id, None, &command).expect("decides");
        let ctx = EventContext {
            occurred_at: chrono::Utc::now(),
            metadata: Metadata::default(),
        };
        let recorded = events_schema::record(&id, None, events, &ctx, uuid::Uuid::now_v7)
            .expect("records")
            .remove(0);
        Change {
            at: SqliteChangeFeed::at(n as u64),
            recorded,
        }
    }

    /// A feed over a fixed list; checks on every checkpoint that no poison record is
    /// passed before it is parked.
    struct Feed {
        changes: Vec<Change>,
        done: Mutex<usize>,
        parked: Arc<Parked>,
        poison: usize,
        skipped: AtomicBool,
    }

    #[async_trait]
    impl ChangeFeed for Feed {
        async fn next_batch(&self, max: usize, wait: Duration) -> Result<Vec<Change>, FeedError> {
            let done = *self.done.lock().expect("lock");
            let batch: Vec<Change> = self.changes[done..].iter().take(max).cloned().collect();
            if batch.is_empty() {
                tokio::time::sleep(wait.min(Duration::from_millis(10))).await;
            }
            Ok(batch)
        }

        async fn checkpoint(&self, at: &Checkpoint) -> Result<(), StoreError> {
            let position: usize = at.to_string().parse().expect("a position");
            if position >= self.poison && self.parked.parked.lock().expect("lock").is_empty() {
                self.skipped.store(true, Ordering::SeqCst);
            }
            let mut done = self.done.lock().expect("lock");
            *done = (*done).max(position);
            Ok(())
        }

        async fn lag(&self) -> Result<u64, StoreError> {
            Ok((self.changes.len() - *self.done.lock().expect("lock")) as u64)
        }
    }

    #[derive(Default)]
    struct Applied(Mutex<Vec<String>>);

    #[async_trait]
    impl ReadModel for Applied {
        async fn apply(&self, orders: &[Order]) -> Result<(), StoreError> {
            let mut applied = self.0.lock().expect("lock");
            applied.extend(orders.iter().map(|o| o.order_id.to_string()));
            Ok(())
        }

        async fn get(&self, _: &OrderId) -> Result<Option<Order>, StoreError> {
            Ok(None)
        }

        async fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
            Ok(Page::from_overfetch(Vec::new(), 1))
        }

        async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
            Ok(Vec::new())
        }
    }

    struct Bus;

    #[async_trait]
    impl EventPublisher for Bus {
        async fn publish(&self, _: &[BusEntry]) -> Result<Vec<usize>, StoreError> {
            Ok(Vec::new())
        }
    }

    /// Parks in memory; refuses the first `refusals` parks.
    #[derive(Default)]
    struct Parked {
        parked: Mutex<Vec<(Checkpoint, u32, String)>>,
        refusals: AtomicU32,
    }

    #[async_trait]
    impl ParkedRecords for Parked {
        async fn park(
            &self,
            at: &Checkpoint,
            _: Option<&Recorded>,
            attempts: u32,
            error: &str,
        ) -> Result<(), StoreError> {
            if self
                .refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::new("parking a record", "refused by the test"));
            }
            self.parked
                .lock()
                .expect("lock")
                .push((at.clone(), attempts, error.to_owned()));
            Ok(())
        }

        async fn list(&self) -> Result<Vec<ParkedRecord>, StoreError> {
            Ok(Vec::new())
        }

        async fn count(&self) -> Result<u64, StoreError> {
            Ok(self.parked.lock().expect("lock").len() as u64)
        }

        async fn records(&self, _: &ParkedRecord) -> Result<Vec<Recorded>, StoreError> {
            Ok(Vec::new())
        }

        async fn remove(&self, _: &ParkedRecord) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    /// Runs a poller over five records, the third of them poison, until all are
    /// checkpointed.
    async fn run_over_a_poisoned_batch(refusals: u32) -> (Arc<Feed>, Arc<Applied>, Arc<Parked>) {
        let parked = Arc::new(Parked {
            refusals: AtomicU32::new(refusals),
            ..Parked::default()
        });
        let feed = Arc::new(Feed {
            changes: (1..=5)
                .map(|n| placed(n, if n == 3 { "a POISON order" } else { "fine" }))
                .collect(),
            done: Mutex::new(0),
            parked: parked.clone(),
            poison: 3,
            skipped: AtomicBool::new(false),
        });
        let applied = Arc::new(Applied::default());
        let poller = StreamPoller {
            feed: feed.clone(),
            read_model: applied.clone(),
            publisher: Arc::new(Bus),
            parked: parked.clone(),
            source: "test".into(),
            max_attempts: 2,
            fail_marker: Some("POISON".into()),
        };
        run_until_caught_up(poller, &feed, "the feed never got past the poison record").await;
        (feed, applied, parked)
    }

    /// Runs `poller` until `feed` has no lag (or fails with `stuck` after 20 s), then stops it.
    async fn run_until_caught_up(poller: StreamPoller, feed: &Feed, stuck: &str) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(poller.run(stopped));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while feed.lag().await.expect("lag") > 0 {
            assert!(tokio::time::Instant::now() < deadline, "{stuck}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(true);
        task.await.expect("the poller stops");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_record_inside_a_batch_is_found_parked_alone_and_the_rest_projected() {
        let (feed, applied, parked) = run_over_a_poisoned_batch(0).await;
        let parked = parked.parked.lock().expect("lock").clone();
        assert_eq!(parked.len(), 1, "{parked:?}");
        let (at, attempts, error) = &parked[0];
        assert_eq!(at, &SqliteChangeFeed::at(3));
        assert_eq!(*attempts, 2);
        assert!(error.contains("injected failure for order O-3"), "{error}");
        let mut applied = applied.0.lock().expect("lock").clone();
        applied.sort();
        applied.dedup();
        assert_eq!(applied, ["O-1", "O-2", "O-4", "O-5"]);
        assert!(!feed.skipped.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_whose_parking_fails_is_not_checkpointed_past_until_it_is_parked() {
        let (feed, _, parked) = run_over_a_poisoned_batch(2).await;
        assert_eq!(parked.parked.lock().expect("lock").len(), 1);
        assert!(
            !feed.skipped.load(Ordering::SeqCst),
            "the poison record was checkpointed past before it was parked"
        );
    }

    /// A read model that is unavailable (a retryable error) for its first `outages` calls.
    struct Unavailable {
        outages: AtomicU32,
        inner: Applied,
    }

    #[async_trait]
    impl ReadModel for Unavailable {
        async fn apply(&self, orders: &[Order]) -> Result<(), StoreError> {
            if self
                .outages
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::caused_by(
                    "updating the read model",
                    "the database is busy",
                    std::io::Error::other("busy"),
                    true,
                ));
            }
            self.inner.apply(orders).await
        }

        async fn get(&self, _: &OrderId) -> Result<Option<Order>, StoreError> {
            Ok(None)
        }

        async fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
            Ok(Page::from_overfetch(Vec::new(), 1))
        }

        async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_longer_than_the_attempts_parks_nothing_and_projects_everything_after_it() {
        let parked = Arc::new(Parked::default());
        let feed = Arc::new(Feed {
            changes: (1..=3).map(|n| placed(n, "fine")).collect(),
            done: Mutex::new(0),
            parked: parked.clone(),
            poison: usize::MAX,
            skipped: AtomicBool::new(false),
        });
        // Four failed calls against two attempts: counted as record failures, the first
        // record would be parked twice over.
        let read_model = Arc::new(Unavailable {
            outages: AtomicU32::new(4),
            inner: Applied::default(),
        });
        let poller = StreamPoller {
            feed: feed.clone(),
            read_model: read_model.clone(),
            publisher: Arc::new(Bus),
            parked: parked.clone(),
            source: "test".into(),
            max_attempts: 2,
            fail_marker: None,
        };
        run_until_caught_up(poller, &feed, "the feed never caught up after the outage").await;
        assert!(parked.parked.lock().expect("lock").is_empty());
        let mut applied = read_model.inner.0.lock().expect("lock").clone();
        applied.sort();
        applied.dedup();
        assert_eq!(applied, ["O-1", "O-2", "O-3"]);
    }
}
