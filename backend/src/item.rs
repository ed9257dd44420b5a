//! The stored shape of an event: one DynamoDB item per event (key `orderId` + `version`),
//! the envelope's members at the top level and the order's state after the event under
//! `order`. The table's stream records carry this item as their `NewImage`: the AWS change
//! feed and the projector Lambda decode events from it with [`from_item`].

use events_schema::{Envelope, Order, Recorded};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct ItemRef<'a> {
    #[serde(flatten)]
    envelope: &'a Envelope,
    order: &'a Order,
}

#[derive(Deserialize)]
struct ItemOwned {
    #[serde(flatten)]
    envelope: Envelope,
    order: Order,
}

#[derive(Debug, thiserror::Error)]
#[error("not an order event item: {0}")]
pub struct NotAnEventItem(String);

pub fn to_item(recorded: &Recorded) -> Result<serde_dynamo::Item, NotAnEventItem> {
    serde_dynamo::to_item(ItemRef {
        envelope: &recorded.envelope,
        order: &recorded.order,
    })
    .map_err(|e| NotAnEventItem(e.to_string()))
}

pub fn from_item(item: serde_dynamo::Item) -> Result<Recorded, NotAnEventItem> {
    let owned: ItemOwned =
        serde_dynamo::from_item(item).map_err(|e| NotAnEventItem(e.to_string()))?;
    Ok(Recorded {
        envelope: owned.envelope,
        order: owned.order,
    })
}
