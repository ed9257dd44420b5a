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

/// An [`EventDetail`] by reference: serializes to the same JSON without cloning the event
/// and the order (what the projector publishes, and what the size check measures).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventDetailRef<'a> {
    pub event: &'a Envelope,
    pub order: &'a Order,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

impl EventDetailRef<'_> {
    /// The length of its JSON, counted without building it.
    pub fn json_len(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        match serde_json::to_writer(&mut count, self) {
            Ok(()) => count.0,
            Err(_) => usize::MAX,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Description, EventContext, OrderId, PlaceOrder, decide, record};

    #[test]
    fn a_detail_by_reference_is_the_same_json_as_the_owned_one_and_counts_its_length() {
        let id = OrderId::parse("ORD-1").unwrap();
        let place = Command::Place(PlaceOrder {
            description: Description::parse("Mantenimiento básico \"x\"").unwrap(),
            register_date: chrono::Utc::now(),
            delivery_date: None,
            customer_id: None,
        });
        let events = decide(&id, None, &place).unwrap();
        let ctx = EventContext {
            occurred_at: chrono::Utc::now(),
            metadata: crate::Metadata::default(),
        };
        let r = record(&id, None, events, &ctx, uuid::Uuid::now_v7)
            .unwrap()
            .remove(0);
        for replayed in [false, true] {
            let owned = EventDetail {
                event: r.envelope.clone(),
                order: r.order.clone(),
                replayed,
            };
            let by_ref = EventDetailRef {
                event: &r.envelope,
                order: &r.order,
                replayed,
            };
            let json = serde_json::to_string(&by_ref).unwrap();
            assert_eq!(json, serde_json::to_string(&owned).unwrap());
            assert_eq!(by_ref.json_len(), json.len());
        }
    }
}
