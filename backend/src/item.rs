//! The stored shape of an event: one DynamoDB item per event (key `orderId` + `version`),
//! the envelope's members at the top level and the order's state after the event under
//! `order`. Stream records carry this item as their `NewImage`, on both backends.

use aws_lambda_events::dynamodb::{EventRecord, StreamRecord, StreamViewType};
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

/// A DynamoDB Streams `INSERT` record for `recorded`, as Lambda would deliver it.
pub fn stream_record(
    recorded: &Recorded,
    sequence_number: String,
    source_arn: &str,
) -> Result<EventRecord, NotAnEventItem> {
    let new_image = to_item(recorded)?;
    let keys = serde_dynamo::to_item(serde_json::json!({
        "orderId": recorded.envelope.order_id.as_str(),
        "version": recorded.envelope.version,
    }))
    .map_err(|e| NotAnEventItem(e.to_string()))?;
    let mut change = StreamRecord::default();
    change.approximate_creation_date_time = recorded.envelope.occurred_at;
    change.keys = keys;
    change.new_image = new_image;
    change.sequence_number = Some(sequence_number.clone());
    change.stream_view_type = Some(StreamViewType::NewImage);
    let mut record = EventRecord::default();
    record.aws_region = "local".into();
    record.event_id = sequence_number;
    record.event_name = "INSERT".into();
    record.event_source = Some("aws:dynamodb".into());
    record.event_version = Some("1.1".into());
    record.event_source_arn = Some(source_arn.into());
    record.change = change;
    Ok(record)
}
