//! The handlers' Lambda edge: an SQS event in, a partial batch response out. The only
//! place where SQS's shapes meet the handler core.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use crate::{Delivery, Handler};

/// The deliveries of an SQS event: each message's id and body (a message without an id
/// cannot be reported or retried by id, so it gets an empty one, as Lambda would see it).
pub fn deliveries(event: SqsEvent) -> Vec<Delivery> {
    event
        .records
        .into_iter()
        .map(|m| Delivery {
            id: m.message_id.unwrap_or_default(),
            body: m.body.unwrap_or_default(),
        })
        .collect()
}

/// Handles one SQS batch: the messages that failed are reported as batch item failures,
/// so that only they are retried and, in the end, dead-lettered.
pub async fn handle(handler: &Handler, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in handler.handle(deliveries(event)).await {
        response.add_failure(id);
    }
    response
}
