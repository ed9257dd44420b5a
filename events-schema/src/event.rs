//! The five order events, the envelope every event travels in, and [`record`], which turns
//! decided events into sealed, chained envelopes.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    chain::{ChainHash, hash_of},
    order::{NotPlaced, Order, evolve},
    values::{CustomerId, DeliveryDate, Description, OrderId, Reason, Status},
};

/// Bumped when an event's shape changes incompatibly; consumers switch on it.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to an order. Serialized as `"type"` (the EventBridge detail-type) and `"data"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderPlaced(OrderPlaced),
    OrderStarted {},
    OrderCompleted {},
    OrderCanceled(OrderCanceled),
    OrderDetailsRevised(OrderDetailsRevised),
}

impl OrderEvent {
    /// The event's type name, as in the envelope's `type` and EventBridge's `DetailType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced(_) => "OrderPlaced",
            OrderEvent::OrderStarted {} => "OrderStarted",
            OrderEvent::OrderCompleted {} => "OrderCompleted",
            OrderEvent::OrderCanceled(_) => "OrderCanceled",
            OrderEvent::OrderDetailsRevised(_) => "OrderDetailsRevised",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Event payload fields are declared in JSON-name order: their serialization is then
// already canonical (RFC 8785), which the hash chain relies on (see `chain`).
pub struct OrderPlaced {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_date: Option<DeliveryDate>,
    pub description: Description,
    pub register_date: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderCanceled {
    pub reason_for_cancellation: Reason,
}

/// Only the fields that changed are present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderDetailsRevised {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_date: Option<DeliveryDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
}

/// Who and what caused an event, carried from the HTTP request to every handler.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Fields in JSON-name order, as for the payloads above.
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The intake channel the command came in through (`web`, `mobile`, `atm`...), for a
    /// command taken from the intake queue; absent for one sent over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The AWS X-Ray trace header (`Root=...;Parent=...;Sampled=...`) of the request that
    /// caused the event, where the API ran traced (Lambda); the projector hands it to
    /// EventBridge so that the trace continues to the handlers. Absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
}

/// An event as stored and published: identity, position in the order's history, the event
/// itself, its context, and the hash chain that makes the history tamper-evident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event_id: Uuid,
    pub order_id: OrderId,
    /// 1 for the first event of an order, then +1 for each event, without gaps.
    pub version: u64,
    #[serde(flatten)]
    pub event: OrderEvent,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    /// The order's status after this event.
    pub status: Status,
    pub metadata: Metadata,
    /// The previous event's `hash`; 64 zeros for version 1.
    pub prev_hash: ChainHash,
    /// SHA-256 of the RFC 8785 canonical JSON of this envelope without `hash`.
    pub hash: ChainHash,
}

/// The context shared by the events one command produces.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub occurred_at: DateTime<Utc>,
    pub metadata: Metadata,
}

/// An event together with the order state right after it: what the event store keeps, what
/// the projector upserts and what the bus publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub envelope: Envelope,
    pub order: Order,
}

/// Seals decided events into envelopes that continue `state`'s version and hash chain.
///
/// `state` is the order before the events with the hash of its latest event (`None` for a
/// new order); `new_id` supplies event ids so that this stays a pure function.
pub fn record(
    order_id: &OrderId,
    state: Option<(&Order, &ChainHash)>,
    events: Vec<OrderEvent>,
    ctx: &EventContext,
    mut new_id: impl FnMut() -> Uuid,
) -> Result<Vec<Recorded>, NotPlaced> {
    let mut current = state.map(|(order, _)| order.clone());
    let mut prev_hash = state.map_or(ChainHash::GENESIS, |(_, hash)| *hash);
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let version = current.as_ref().map_or(0, |o| o.version) + 1;
        let mut envelope = Envelope {
            event_id: new_id(),
            order_id: order_id.clone(),
            version,
            event,
            schema_version: SCHEMA_VERSION,
            occurred_at: ctx.occurred_at,
            status: Status::Received,
            metadata: ctx.metadata.clone(),
            prev_hash,
            hash: ChainHash::GENESIS,
        };
        let order = evolve(current.as_ref(), &envelope)?;
        envelope.status = order.status;
        envelope.hash = hash_of(&envelope);
        prev_hash = envelope.hash;
        current = Some(order.clone());
        out.push(Recorded { envelope, order });
    }
    Ok(out)
}
