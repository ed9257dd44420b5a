//! The intake handler: commands that arrive as messages on the intake queue from other
//! channels (web, mobile app, ATM terminals...) instead of over HTTP.
//!
//! A message ([`events_schema::IntakeMessage`]) frames the JSON body the HTTP API takes for
//! the command; the body is read by the API's own parser and the command runs through the
//! API's own command service, so a message is refused exactly when the request would be.
//! Each message ends in one of four outcomes:
//!
//! - **applied**: the command's events are appended under the ledger key
//!   `intake/<channel>/<requestId>` (the same idempotency store as the API's keys, in its
//!   own namespace) in the same atomic step as the saved outcome, so that it takes effect
//!   once whatever the redeliveries; the message is archived as received
//!   (`intake/<channel>/<requestId>.json` in the document store) and deleted;
//! - **duplicate**: another message already carried this channel and request id: counted,
//!   logged with both message ids, deleted (never dead-lettered);
//! - **invalid**: not an intake message, or a command the API would refuse with a 4xx (a
//!   malformed body, an unknown order, an illegal transition, a stale `expectedVersion`, a
//!   request id reused for another command): sent to the intake DLQ at once with the
//!   reason, and deleted — retrying cannot make it valid;
//! - **failed**: the store is unavailable, the order too contended, or another delivery of
//!   the same request is still running: reported as a batch item failure, retried after
//!   the visibility timeout (and dead-lettered by the redrive policy if it keeps failing).
//!
//! The handler speaks in deliveries and failures, like the status handlers; Lambda's SQS
//! shapes are met only at the edge (`bin/orders-intake.rs`), the local queues in the
//! `orders dev` poller.

pub mod lambda;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::http::StatusCode;
use backend::{
    IntakeArchive, LedgerKey, Queues, SavedResponse, StoreError,
    emf::{self, Origin},
};
use events_schema::{Command, IntakeCommand, IntakeMessage, Metadata, Order, OrderId};
use tracing::Instrument;

use crate::{
    body,
    idempotency::{self, Begin},
    problem::ApiError,
    reply::Reply,
    request::{self, IfMatch, PlaceRequest},
    service::{CommandError, Commands, Idempotent, Write},
};

/// The saved outcome's header naming the message that first carried the request: a
/// redelivery of that very message is not a duplicate from the channel.
const FIRST_MESSAGE_ID: &str = "intake-message-id";

/// How long a request id is remembered once applied: as long as SQS may keep a message
/// (its longest retention), so that no copy still queued can apply the command again.
const REQUEST_TTL: chrono::Duration = chrono::Duration::days(14);

/// One message of the intake queue, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeDelivery {
    /// The queue's message id: what a failure is reported by.
    pub message_id: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

impl IntakeDelivery {
    /// A message received from a queue, with its receipt (what deletes it once handled).
    pub fn received(message: backend::QueueMessage) -> (Self, String) {
        (
            Self {
                message_id: message.message_id,
                body: message.body,
                receive_count: message.receive_count,
            },
            message.receipt_handle,
        )
    }
}

/// What became of the messages this process handled (`/health`'s `intake`).
#[derive(Debug, Default)]
pub struct IntakeCounters {
    applied: AtomicU64,
    duplicates: AtomicU64,
    invalid: AtomicU64,
    failed: AtomicU64,
}

/// A reading of [`IntakeCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntakeCounts {
    /// Commands applied (each once, whatever the redeliveries).
    pub applied: u64,
    /// Messages that repeated a channel and request id applied before: deleted.
    pub duplicates: u64,
    /// Messages sent to the intake DLQ at once, with the reason.
    pub invalid: u64,
    /// Deliveries that failed for a passing reason, left to be retried.
    pub failed: u64,
}

impl IntakeCounters {
    pub fn read(&self) -> IntakeCounts {
        IntakeCounts {
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// How one message ended.
#[derive(Debug)]
enum Outcome {
    Applied(Order),
    /// The message that applied the request came again (a redelivery, not a new message).
    Redelivered,
    Duplicate {
        first_message_id: String,
    },
    Invalid(String),
    Failed(String),
}

/// The intake handler over a backend's ports.
#[derive(Clone)]
pub struct Intake {
    commands: Commands,
    queues: Arc<dyn Queues>,
    archive: Arc<dyn IntakeArchive>,
    /// The intake queue (its dead-letter queue takes the invalid messages).
    queue: String,
    counters: Arc<IntakeCounters>,
    /// Test hook: a message whose body contains this text fails (as a passing failure) on
    /// its first receive.
    fail_marker: Option<String>,
}

impl Intake {
    pub fn new(
        ports: &backend::Ports,
        archive: Arc<dyn IntakeArchive>,
        routes: &events_schema::RouteTable,
    ) -> Self {
        Self::over(
            Commands::new(ports.events.clone(), ports.idempotency.clone()),
            ports.queues.clone(),
            archive,
            routes.intake.queue.clone(),
        )
    }

    fn over(
        commands: Commands,
        queues: Arc<dyn Queues>,
        archive: Arc<dyn IntakeArchive>,
        queue: String,
    ) -> Self {
        Self {
            commands,
            queues,
            archive,
            queue,
            counters: Arc::default(),
            fail_marker: None,
        }
    }

    /// See [`Intake::fail_marker`]'s field.
    pub fn with_fail_marker(self, marker: Option<String>) -> Self {
        Self {
            fail_marker: marker.filter(|m| !m.is_empty()),
            ..self
        }
    }

    /// The counters this handler keeps (for `/health`).
    pub fn counters(&self) -> Arc<IntakeCounters> {
        self.counters.clone()
    }

    /// The intake queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The queues the intake queue is on.
    pub fn queues(&self) -> Arc<dyn Queues> {
        self.queues.clone()
    }

    /// Handles a batch: the messages of one order in the order received (a start and a
    /// complete of one order in one batch apply in that order), different orders
    /// concurrently (their commits then share the store's writes instead of queueing one
    /// behind the other). Returns the messages that failed for a passing reason, each with
    /// its error, to be retried. Every other message is done with: applied, recognised as
    /// a duplicate, or dead-lettered as invalid.
    pub async fn handle(&self, deliveries: Vec<IntakeDelivery>) -> Vec<(String, String)> {
        type Read = (IntakeDelivery, Result<IntakeMessage, String>);
        let mut by_order: Vec<(Option<String>, Vec<Read>)> = Vec::new();
        for delivery in deliveries {
            // Read once, here: the message's order groups it, and it is applied as read.
            let message = read(&delivery.body);
            // A message naming no order (a place without orderId, or unreadable) is alone.
            let key = message.as_ref().ok().and_then(order_of);
            match by_order
                .iter_mut()
                .find(|(k, _)| key.is_some() && *k == key)
            {
                Some((_, same_order)) => same_order.push((delivery, message)),
                None => by_order.push((key, vec![(delivery, message)])),
            }
        }
        let runs = by_order.into_iter().map(|(_, same_order)| async move {
            let mut failed = Vec::new();
            for (delivery, message) in same_order {
                if let Some(error) = self.handle_one(&delivery, message).await {
                    failed.push((delivery.message_id, error));
                }
            }
            failed
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Handles one message; `Some(error)` if it is to be retried.
    async fn handle_one(
        &self,
        delivery: &IntakeDelivery,
        message: Result<IntakeMessage, String>,
    ) -> Option<String> {
        let span = tracing::info_span!("intake", message_id = %delivery.message_id);
        async {
            let outcome = match &self.fail_marker {
                Some(m) if delivery.receive_count <= 1 && delivery.body.contains(m.as_str()) => {
                    Outcome::Failed("test hook: fails on its first receive".into())
                }
                _ => match message {
                    Ok(message) => self.apply(delivery, message).await,
                    Err(reason) => Outcome::Invalid(reason),
                },
            };
            self.settle(delivery, outcome).await
        }
        .instrument(span)
        .await
    }

    /// Counts and logs the outcome, dead-letters an invalid message; `Some(error)` if the
    /// message is to be retried.
    async fn settle(&self, delivery: &IntakeDelivery, outcome: Outcome) -> Option<String> {
        let c = &self.counters;
        match outcome {
            Outcome::Applied(order) => {
                c.applied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(order_id = %order.order_id, version = order.version, "intake command applied");
                None
            }
            Outcome::Redelivered => {
                tracing::info!("intake message delivered again; its command was applied before");
                None
            }
            Outcome::Duplicate { first_message_id } => {
                c.duplicates.fetch_add(1, Ordering::Relaxed);
                // Both ids on the line itself: Lambda's JSON log leaves the span out.
                tracing::warn!(
                    message_id = %delivery.message_id,
                    first_message_id = %first_message_id,
                    "duplicate intake request (its channel and request id came before); deleted"
                );
                None
            }
            Outcome::Invalid(reason) => {
                match self
                    .queues
                    .dead_letter(&self.queue, &delivery.body, &reason)
                    .await
                {
                    Ok(()) => {
                        c.invalid.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            reason,
                            "invalid intake message; sent to the dead-letter queue"
                        );
                        None
                    }
                    Err(e) => {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        Some(format!(
                            "invalid ({reason}), but dead-lettering it failed: {e}"
                        ))
                    }
                }
            }
            Outcome::Failed(error) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error, "intake message failed; it will be retried");
                Some(error)
            }
        }
    }

    async fn apply(&self, delivery: &IntakeDelivery, message: IntakeMessage) -> Outcome {
        let parsed = match parse(&message) {
            Ok(p) => p,
            Err(e) => return Outcome::Invalid(rejection(&e)),
        };
        let key = LedgerKey::intake(&message.channel, &message.request_id);
        let claimed = idempotency::claim(
            &self.commands.idempotency,
            key.clone(),
            fingerprint(&message),
            REQUEST_TTL,
        )
        .await;
        let guard = match claimed {
            Ok(Begin::Proceed(Some(guard))) => guard,
            Ok(Begin::Proceed(None)) => {
                return Outcome::Failed("the intake key was not claimed".into());
            }
            Ok(Begin::Replay(saved)) => {
                return self.replayed(delivery, &message, &key, &saved).await;
            }
            Err(CommandError::KeyInProgress) => {
                return Outcome::Failed(
                    "another delivery of this request is being applied; retrying".into(),
                );
            }
            Err(CommandError::KeyReused) => {
                return Outcome::Invalid(format!(
                    "requestId {} on channel {} was already used for a different command; send a new request id",
                    message.request_id, message.channel
                ));
            }
            Err(e) => return Outcome::Failed(ApiError::from(e).to_string()),
        };
        let success = if parsed.placement.is_some() {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let first_message = delivery.message_id.clone();
        let saved = move |order: &Order| {
            let mut saved = Reply::order(success, order).saved();
            saved
                .headers
                .push((FIRST_MESSAGE_ID.into(), first_message.clone()));
            saved
        };
        let write = Write {
            order_id: &parsed.order_id,
            command: &parsed.command,
            placement: parsed.placement.as_ref(),
            if_match: parsed.if_match.as_ref(),
            metadata: Metadata {
                correlation_id: message.request_id.to_string(),
                causation_id: Some(delivery.message_id.clone()),
                channel: Some(message.channel.to_string()),
                ..Metadata::default()
            },
            idempotent: Some(Idempotent {
                claimed: &guard.claimed,
                response: &saved,
            }),
        };
        let origin = Origin {
            correlation_id: message.request_id.as_str(),
            trace_header: None,
        };
        let kind = crate::routes::command_kind(&parsed.command);
        match self.commands.execute(write).await {
            Ok(order) => {
                guard.completed();
                emf::command(kind, "Accepted", origin);
                // After the append: a failure here is retried, and the retry (a redelivery
                // of this message) archives it then.
                if let Err(e) = self.archive(&message, &delivery.body).await {
                    return Outcome::Failed(e.to_string());
                }
                Outcome::Applied(order)
            }
            Err(e) => {
                let error = ApiError::from(e);
                if error.status().is_client_error() {
                    emf::command(kind, "Rejected", origin);
                    Outcome::Invalid(rejection(&error))
                } else {
                    emf::command(kind, "Failed", origin);
                    Outcome::Failed(error.to_string())
                }
            }
        }
    }

    /// A request applied before: by this very message (redelivered after a crash or a
    /// failed archive: archive it now), or by another (a duplicate from the channel).
    async fn replayed(
        &self,
        delivery: &IntakeDelivery,
        message: &IntakeMessage,
        key: &LedgerKey,
        saved: &SavedResponse,
    ) -> Outcome {
        let first = saved
            .headers
            .iter()
            .find(|(name, _)| name == FIRST_MESSAGE_ID)
            .map(|(_, id)| id.as_str());
        if first == Some(delivery.message_id.as_str()) {
            return match self.archive(message, &delivery.body).await {
                Ok(()) => Outcome::Redelivered,
                Err(e) => Outcome::Failed(e.to_string()),
            };
        }
        emf::duplicate(
            emf::Duplicate::IntakeRequest,
            key.as_str(),
            Origin {
                correlation_id: message.request_id.as_str(),
                trace_header: None,
            },
        );
        Outcome::Duplicate {
            first_message_id: first.unwrap_or("unknown").to_owned(),
        }
    }

    async fn archive(&self, message: &IntakeMessage, raw: &str) -> Result<(), StoreError> {
        self.archive
            .archive(&message.channel, &message.request_id, raw)
            .await
    }
}

/// A message's command, parsed as the HTTP API parses the request it stands for.
struct Parsed {
    order_id: OrderId,
    command: Command,
    placement: Option<PlaceRequest>,
    if_match: Option<IfMatch>,
}

fn parse(message: &IntakeMessage) -> Result<Parsed, ApiError> {
    let raw_body = message.body.as_ref().map_or("", |b| b.get());
    let body = body::object(raw_body.as_bytes())?;
    let if_match = message.expected_version.map(|v| IfMatch::Versions(vec![v]));
    if message.command == IntakeCommand::Place {
        if message.order_id.is_some() || message.expected_version.is_some() {
            return Err(ApiError::bad_request(
                "a place names its order in the body (orderId), as POST /orders does, and takes no expectedVersion",
            ));
        }
        let place = PlaceRequest::parse(body, crate::service::now())?;
        return Ok(Parsed {
            order_id: place.order_id.clone().unwrap_or_else(OrderId::generate),
            command: Command::Place(place.place.clone()),
            placement: Some(place),
            if_match,
        });
    }
    let Some(raw_id) = &message.order_id else {
        return Err(ApiError::field(
            "orderId",
            format!(
                "Missing required field: orderId (a {} names its order)",
                message.command
            ),
        ));
    };
    if message.expected_version == Some(0) {
        return Err(ApiError::field(
            "expectedVersion",
            "expectedVersion must be 1 or more",
        ));
    }
    let order_id = request::order_id(raw_id)?;
    let command = match message.command {
        IntakeCommand::Start => request::parse_empty(body, Command::Start)?,
        IntakeCommand::Complete => request::parse_empty(body, Command::Complete)?,
        IntakeCommand::Cancel => request::parse_cancel(body)?,
        // (A place was parsed above.)
        IntakeCommand::Revise | IntakeCommand::Place => request::parse_update(&order_id, body)?,
    };
    Ok(Parsed {
        order_id,
        command,
        placement: None,
        if_match,
    })
}

/// What makes the same request: the command, its order, its expected version and its body
/// (as canonical JSON), not the channel and request id (the key) nor the formatting. Two
/// messages with the same channel and request id but another fingerprint are a request id
/// reused for another command.
pub fn fingerprint(message: &IntakeMessage) -> String {
    let target = format!(
        "{}@{}",
        message.order_id.as_deref().unwrap_or(""),
        message
            .expected_version
            .map_or(String::new(), |v| v.to_string())
    );
    let body = message.body.as_ref().map_or("", |b| b.get());
    idempotency::fingerprint(message.command.as_str(), &target, body.as_bytes())
}

/// The reason a refused message is dead-lettered with: the API's status and problem detail.
fn rejection(error: &ApiError) -> String {
    let status = error.status();
    format!(
        "{} {}: {error}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// A queue message as an intake message, or why it is not one (it is invalid).
fn read(body: &str) -> Result<IntakeMessage, String> {
    serde_json::from_str(body).map_err(|e| {
        format!("not an intake message (see events-schema/schema/intake-message.schema.json): {e}")
    })
}

/// The order a message acts on, as far as a quick look tells (its `orderId`, or a place's
/// `orderId` in its body): what orders the messages of a batch. The body is judged in full
/// when the message is handled.
fn order_of(message: &IntakeMessage) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Named<'a> {
        #[serde(borrow, default)]
        order_id: Option<std::borrow::Cow<'a, str>>,
    }
    match &message.order_id {
        Some(id) => Some(id.clone()),
        None => {
            let body: Named = serde_json::from_str(message.body.as_ref()?.get()).ok()?;
            body.order_id.map(std::borrow::Cow::into_owned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> IntakeMessage {
        serde_json::from_str(json).expect("an intake message")
    }

    #[test]
    fn a_message_is_parsed_by_the_apis_own_parser_spanish_shape_included() {
        let m = message(
            r#"{"channel":"atm","requestId":"T17-000042","command":"place","body":{"orderId":"ORD-7","descripcion":"Retiro de tarjeta","fecha_entrega":"24/12/2026","estado":"recibida"}}"#,
        );
        let p = parse(&m).expect("parses");
        assert_eq!(p.order_id.as_str(), "ORD-7");
        let Command::Place(place) = p.command else {
            panic!("a place");
        };
        assert_eq!(place.description.as_str(), "Retiro de tarjeta");
        assert!(place.delivery_date.is_some());
    }

    #[test]
    fn the_api_refusals_are_the_messages_refusals_with_the_same_words() {
        for (json, words) in [
            (
                r#"{"channel":"web","requestId":"r1","command":"place","body":{}}"#,
                "400 Bad Request: Missing required field: description",
            ),
            (
                r#"{"channel":"web","requestId":"r1","command":"cancel","orderId":"A","body":{}}"#,
                "Missing required field: reasonForCancellation",
            ),
            (
                r#"{"channel":"web","requestId":"r1","command":"start","orderId":"A","body":{"x":1}}"#,
                "400 Bad Request",
            ),
            (
                r#"{"channel":"web","requestId":"r1","command":"start"}"#,
                "Missing required field: orderId",
            ),
            (
                r#"{"channel":"web","requestId":"r1","command":"place","orderId":"A","body":{"description":"d"}}"#,
                "names its order in the body",
            ),
            (
                r#"{"channel":"web","requestId":"r1","command":"revise","orderId":"A","body":{"orderId":"B"}}"#,
                "400 Bad Request",
            ),
        ] {
            let err = parse(&message(json)).err().expect(json);
            let reason = rejection(&err);
            assert!(reason.contains(words), "{json}: {reason}");
        }
    }

    #[test]
    fn the_same_command_in_other_formatting_is_the_same_request_and_another_is_not() {
        let a = message(
            r#"{"channel":"web","requestId":"r1","command":"place","body":{"description":"d","orderId":"A"}}"#,
        );
        let b = message(
            r#"{"requestId":"r1","channel":"web","command":"place","body":{ "orderId": "A", "description": "d" }}"#,
        );
        let c = message(
            r#"{"channel":"web","requestId":"r1","command":"place","body":{"description":"e","orderId":"A"}}"#,
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn a_batch_is_ordered_by_the_order_each_message_names() {
        let order_key = |body: &str| read(body).ok().as_ref().and_then(order_of);
        assert_eq!(
            order_key(r#"{"channel":"atm","requestId":"r1","command":"start","orderId":"A-1","body":{"orderId":"B"}}"#)
                .as_deref(),
            Some("A-1")
        );
        assert_eq!(
            order_key(r#"{"channel":"atm","requestId":"r2","command":"place","body":{"descripcion":"d","orderId":"P-9"}}"#)
                .as_deref(),
            Some("P-9")
        );
        for alone in [
            r#"{"channel":"atm","requestId":"r3","command":"place","body":{"description":"a new order, named by the server"}}"#,
            r#"{"channel":"atm","requestId":"r4","command":"start"}"#,
            r#"{"command":"start","orderId":"A-1"}"#,
            "not json",
        ] {
            assert_eq!(order_key(alone), None, "{alone}");
        }
    }
}
