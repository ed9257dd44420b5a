//! The order's current state and how events change it: [`evolve`] one event, [`fold`] many.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    event::{Envelope, OrderEvent},
    values::{CustomerId, DeliveryDate, Description, OrderId, Reason, Status},
};

/// An order as of some version: what reads return and what the read model stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    #[schema(value_type = String, example = "ORD-001")]
    pub order_id: OrderId,
    pub status: Status,
    /// The version of the order's latest event; also its strong ETag.
    pub version: u64,
    #[schema(value_type = String)]
    pub description: Description,
    pub register_date: DateTime<Utc>,
    #[schema(value_type = Option<String>)]
    pub delivery_date: Option<DeliveryDate>,
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<CustomerId>,
    #[schema(value_type = Option<String>)]
    pub reason_for_cancellation: Option<Reason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A history that cannot be folded: it does not begin with the order's placement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "order {order_id}: event version {version} ({event_type}) comes before the order was placed"
)]
pub struct NotPlaced {
    pub order_id: OrderId,
    pub version: u64,
    pub event_type: &'static str,
}

/// The state after `envelope`, given the state before it.
///
/// Events are facts that were valid when recorded, so evolving fails only for a history
/// that does not start with `OrderPlaced` (which only a damaged store can hold).
pub fn evolve(state: Option<&Order>, envelope: &Envelope) -> Result<Order, NotPlaced> {
    let at = envelope.occurred_at;
    let mut order = match (state, &envelope.event) {
        (_, OrderEvent::OrderPlaced(placed)) => Order {
            order_id: envelope.order_id.clone(),
            status: Status::Received,
            version: envelope.version,
            description: placed.description.clone(),
            register_date: placed.register_date,
            delivery_date: placed.delivery_date.clone(),
            customer_id: placed.customer_id.clone(),
            reason_for_cancellation: None,
            created_at: at,
            updated_at: at,
        },
        (Some(prev), _) => prev.clone(),
        (None, event) => {
            return Err(NotPlaced {
                order_id: envelope.order_id.clone(),
                version: envelope.version,
                event_type: event.type_name(),
            });
        }
    };
    match &envelope.event {
        OrderEvent::OrderPlaced(_) => {}
        OrderEvent::OrderStarted {} => order.status = Status::Inprocess,
        OrderEvent::OrderCompleted {} => order.status = Status::Completed,
        OrderEvent::OrderCanceled(c) => {
            order.status = Status::Canceled;
            order.reason_for_cancellation = Some(c.reason_for_cancellation.clone());
        }
        OrderEvent::OrderDetailsRevised(r) => {
            if let Some(d) = &r.description {
                order.description = d.clone();
            }
            if let Some(d) = &r.delivery_date {
                order.delivery_date = Some(d.clone());
            }
        }
    }
    order.version = envelope.version;
    order.updated_at = at;
    Ok(order)
}

/// The state after all `envelopes`, in order; `None` for an empty history.
pub fn fold<'a>(
    envelopes: impl IntoIterator<Item = &'a Envelope>,
) -> Result<Option<Order>, NotPlaced> {
    let mut state = None;
    for envelope in envelopes {
        state = Some(evolve(state.as_ref(), envelope)?);
    }
    Ok(state)
}
