//! The projector: takes a batch of the event table's stream records (the DynamoDB stream
//! event Lambda delivers), folds each event's order state into the read model, then
//! publishes each event to the bus, and reports the records it could not handle as
//! batch-item failures so that they are retried.
//!
//! Each record carries the order's state after its event, and the read model upserts only
//! newer versions: applying a record twice or out of order never moves an order back.
//! Publication comes after the read model and before the checkpoint, so it is at least
//! once and never skipped; handlers are idempotent per event id.

use aws_lambda_events::{
    dynamodb,
    streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse},
};
use backend::{BusEntry, EventPublisher, ReadModel, item};
use events_schema::{EventDetail, Recorded};

pub struct Projector<'a> {
    pub read_model: &'a dyn ReadModel,
    pub publisher: &'a dyn EventPublisher,
    /// EventBridge `Source` of published events.
    pub source: &'a str,
}

/// The bus entry for a recorded event (`replayed` marks re-publication of history).
pub fn bus_entry(
    source: &str,
    recorded: &Recorded,
    replayed: bool,
) -> Result<BusEntry, serde_json::Error> {
    let detail = EventDetail {
        event: recorded.envelope.clone(),
        order: recorded.order.clone(),
        replayed,
    };
    Ok(BusEntry {
        source: source.to_owned(),
        detail_type: recorded.envelope.event.type_name().to_owned(),
        detail: serde_json::to_string(&detail)?,
        time: recorded.envelope.occurred_at,
    })
}

impl Projector<'_> {
    /// Handles one stream batch. Records are handled in order; from the first record that
    /// fails, it and everything after it are reported, as Lambda's checkpointing expects.
    pub async fn handle(&self, event: dynamodb::Event) -> DynamoDbEventResponse {
        let mut handled: Vec<(Option<String>, Recorded)> = Vec::with_capacity(event.records.len());
        let mut failed_from: Option<Option<String>> = None;
        for record in event.records {
            let seq = record.change.sequence_number.clone();
            if record.event_name != "INSERT" {
                // The event table is append-only: updates and deletes are not events.
                tracing::warn!(event_name = %record.event_name, sequence_number = ?seq, "ignoring a non-insert stream record");
                continue;
            }
            match item::from_item(record.change.new_image) {
                Ok(recorded) => handled.push((seq, recorded)),
                Err(e) => {
                    tracing::error!(error = %e, sequence_number = ?seq, "unreadable stream record");
                    failed_from = Some(seq);
                    break;
                }
            }
        }
        let orders: Vec<_> = handled.iter().map(|(_, r)| r.order.clone()).collect();
        if let Err(e) = self.read_model.apply(&orders).await {
            tracing::error!(error = %e, "read model update failed; the batch will be retried");
            return failure(
                handled
                    .first()
                    .map(|(seq, _)| seq.clone())
                    .or(failed_from)
                    .flatten(),
            );
        }
        if let Some(first_failed) = self.publish(&handled).await {
            return failure(handled.get(first_failed).and_then(|(seq, _)| seq.clone()));
        }
        for (_, r) in &handled {
            tracing::debug!(
                order_id = %r.envelope.order_id,
                event_id = %r.envelope.event_id,
                version = r.envelope.version,
                correlation_id = %r.envelope.metadata.correlation_id,
                "projected and published"
            );
        }
        failed_from.map_or_else(DynamoDbEventResponse::default, failure)
    }

    /// Publishes every handled event; the index of the first one that failed, if any.
    async fn publish(&self, handled: &[(Option<String>, Recorded)]) -> Option<usize> {
        let mut entries = Vec::with_capacity(handled.len());
        for (i, (_, r)) in handled.iter().enumerate() {
            match bus_entry(self.source, r, false) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode an event for the bus");
                    return Some(i);
                }
            }
        }
        if entries.is_empty() {
            return None;
        }
        match self.publisher.publish(&entries).await {
            Ok(failed) => failed.into_iter().min(),
            Err(e) => {
                tracing::error!(error = %e, "publishing failed; the batch will be retried");
                Some(0)
            }
        }
    }
}

fn failure(sequence_number: Option<String>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let mut item = DynamoDbBatchItemFailure::default();
    item.item_identifier = sequence_number;
    response.batch_item_failures.push(item);
    response
}
