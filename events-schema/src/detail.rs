//! The EventBridge contract: the `Detail` of every published event, and its JSON Schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{event::Envelope, order::Order};

/// `Detail` of the EventBridge entry published for each event (`DetailType` = the event's
/// type, `Source` = the configured source, `Time` = `occurredAt`). Rules match
/// `detail.order.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "OrderEventDetail")]
pub struct EventDetail {
    /// The event, exactly as stored (hash chain included).
    pub event: Envelope,
    /// The order's state right after the event.
    pub order: Order,
    /// True when an operator re-sent a past event (`orders republish`); absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// The JSON Schema of [`EventDetail`], as checked in at `events-schema/schema/`.
pub fn detail_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(EventDetail).to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            "https://ordersource.dev/schemas/order-event-detail/v1.json".into(),
        );
    }
    schema
}
