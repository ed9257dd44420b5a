//! The reference reactions, one per status: acknowledgement, work-started notice, invoice
//! (JSON and PDF), cancellation notice. Each names its documents after the event's version,
//! so an order's documents list in the order of its events.

use backend::Document;
use events_schema::{Envelope, EventDetail, OrderEvent};
use serde_json::json;

use crate::{Reaction, invoice_pdf};

#[derive(Debug, thiserror::Error)]
pub enum ReactionError {
    #[error("rendering the invoice PDF: {0}")]
    InvoicePdf(#[from] invoice_pdf::InvoicePdfError),
}

pub fn by_name(name: &str) -> Option<Box<dyn Reaction>> {
    let all: [Box<dyn Reaction>; 4] = [
        Box::new(Acknowledgement),
        Box::new(WorkStarted),
        Box::new(Invoice),
        Box::new(CancellationNotice),
    ];
    all.into_iter().find(|r| r.name() == name)
}

/// A JSON document about the event, derived from it alone: the same event always gives the
/// same bytes.
fn document(kind: &str, detail: &EventDetail, extra: serde_json::Value) -> Document {
    let e = &detail.event;
    let mut body = json!({
        "document": kind,
        "orderId": e.order_id,
        "eventId": e.event_id,
        "version": e.version,
        "issuedAt": e.occurred_at,
        "order": detail.order,
    });
    if let (Some(obj), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    Document {
        name: format!("{:06}-{kind}.json", e.version),
        content_type: "application/json".into(),
        body: serde_json::to_vec_pretty(&body).unwrap_or_default(),
    }
}

pub struct Acknowledgement;
impl Reaction for Acknowledgement {
    fn name(&self) -> &'static str {
        "received"
    }
    fn react(&self, detail: &EventDetail, _: &[Envelope]) -> Result<Vec<Document>, ReactionError> {
        Ok(matches!(detail.event.event, OrderEvent::OrderPlaced(_))
            .then(|| {
                document(
                    "acknowledgement",
                    detail,
                    json!({ "text": format!("We have received order {}.", detail.order.order_id) }),
                )
            })
            .into_iter()
            .collect())
    }
}

pub struct WorkStarted;
impl Reaction for WorkStarted {
    fn name(&self) -> &'static str {
        "inprocess"
    }
    fn react(&self, detail: &EventDetail, _: &[Envelope]) -> Result<Vec<Document>, ReactionError> {
        Ok(matches!(detail.event.event, OrderEvent::OrderStarted {})
            .then(|| {
                document(
                    "work-started",
                    detail,
                    json!({ "text": format!("Work on order {} has started.", detail.order.order_id) }),
                )
            })
            .into_iter()
            .collect())
    }
}

pub struct Invoice;
impl Reaction for Invoice {
    fn name(&self) -> &'static str {
        "completed"
    }
    fn needs_history(&self) -> bool {
        true
    }
    /// The JSON invoice for machines and the PDF for people, from the same event.
    fn react(
        &self,
        detail: &EventDetail,
        history: &[Envelope],
    ) -> Result<Vec<Document>, ReactionError> {
        if !matches!(detail.event.event, OrderEvent::OrderCompleted {}) {
            return Ok(Vec::new());
        }
        let json = document(
            "invoice",
            detail,
            json!({
                "invoiceNumber": invoice_pdf::invoice_number(detail),
                "customerId": detail.order.customer_id,
                "lines": [{ "description": detail.order.description, "quantity": 1 }],
            }),
        );
        let pdf = Document {
            name: format!("{:06}-invoice.pdf", detail.event.version),
            content_type: "application/pdf".into(),
            body: invoice_pdf::render(detail, history)?,
        };
        Ok(vec![json, pdf])
    }
}

pub struct CancellationNotice;
impl Reaction for CancellationNotice {
    fn name(&self) -> &'static str {
        "canceled"
    }
    fn react(&self, detail: &EventDetail, _: &[Envelope]) -> Result<Vec<Document>, ReactionError> {
        Ok(match &detail.event.event {
            OrderEvent::OrderCanceled(c) => vec![document(
                "cancellation-notice",
                detail,
                json!({ "reason": c.reason_for_cancellation }),
            )],
            _ => Vec::new(),
        })
    }
}
