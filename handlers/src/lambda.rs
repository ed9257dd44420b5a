//! The handlers' Lambda edge: an SQS event in, a partial batch response out. The only
//! place where SQS's shapes meet the handler core.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use crate::{Delivery, Handler};

/// SQS's system attribute with the X-Ray trace header the message was sent in. Lambda's
/// event source mapping passes every system attribute; nothing needs to ask for it.
const TRACE_HEADER_ATTRIBUTE: &str = "AWSTraceHeader";

/// The deliveries of an SQS event: each message's id, body and trace header (a message
/// without an id cannot be reported or retried by id, so it gets an empty one, as Lambda
/// would see it).
pub fn deliveries(event: SqsEvent) -> Vec<Delivery> {
    event
        .records
        .into_iter()
        .map(|mut m| Delivery {
            trace_header: m.attributes.remove(TRACE_HEADER_ATTRIBUTE),
            id: m.message_id.unwrap_or_default(),
            body: m.body.unwrap_or_default(),
        })
        .collect()
}

/// Handles one SQS batch: the messages that failed are reported as batch item failures,
/// so that only they are retried and, in the end, dead-lettered.
pub async fn handle(handler: &Handler, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for failed in handler.handle(deliveries(event)).await {
        response.add_failure(failed.id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::SqsMessage;

    fn message(id: &str, trace: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some("{}".to_owned());
        m.attributes
            .insert("ApproximateReceiveCount".to_owned(), "1".to_owned());
        if let Some(trace) = trace {
            m.attributes
                .insert(TRACE_HEADER_ATTRIBUTE.to_owned(), trace.to_owned());
        }
        m
    }

    #[test]
    fn each_delivery_carries_the_messages_aws_trace_header() {
        let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let mut event = SqsEvent::default();
        event.records = vec![message("m-1", Some(trace)), message("m-2", None)];
        let got = deliveries(event);
        assert_eq!(got[0].id, "m-1");
        assert_eq!(got[0].trace_header.as_deref(), Some(trace));
        assert_eq!(got[1].id, "m-2");
        assert_eq!(got[1].trace_header, None);
    }
}
