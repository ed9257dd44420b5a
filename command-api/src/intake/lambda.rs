//! The intake's Lambda edge: an SQS event of the intake queue in, a partial batch response
//! out. The only place where SQS's shapes meet the intake handler.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use super::{Intake, IntakeDelivery};

/// SQS's system attribute with how many times the message was received.
const RECEIVE_COUNT_ATTRIBUTE: &str = "ApproximateReceiveCount";

/// The deliveries of an SQS event: each message's id, body and receive count (a message
/// without an id cannot be reported or retried by id, so it gets an empty one, as Lambda
/// would see it).
pub fn deliveries(event: SqsEvent) -> Vec<IntakeDelivery> {
    event
        .records
        .into_iter()
        .map(|m| IntakeDelivery {
            receive_count: m
                .attributes
                .get(RECEIVE_COUNT_ATTRIBUTE)
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
            message_id: m.message_id.unwrap_or_default(),
            body: m.body.unwrap_or_default(),
        })
        .collect()
}

/// Handles one SQS batch: only the messages that failed for a passing reason are reported
/// as batch item failures (retried, and dead-lettered by the redrive policy in the end);
/// the event source mapping deletes the rest, invalid ones included, which the intake has
/// sent to the dead-letter queue itself with the reason.
pub async fn handle(intake: &Intake, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (id, _error) in intake.handle(deliveries(event)).await {
        response.add_failure(id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::SqsMessage;

    #[test]
    fn each_delivery_carries_the_messages_id_body_and_receive_count() {
        let mut first = SqsMessage::default();
        first.message_id = Some("m-1".into());
        first.body = Some("{}".into());
        first
            .attributes
            .insert(RECEIVE_COUNT_ATTRIBUTE.into(), "3".into());
        let mut bare = SqsMessage::default();
        bare.message_id = Some("m-2".into());
        let mut event = SqsEvent::default();
        event.records = vec![first, bare];
        assert_eq!(
            deliveries(event),
            vec![
                IntakeDelivery {
                    message_id: "m-1".into(),
                    body: "{}".into(),
                    receive_count: 3
                },
                IntakeDelivery {
                    message_id: "m-2".into(),
                    body: String::new(),
                    receive_count: 1
                },
            ]
        );
    }
}
