//! The ports: what the command API, the projector and the tools need from a backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events_schema::{ChainHash, Envelope, Order, OrderId, Recorded, Status};

/// A failure of the backing store itself (I/O, corruption, unavailability): never the
/// client's fault. It keeps what caused it ([`std::error::Error::source`]) and whether
/// trying again can help (a busy database, throttling, a timeout, no answer at all) or
/// not (a refused request, a full disk, a stopped writer).
#[derive(Debug, Clone)]
pub struct StoreError {
    pub context: &'static str,
    pub message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    retryable: bool,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.context, self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl StoreError {
    /// A failure described by `err`'s text alone, not worth retrying as such.
    pub fn new(context: &'static str, err: impl std::fmt::Display) -> Self {
        Self {
            context,
            message: err.to_string(),
            source: None,
            retryable: false,
        }
    }

    /// A failure caused by `err`, kept as the source; `retryable` says whether trying again
    /// can help.
    pub fn caused_by(
        context: &'static str,
        message: impl std::fmt::Display,
        err: impl std::error::Error + Send + Sync + 'static,
        retryable: bool,
    ) -> Self {
        Self {
            context,
            message: message.to_string(),
            source: Some(std::sync::Arc::new(err)),
            retryable,
        }
    }

    /// A failure of SQLite: retryable when the database was busy or locked by another
    /// connection.
    pub fn sqlite(context: &'static str, err: rusqlite::Error) -> Self {
        let retryable = matches!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        let message = err.to_string();
        Self::caused_by(context, message, err, retryable)
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended first: the expected version is no longer the latest.
    #[error("order {order_id} is no longer at version {expected}")]
    Conflict { order_id: OrderId, expected: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The latest state of an order and the hash its next event must link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub order: Order,
    pub hash: ChainHash,
}

/// Events to add to one order's history, all or nothing, only if the order is still at
/// `expected_version` (0 for a new order). With `idempotency`, the saved response is
/// written in the same atomic step, so a retried request can never append twice.
#[derive(Debug, Clone)]
pub struct Append {
    pub order_id: OrderId,
    pub expected_version: u64,
    pub events: Vec<Recorded>,
    pub idempotency: Option<IdempotencyRecord>,
}

/// A page of one order's events, in version order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub items: Vec<Envelope>,
    /// Present when more events may follow: the version to continue after.
    pub next: Option<u64>,
}

impl EventPage {
    /// A page from up to `limit + 1` events in version order: the extra one only tells
    /// that another page follows.
    pub fn from_overfetch(mut items: Vec<Envelope>, limit: usize) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| e.version)
        } else {
            None
        };
        EventPage { items, next }
    }
}

/// The append-only, optimistic-concurrency event store. Every read is bounded: one event,
/// or one page of events (an order has at most `events_schema::MAX_EVENTS_PER_ORDER`).
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The order's latest state and chain hash, `None` if it has no events.
    async fn head(&self, order_id: &OrderId) -> Result<Option<Head>, StoreError>;
    /// Up to `limit` of the order's events after version `after` (0: from the first), in
    /// version order (empty if unknown).
    async fn events(
        &self,
        order_id: &OrderId,
        after: u64,
        limit: usize,
    ) -> Result<EventPage, StoreError>;
    /// The order's state as stored with event `version`, `None` if it has no such event.
    async fn at_version(
        &self,
        order_id: &OrderId,
        version: u64,
    ) -> Result<Option<Order>, StoreError>;
    /// The order's state as stored with its latest event (by version) that occurred at or
    /// before `at`, `None` if none did. Reads back from the latest event until it finds
    /// one, so a time near the present costs one read.
    async fn at_time(
        &self,
        order_id: &OrderId,
        at: DateTime<Utc>,
    ) -> Result<Option<Order>, StoreError>;
    /// Appends durably: when this returns `Ok`, the events survive a crash.
    async fn append(&self, append: Append) -> Result<(), AppendError>;
}

/// A completed request's response, kept so a retry with the same key gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: crate::LedgerKey,
    pub fingerprint: String,
    pub response: SavedResponse,
    pub expires_at: DateTime<Utc>,
}

/// What a request carrying an `Idempotency-Key` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use of the key: go ahead; finish with an append carrying the record, or
    /// [`IdempotencyStore::release`] on failure.
    Acquired,
    /// The key completed before with the same request: answer with the saved response.
    Replay(SavedResponse),
    /// The key is held by a request that is still running.
    InProgress,
    /// The key was used with a different request.
    Mismatch,
}

/// How long an in-progress claim holds its key, on every backend: a claim made at `now`
/// (the time passed to `claim`, never the store's own clock) is `InProgress` to claims at
/// up to `now` + this, counted in whole seconds, and may be taken over after that (the
/// holder is presumed to have given up).
pub const IN_PROGRESS_EXPIRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a claim made at `since` still holds its key at `now` (whole epoch seconds, as the
/// DynamoDB ledger compares them).
pub fn claim_holds(since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.timestamp() <= since.timestamp() + IN_PROGRESS_EXPIRY.as_secs() as i64
}

/// Idempotency keys, in the style of Powertools: one record per key with the request's
/// fingerprint, in progress until the response is saved (for `IN_PROGRESS_EXPIRY` at most,
/// by the `now` given to `claim`), expiring after a while. The API's keys and the handlers'
/// claims share the store, each in its namespace ([`crate::LedgerKey`]).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(
        &self,
        key: &crate::LedgerKey,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Gives up a claim whose request failed, so that the client may retry.
    async fn release(&self, key: &crate::LedgerKey) -> Result<(), StoreError>;
    /// Saves the response of a request that appended nothing.
    async fn complete(&self, record: IdempotencyRecord) -> Result<(), StoreError>;
}

/// Where to start listing, after the last item of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub order_id: OrderId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<Status>,
    pub limit: usize,
    /// The last item of the previous page: the page starts right after it, in list order.
    pub after: Option<ListCursor>,
    /// Newest first (the console's view) instead of oldest first (the API's).
    pub newest_first: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Order>,
    /// Present when more items may follow.
    pub next: Option<ListCursor>,
}

impl Page {
    /// A page from up to `limit + 1` items in list order: the extra one only tells that
    /// another page follows.
    pub fn from_overfetch(mut items: Vec<Order>, limit: usize) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|o| ListCursor {
                created_at: o.created_at,
                order_id: o.order_id.clone(),
            })
        } else {
            None
        };
        Page { items, next }
    }
}

/// The projection: each order's latest known state, queryable by status, ordered by
/// creation time. Eventually consistent with the event store.
#[async_trait]
pub trait ReadModel: Send + Sync {
    /// Upserts each order unless the stored one is already at the same or a later version,
    /// so replays and out-of-order deliveries never move an order back in time.
    async fn apply(&self, orders: &[Order]) -> Result<(), StoreError>;
    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, StoreError>;
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;
    /// How many orders the read model holds in each status, every status listed (0 for
    /// none), in [`Status::ALL`] order. Counts the whole projection: meant for an operator's
    /// overview, not for a request path under load.
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError>;
}

/// Where a change sits in the feed: opaque to the projector, handed back to
/// [`ChangeFeed::checkpoint`] (embedded: the global position; AWS: the stream sequence
/// number).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint(pub(crate) String);

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One recorded event as the change feed delivers it, with where it sits in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: Checkpoint,
    pub recorded: Recorded,
}

/// Why the change feed could not hand out a batch.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The next record in the feed is not a readable order event: it can only be retried
    /// or, once given up on, checkpointed past (`at`).
    #[error("the stream record at {at} is not an order event: {reason}")]
    Unreadable { at: Checkpoint, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The event store's change stream: every appended event once, in each order's version
/// order, from a durable checkpoint (at least once: what is not checkpointed comes again).
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Up to `max` changes after the checkpoint; waits up to `wait` for the first one.
    /// Changes handed out but not checkpointed are handed out again by the next call.
    async fn next_batch(
        &self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<Change>, FeedError>;
    /// Marks every change up to and including `at` as handled, durably.
    async fn checkpoint(&self, at: &Checkpoint) -> Result<(), StoreError>;
    /// How many changes are written but not yet checkpointed.
    async fn lag(&self) -> Result<u64, StoreError>;
}

/// One EventBridge entry, as the projector publishes each event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEntry {
    pub source: String,
    pub detail_type: String,
    /// The JSON of an `events_schema::EventDetail`.
    pub detail: String,
    pub time: DateTime<Utc>,
    /// The X-Ray trace header to continue (the event's `metadata.traceHeader`): EventBridge
    /// passes it on to the rule targets (SQS: the `AWSTraceHeader` system attribute).
    pub trace_header: Option<String>,
}

/// The event bus (EventBridge `PutEvents`): routes each entry to the targets of every rule
/// whose pattern matches it.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes `entries`; returns the indices of the entries that failed (to be retried).
    async fn publish(&self, entries: &[BusEntry]) -> Result<Vec<usize>, StoreError>;
}

/// A received message, shaped like SQS's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    /// Identifies this receipt; deleting needs the latest one.
    pub receipt_handle: String,
    pub body: String,
    /// How many times the message has been received, this time included (a dead letter:
    /// how many times it was received before it was moved).
    pub receive_count: u32,
    pub sent_at: DateTime<Utc>,
    /// Why the message failed last, when known: a handler's error (recorded by
    /// [`Queues::record_failure`]) or why it was dead-lettered at once
    /// ([`Queues::dead_letter`]).
    pub last_error: Option<String>,
}

/// A queue's state, for `/health` and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub queue: String,
    /// Messages waiting to be received.
    pub visible: u64,
    /// Received, not yet deleted, invisible until their visibility timeout.
    pub in_flight: u64,
    /// Messages in the queue's dead-letter queue.
    pub dead_letters: u64,
}

/// A queue with SQS semantics: at-least-once delivery, a visibility timeout, a receive
/// count, and redrive to a dead-letter queue after `max_receive_count` receives.
#[async_trait]
pub trait Queues: Send + Sync {
    async fn send(&self, queue: &str, bodies: &[String]) -> Result<(), StoreError>;
    /// Up to `max` messages, hidden for `visibility`; waits up to `wait` for the first.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: std::time::Duration,
        wait: std::time::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError>;
    async fn delete(&self, queue: &str, receipt_handles: &[String]) -> Result<(), StoreError>;
    async fn stats(&self, queue: &str) -> Result<QueueStats, StoreError>;
    /// The messages in `queue`'s dead-letter queue.
    async fn dead_letters(&self, queue: &str) -> Result<Vec<QueueMessage>, StoreError>;
    /// Moves every message of `queue`'s dead-letter queue back to `queue`; returns how many.
    async fn redrive(&self, queue: &str) -> Result<u64, StoreError>;
    /// Moves one dead letter (by its message id, as [`Queues::dead_letters`] lists it) back
    /// to `queue`; `false` if `queue`'s dead-letter queue has no such message.
    async fn redrive_message(&self, queue: &str, message_id: &str) -> Result<bool, StoreError>;
    /// Sends `body` straight to `queue`'s dead-letter queue with `reason`: for a message
    /// that can never succeed (invalid input), which retries would only delay. SQS: the
    /// reason is the String message attribute `reason`.
    async fn dead_letter(&self, queue: &str, body: &str, reason: &str) -> Result<(), StoreError>;
    /// Records why handling a received message (by its latest receipt) failed: it reappears
    /// after its visibility timeout and keeps the error into the dead-letter queue. SQS
    /// keeps nothing of the kind (the handler's log has it): a no-op there.
    async fn record_failure(
        &self,
        queue: &str,
        receipt_handle: &str,
        error: &str,
    ) -> Result<(), StoreError>;
}

/// The longest error or reason a queue keeps with a message: enough to act on, bounded so
/// that a handler's error cannot grow a message (SQS message attributes count towards its
/// 256 KiB).
pub const MAX_LAST_ERROR: usize = 1024;

/// `error` cut to at most [`MAX_LAST_ERROR`] bytes, at a character boundary.
pub fn bounded_error(error: &str) -> String {
    if error.len() <= MAX_LAST_ERROR {
        return error.to_owned();
    }
    let mut end = MAX_LAST_ERROR - '…'.len_utf8();
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

/// A document a handler produced for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub name: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Document {
    /// Names come from handlers, but every store checks them anyway: one plain file name,
    /// so that a name never reaches into another order's folder or key prefix.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 200
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentInfo {
    pub name: String,
    pub size: u64,
}

/// Where handlers keep the documents they write, per order (S3 bucket or files).
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Writes (or rewrites, identically) a document; durable when this returns.
    async fn put(&self, order_id: &OrderId, document: &Document) -> Result<(), StoreError>;
    /// The order's documents, by name.
    async fn list(&self, order_id: &OrderId) -> Result<Vec<DocumentInfo>, StoreError>;
    async fn get(&self, order_id: &OrderId, name: &str) -> Result<Option<Document>, StoreError>;
    /// A URL from which a client downloads the document itself for `expires` (a presigned
    /// S3 GET), so that the bytes never pass through the API; `None` when the document is
    /// to be served from [`DocumentStore::get`]: always on a store without such links, and
    /// when the store has no such document (so that `get` answers that).
    async fn link(
        &self,
        order_id: &OrderId,
        name: &str,
        expires: std::time::Duration,
    ) -> Result<Option<String>, StoreError>;
}

/// Where the intake keeps the message of every command it accepted, exactly as received
/// (as the queue-based system before it did): in the document store under `intake/`, by
/// channel and request id ([`intake_archive_key`]), apart from the orders' documents.
#[async_trait]
pub trait IntakeArchive: Send + Sync {
    /// Keeps `message` under [`intake_archive_key`]; durable when this returns. Archiving
    /// the same request again rewrites it (a redelivered message carries the same bytes).
    async fn archive(
        &self,
        channel: &events_schema::Channel,
        request_id: &events_schema::RequestId,
        message: &str,
    ) -> Result<(), StoreError>;
    /// The archived message of a request, if any.
    async fn archived(
        &self,
        channel: &events_schema::Channel,
        request_id: &events_schema::RequestId,
    ) -> Result<Option<String>, StoreError>;
}

/// Where an accepted intake message is archived: `intake/<channel>/<requestId>.json` (on S3
/// the object key; the intake function may write only under `intake/`).
pub fn intake_archive_key(
    channel: &events_schema::Channel,
    request_id: &events_schema::RequestId,
) -> String {
    format!("intake/{channel}/{request_id}.json")
}

/// What a metric sample counts: a running total, or a level that goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// One sample of the running backend's own counters (transactions, fsyncs, per-stage CPU
/// seconds...), rendered by `/metrics` in the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// `orders_...`, Prometheus style (`_total` for counters).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The backend's own counters, read without waiting on any store.
pub trait Telemetry: Send + Sync {
    fn metrics(&self) -> Vec<Metric>;
}

/// A backend with nothing of its own to count (AWS: CloudWatch has the services' metrics).
pub struct NoTelemetry;

impl Telemetry for NoTelemetry {
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
}

/// A change feed record the projector gave up on after its bounded retries: parked with
/// its error so that the feed can move on, and kept until an operator replays it. It names
/// where the record is in the feed (the feed itself stays the source of truth: a replay
/// reads the record back from there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedRecord {
    /// Names the parked entry for replay (embedded: the record's position; AWS: the
    /// on-failure message's id).
    pub id: String,
    /// Where the record is in the feed (embedded: its position; AWS: the shard and the
    /// sequence-number range of the batch Lambda gave up on).
    pub position: String,
    /// What is known of the record, when it could be read (one record; `None` for a batch
    /// or for a record that is not a readable event).
    pub order_id: Option<String>,
    pub version: Option<u64>,
    pub event_id: Option<String>,
    pub attempts: u32,
    pub error: String,
    pub parked_at: DateTime<Utc>,
}

/// Where the projector parks the records that keep failing (embedded: the `parked` table;
/// AWS: the stream event source's on-failure SQS queue, in the message shape Lambda writes).
#[async_trait]
pub trait ParkedRecords: Send + Sync {
    /// Parks the record at `at` (`recorded` when it could be read) durably, before the feed
    /// is checkpointed past it; parking the same record again only updates it.
    async fn park(
        &self,
        at: &Checkpoint,
        recorded: Option<&Recorded>,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Every parked record, oldest first.
    async fn list(&self) -> Result<Vec<ParkedRecord>, StoreError>;
    /// How many records are parked (`/health`, `/metrics`).
    async fn count(&self) -> Result<u64, StoreError>;
    /// The records a parked entry stands for, read back from the feed, in feed order.
    async fn records(&self, parked: &ParkedRecord) -> Result<Vec<Recorded>, StoreError>;
    /// Forgets a parked entry (after a successful replay); `false` if it was not there.
    async fn remove(&self, parked: &ParkedRecord) -> Result<bool, StoreError>;
}

/// Every port of one backend, as the entrypoints wire them.
#[derive(Clone)]
pub struct Ports {
    pub events: std::sync::Arc<dyn EventStore>,
    pub idempotency: std::sync::Arc<dyn IdempotencyStore>,
    pub read_model: std::sync::Arc<dyn ReadModel>,
    pub feed: std::sync::Arc<dyn ChangeFeed>,
    pub publisher: std::sync::Arc<dyn EventPublisher>,
    pub queues: std::sync::Arc<dyn Queues>,
    pub documents: std::sync::Arc<dyn DocumentStore>,
    pub telemetry: std::sync::Arc<dyn Telemetry>,
    pub parked: std::sync::Arc<dyn ParkedRecords>,
}

// ---- Replay and audit: bulk reads of the facts, and rebuilding what is derived from them.

/// Whether to read the state stored with each event: a rebuild folds the envelopes alone,
/// and leaving the states out halves what it reads (their [`RawEvent::order_state`] is
/// then empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum States {
    With,
    Without,
}

// The stored forms the audit verdicts judge are pure data, defined beside those verdicts.
pub use events_schema::audit::{Projected, ProjectedOrder, RawEvent};

/// One order's whole stored history, in version order (as the store sorts it by key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHistory {
    pub order_id: String,
    pub events: Vec<RawEvent>,
}

/// Which stored events to re-publish: `occurredAt` in `[from, to)`, optionally only one
/// order's and only those after which the order had `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub order_id: Option<OrderId>,
    pub status: Option<Status>,
}

/// Where a page of [`EventArchive::events_between`] ended; opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCursor(pub String);

/// A page of events in a window, in the order they were stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPage {
    pub events: Vec<RawEvent>,
    /// Present when more events may follow.
    pub next: Option<WindowCursor>,
}

/// How much the event store holds (for progress bars; may be approximate on AWS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveSize {
    pub events: u64,
    pub orders: u64,
}

/// Where a page of [`EventArchive::histories`] ended; opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor(pub String);

/// Which orders a page of histories accounts for: what a read model row without a history
/// in the page means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Every order with events whose id is in `(after, through]` (bytewise; open ends when
    /// `None`) is in the page, so a read model row in that range without a history in the
    /// page has no events. Archives that read in order-id order (embedded) say this; it
    /// lets an audit find such rows page by page, without a pass of its own.
    Range {
        after: Option<String>,
        through: Option<String>,
    },
    /// Only the page's own orders: the archive reads in no key order (a DynamoDB Scan comes
    /// in the order of the partition keys' hashes), so rows of other orders are found by a
    /// pass over the whole read model ([`ProjectionScan::rows`]).
    Orders,
}

/// A page of whole histories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Each order's whole stored history, events in version order; orders in the archive's
    /// own order (order-id order where [`Coverage::Range`]).
    pub histories: Vec<RawHistory>,
    /// Present when more histories may follow.
    pub next: Option<HistoryCursor>,
    pub coverage: Coverage,
}

/// Bulk, read-only access to the event store for replay, audit and republication. Unlike
/// [`EventStore`], it hands out events as stored, in pages of whole histories.
#[async_trait]
pub trait EventArchive: Send + Sync {
    /// Whole histories after `cursor` (from the start if `None`), until about `max_events`
    /// events: a page always ends with a complete history and holds at least one order
    /// when any is left (an order longer than `max_events` comes whole, alone). Every order
    /// comes in exactly one page. Orders appended while the pages are read may or may not
    /// be in them; events appended to an order already handed out are not.
    async fn histories(
        &self,
        cursor: Option<&HistoryCursor>,
        max_events: usize,
    ) -> Result<HistoryPage, StoreError>;
    /// One order's whole stored history (empty if it has no events).
    async fn history_raw(&self, order_id: &OrderId) -> Result<Vec<RawEvent>, StoreError>;
    /// The events of `window`, at most `limit`, after `cursor`, in storage order (each
    /// order's events in version order; embedded: the global position, AWS: the table's
    /// key order).
    async fn events_between(
        &self,
        window: &EventWindow,
        cursor: Option<&WindowCursor>,
        limit: usize,
    ) -> Result<WindowPage, StoreError>;
    async fn size(&self) -> Result<ArchiveSize, StoreError>;
}

/// The state after an order's stored events, folded from the envelopes alone (the stored
/// states are not read): what every rebuild writes and every audit compares with.
pub fn fold_raw(events: &[RawEvent]) -> Result<Order, String> {
    let mut state: Option<Order> = None;
    for e in events {
        let envelope: Envelope = serde_json::from_str(&e.envelope)
            .map_err(|err| format!("version {}: not a readable envelope: {err}", e.version))?;
        state =
            Some(events_schema::evolve(state.as_ref(), &envelope).map_err(|err| err.to_string())?);
    }
    state.ok_or_else(|| "no events".to_owned())
}

/// Where a page of [`ProjectionScan::rows`] ended; opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCursor(pub String);

/// A page of read model rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPage {
    pub rows: Vec<ProjectedOrder>,
    /// Present when more rows may follow.
    pub next: Option<RowCursor>,
}

/// Bulk, read-only access to the read model, to compare it with the events.
#[async_trait]
pub trait ProjectionScan: Send + Sync {
    /// Read the projector's progress *before* the rows it will be compared with.
    async fn projected(&self) -> Result<Projected, StoreError>;
    /// The rows to compare with a page of histories: with [`Coverage::Range`], every row
    /// whose id is in the range, in order-id order; with [`Coverage::Orders`], the rows of
    /// the page's orders that have one, in any order.
    async fn rows_for(&self, page: &HistoryPage) -> Result<Vec<ProjectedOrder>, StoreError>;
    /// Every row, up to `limit` at a time after `cursor`, in the backend's own order: the
    /// pass that finds rows of orders no page of histories had.
    async fn rows(&self, cursor: Option<&RowCursor>, limit: usize) -> Result<RowPage, StoreError>;
    async fn get_projected(&self, order_id: &str) -> Result<Option<ProjectedOrder>, StoreError>;
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Orders in the new projection.
    pub orders: u64,
    /// Events folded (those appended while it ran included).
    pub events: u64,
    /// Events appended while the rebuild ran, folded in at the swap.
    pub caught_up: u64,
    /// Orders whose row in the replaced projection differed from the rebuilt one (or was
    /// missing, or had no events): lag or damage that the rebuild repaired.
    pub changed: u64,
    /// Orders whose history cannot be folded (not starting with `OrderPlaced`, or an event
    /// that is not a readable envelope), each with the reason: their row in the replaced
    /// projection is kept as it was (a rebuild repairs, never erases).
    pub unfoldable: Vec<(String, String)>,
    /// The new projection's own name, where it has one (AWS: the new table, named by the
    /// live-table pointer); `None` where it took the old one's place (embedded).
    pub swapped_in: Option<String>,
}

/// Progress callbacks of a long operation: `events` handled so far.
pub type ProgressFn = dyn Fn(u64) + Send + Sync;

/// Called by a rebuild between its fold and its swap (tests write meanwhile); it runs on a
/// blocking thread, so it may block on async work.
pub type BeforeSwap = Box<dyn FnOnce() + Send>;

/// Recomputing the read model from the events alone.
#[async_trait]
pub trait ProjectionRebuild: Send + Sync {
    /// Folds every order's events into a fresh projection beside the live one, then makes
    /// it the live one in one atomic step: readers see the old projection or the new one,
    /// never a half-built one. No version the projector has written is lost: what it wrote
    /// to the old projection after the fold read that order is folded in at the swap
    /// (embedded: every event committed by then; AWS: every row of the old table newer than
    /// the fold), and what it had not written yet it writes to the new one. The change
    /// feed's checkpoint is left alone (re-applying an older state is a no-op, and
    /// publication is not skipped). One rebuild at a time: a second one is refused.
    async fn rebuild(
        &self,
        progress: std::sync::Arc<ProgressFn>,
    ) -> Result<RebuildReport, StoreError>;
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::StoreError;

    #[test]
    fn a_busy_database_is_worth_a_retry_and_keeps_its_cause() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        );
        let e = StoreError::sqlite("appending events", busy);
        assert!(e.is_retryable());
        assert!(e.source().is_some_and(|s| s.to_string().contains("locked")));
        assert!(e.to_string().starts_with("appending events: "), "{e}");
    }

    #[test]
    fn a_full_disk_or_a_bare_message_is_not_retryable() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(!StoreError::sqlite("committing", full).is_retryable());
        let stopped = StoreError::new("appending events", "the writer has stopped");
        assert!(!stopped.is_retryable());
        assert!(stopped.source().is_none());
    }
}
