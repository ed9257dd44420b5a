//! The status handlers: one per order status, each fed by its own queue. A handler takes
//! a batch of deliveries (each the bus event of one published detail), reacts to each event
//! at most once in effect (a ledger record per handler and event id, claimed with a
//! conditional write), writes the reaction's document, and says which deliveries it could
//! not handle, so that only those are retried and, in the end, dead-lettered.
//!
//! [`Handler::handle`] is the same on both backends; the Lambda edge ([`lambda`]) turns an
//! SQS event into deliveries and the failures into Lambda's partial batch response.
//! Adding a reaction is one [`Reaction`] impl in [`reactions`] and one route entry.

pub mod invoice_pdf;
pub mod lambda;
pub mod reactions;

use std::sync::Arc;

use backend::{
    Claim, Document, DocumentStore, EventStore, IdempotencyRecord, IdempotencyStore, LedgerKey,
    SavedResponse,
};
use chrono::Utc;
use events_schema::{Envelope, EventDetail};
use futures_util::future::join_all;
use tracing::Instrument;

/// What a handler does with an event: the documents it calls for, if any. Pure, so that
/// handling the same event twice produces the same documents.
pub trait Reaction: Send + Sync {
    /// The handler's name, as in the route table's `handler`.
    fn name(&self) -> &'static str;
    /// Whether [`Reaction::react`] needs the order's events up to the one it reacts to (one
    /// more read per event, so only the reactions that use them ask).
    fn needs_history(&self) -> bool {
        false
    }
    /// `history` is the order's events up to and including `detail`'s, if
    /// [`Reaction::needs_history`], else empty.
    fn react(
        &self,
        detail: &EventDetail,
        history: &[Envelope],
    ) -> Result<Vec<Document>, reactions::ReactionError>;
}

/// One message for a handler: the bus event (EventBridge's envelope around the published
/// detail) as its queue delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue's message id: what a failure is reported by.
    pub id: String,
    pub body: String,
    /// The X-Ray trace the message was sent in (SQS's `AWSTraceHeader` system attribute,
    /// which EventBridge sets from the event's `metadata.traceHeader`), for the logs.
    pub trace_header: Option<String>,
}

impl Delivery {
    /// A message received from a queue as a delivery, with its receipt (what deletes it
    /// once handled).
    pub fn received(message: backend::QueueMessage) -> (Self, String) {
        (
            Self {
                id: message.message_id,
                body: message.body,
                trace_header: None,
            },
            message.receipt_handle,
        )
    }
}

/// How long a handler remembers that it handled an event.
const LEDGER_TTL: chrono::Duration = chrono::Duration::days(365);

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("not an order event: {0}")]
    Poison(String),
    #[error("another invocation is handling this event")]
    InProgress,
    #[error("store: {0}")]
    Store(#[from] backend::StoreError),
    #[error("test hook: the order's description contains the failure marker")]
    Injected,
    #[error("the event store has the order only up to version {found}, not yet {wanted}")]
    HistoryBehind { wanted: u64, found: u64 },
    #[error(transparent)]
    Reaction(#[from] reactions::ReactionError),
}

pub struct Handler {
    pub reaction: Box<dyn Reaction>,
    pub ledger: Arc<dyn IdempotencyStore>,
    pub documents: Arc<dyn DocumentStore>,
    /// Where the order's history comes from, for the reactions that need it.
    pub events: Arc<dyn EventStore>,
    /// Test hook (`ORDERS_HANDLER_FAIL_MARKER`): fail every event whose order description
    /// contains this text, to exercise retries and dead-lettering end to end.
    pub fail_marker: Option<String>,
}

/// A delivery the handler could not handle: it is to be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The delivery's id (the queue's message id).
    pub id: String,
    /// Why, for the operator (the local queues keep it with the message).
    pub error: String,
}

impl Handler {
    /// Handles a batch; the deliveries that failed (every other one is done).
    ///
    /// The deliveries of a batch are handled concurrently: they are independent (a queue
    /// carries one status, and each event names its own document), and their writes then
    /// share commits instead of queueing one behind the other.
    pub async fn handle(&self, deliveries: Vec<Delivery>) -> Vec<Failed> {
        let outcomes = join_all(deliveries.into_iter().map(|delivery| async move {
            let outcome = self.handle_one(&delivery).await;
            (delivery.id, outcome)
        }))
        .await;
        let mut failed = Vec::new();
        for (id, outcome) in outcomes {
            if let Err(failure) = outcome {
                tracing::warn!(handler = self.reaction.name(), message_id = %id, error = %failure, "message failed; it will be retried");
                failed.push(Failed {
                    id,
                    error: failure.to_string(),
                });
            }
        }
        failed
    }

    async fn handle_one(&self, delivery: &Delivery) -> Result<(), Failure> {
        let detail = parse(&delivery.body)?;
        let span = tracing::info_span!(
            "handle",
            handler = self.reaction.name(),
            order_id = %detail.event.order_id,
            event_id = %detail.event.event_id,
            correlation_id = %detail.event.metadata.correlation_id,
            trace_header = tracing::field::Empty,
        );
        if let Some(trace) = &delivery.trace_header {
            span.record("trace_header", trace.as_str());
        }
        let origin = backend::emf::Origin {
            correlation_id: &detail.event.metadata.correlation_id,
            trace_header: delivery.trace_header.as_deref(),
        };
        self.react(&detail, origin).instrument(span).await
    }

    async fn react(
        &self,
        detail: &EventDetail,
        origin: backend::emf::Origin<'_>,
    ) -> Result<(), Failure> {
        if let Some(marker) = &self.fail_marker
            && detail.order.description.as_str().contains(marker.as_str())
        {
            return Err(Failure::Injected);
        }
        let history = if self.reaction.needs_history() {
            self.history(&detail.event).await?
        } else {
            Vec::new()
        };
        let documents = self.reaction.react(detail, &history)?;
        if documents.is_empty() {
            tracing::debug!(event_type = detail.event.event.type_name(), "nothing to do");
            return Ok(());
        }
        let key = LedgerKey::handler(self.reaction.name(), detail.event.event_id);
        let event_id = detail.event.event_id.to_string();
        let now = Utc::now();
        match self.ledger.claim(&key, &event_id, now).await? {
            Claim::Replay(_) => {
                backend::emf::duplicate(
                    backend::emf::Duplicate::HandlerDelivery,
                    &event_id,
                    origin,
                );
                tracing::debug!("already handled");
                return Ok(());
            }
            Claim::InProgress | Claim::Mismatch => return Err(Failure::InProgress),
            Claim::Acquired => {}
        }
        let result = self
            .write(detail, &documents, key.clone(), event_id, now, origin)
            .await;
        if result.is_err() {
            // Documents are written under fixed names, so a retry rewrites them identically.
            let _ = self.ledger.release(&key).await;
        }
        result
    }

    /// The order's events from the first up to `event`, read until that one is there.
    async fn history(&self, event: &Envelope) -> Result<Vec<Envelope>, Failure> {
        let mut history: Vec<Envelope> = Vec::new();
        loop {
            let after = history.last().map_or(0, |e| e.version);
            let page = self
                .events
                .events(&event.order_id, after, (event.version - after) as usize)
                .await?;
            let more = page.next.is_some() && !page.items.is_empty();
            history.extend(page.items);
            if !more || history.last().is_some_and(|e| e.version >= event.version) {
                break;
            }
        }
        history.retain(|e| e.version <= event.version);
        match history.last() {
            Some(last) if last.version == event.version => Ok(history),
            last => Err(Failure::HistoryBehind {
                wanted: event.version,
                found: last.map_or(0, |e| e.version),
            }),
        }
    }

    async fn write(
        &self,
        detail: &EventDetail,
        documents: &[Document],
        key: LedgerKey,
        event_id: String,
        now: chrono::DateTime<Utc>,
        origin: backend::emf::Origin<'_>,
    ) -> Result<(), Failure> {
        for document in documents {
            self.documents.put(&detail.event.order_id, document).await?;
            backend::telemetry::document_written();
            backend::emf::documents_written(self.reaction.name(), &event_id, origin);
            tracing::debug!(document = %document.name, "document written");
        }
        let names: Vec<&str> = documents.iter().map(|d| d.name.as_str()).collect();
        self.ledger
            .complete(IdempotencyRecord {
                key,
                fingerprint: event_id,
                response: SavedResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: names.join(", "),
                },
                expires_at: now + LEDGER_TTL,
            })
            .await?;
        Ok(())
    }
}

/// The `detail` of the EventBridge event in an SQS message body.
fn parse(body: &str) -> Result<EventDetail, Failure> {
    #[derive(serde::Deserialize)]
    struct BusEvent {
        detail: EventDetail,
    }
    serde_json::from_str::<BusEvent>(body)
        .map(|e| e.detail)
        .map_err(|e| Failure::Poison(e.to_string()))
}

/// The handler for a route's `handler` name.
pub fn handler(
    name: &str,
    ledger: Arc<dyn IdempotencyStore>,
    documents: Arc<dyn DocumentStore>,
    events: Arc<dyn EventStore>,
    fail_marker: Option<String>,
) -> Option<Handler> {
    reactions::by_name(name).map(|reaction| Handler {
        reaction,
        ledger,
        documents,
        events,
        fail_marker,
    })
}
