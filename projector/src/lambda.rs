//! The projector's Lambda edge: a DynamoDB stream event in, batch-item failures out. The
//! only place where stream images are decoded into recorded events for the projector.

use aws_lambda_events::{
    dynamodb,
    streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse},
};
use backend::item::{self, NotAnEventItem};
use events_schema::Recorded;

use crate::Projector;

/// The recorded event a stream record's new image holds.
pub fn decode(record: &dynamodb::EventRecord) -> Result<Recorded, NotAnEventItem> {
    item::from_item(record.change.new_image.clone())
}

/// Projects the events of one stream batch. Records are taken in order up to the first
/// that is not a readable event; from the first record that failed, it and everything
/// after it are reported, as Lambda's checkpointing (and bisecting) expects.
pub async fn handle(projector: &Projector<'_>, event: dynamodb::Event) -> DynamoDbEventResponse {
    let mut records = Vec::with_capacity(event.records.len());
    let mut sequence_numbers = Vec::with_capacity(event.records.len());
    let mut unreadable = None;
    for record in &event.records {
        let seq = record.change.sequence_number.clone();
        if record.event_name != "INSERT" {
            // The event table is append-only: updates and deletes are not events.
            tracing::warn!(event_name = %record.event_name, sequence_number = ?seq, "ignoring a non-insert stream record");
            continue;
        }
        match decode(record) {
            Ok(recorded) => {
                records.push(recorded);
                sequence_numbers.push(seq);
            }
            Err(e) => {
                tracing::error!(error = %e, sequence_number = ?seq, "unreadable stream record");
                unreadable = Some(seq);
                break;
            }
        }
    }
    match projector.project(&records).await {
        Ok(()) => unreadable.map_or_else(DynamoDbEventResponse::default, failure),
        Err(failed) => {
            tracing::error!(error = %failed, "projecting failed; the batch will be retried from the failed record");
            failure(sequence_numbers.get(failed.first).cloned().flatten())
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
