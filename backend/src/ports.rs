//! The ports: what the command API, the projector and the tools need from a backend.

use async_trait::async_trait;
use aws_lambda_events::dynamodb;
use chrono::{DateTime, Utc};
use events_schema::{ChainHash, Envelope, Order, OrderId, Recorded, Status};

/// A failure of the backing store itself (I/O, corruption, unavailability): never the
/// client's fault, always worth a retry or an operator's look.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {message}")]
pub struct StoreError {
    pub context: &'static str,
    pub message: String,
}

impl StoreError {
    pub fn new(context: &'static str, err: impl std::fmt::Display) -> Self {
        Self {
            context,
            message: err.to_string(),
        }
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

/// The append-only, optimistic-concurrency event store.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The order's latest state and chain hash, `None` if it has no events.
    async fn head(&self, order_id: &OrderId) -> Result<Option<Head>, StoreError>;
    /// The order's whole history in version order (empty if unknown).
    async fn history(&self, order_id: &OrderId) -> Result<Vec<Envelope>, StoreError>;
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
    pub key: String,
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

/// Idempotency keys, in the style of Powertools: one record per key with the request's
/// fingerprint, in progress until the response is saved, expiring after a while.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Gives up a claim whose request failed, so that the client may retry.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
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
    pub after: Option<ListCursor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Order>,
    /// Present when more items may follow.
    pub next: Option<ListCursor>,
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
}

/// The event table's change stream, read like a Lambda event source mapping reads it.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Up to `max` records after the checkpoint, shaped exactly as Lambda hands a DynamoDB
    /// stream batch to a function; waits up to `wait` for the first one.
    async fn next_batch(
        &self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<dynamodb::Event, StoreError>;
    /// Marks every record up to and including `sequence_number` as handled, durably.
    async fn checkpoint(&self, sequence_number: &str) -> Result<(), StoreError>;
    /// How many records are written but not yet checkpointed.
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
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    pub sent_at: DateTime<Utc>,
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
}

/// A document a handler produced for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub name: String,
    pub content_type: String,
    pub body: Vec<u8>,
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
}
