//! The projector: takes a batch of the event table's stream records (the DynamoDB stream
//! event Lambda delivers), folds each event's order state into the read model and reports
//! the records it could not handle as batch-item failures, so that they are retried.
//!
//! Each record carries the order's state after its event, and the read model upserts only
//! newer versions: applying a record twice or out of order never moves an order back.

use aws_lambda_events::{
    dynamodb,
    streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse},
};
use backend::{ReadModel, item};
use events_schema::Recorded;

pub struct Projector<'a> {
    pub read_model: &'a dyn ReadModel,
}

impl Projector<'_> {
    /// Handles one stream batch. Records are handled in order; on the first record that
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
            failed_from = handled.first().map(|(seq, _)| seq.clone()).or(failed_from);
        } else {
            for (_, r) in &handled {
                tracing::debug!(
                    order_id = %r.envelope.order_id,
                    event_id = %r.envelope.event_id,
                    version = r.envelope.version,
                    correlation_id = %r.envelope.metadata.correlation_id,
                    "projected"
                );
            }
        }
        let mut response = DynamoDbEventResponse::default();
        if let Some(seq) = failed_from {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = seq;
            response.batch_item_failures.push(failure);
        }
        response
    }
}
