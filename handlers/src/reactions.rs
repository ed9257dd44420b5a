//! The reference reactions, one per status: acknowledgement, work-started notice, invoice,
//! cancellation notice. Each names its document after the event's version, so an order's
//! documents list in the order of its events.

use backend::Document;
use events_schema::{EventDetail, OrderEvent};
use serde_json::json;

use crate::Reaction;

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
    fn react(&self, detail: &EventDetail) -> Option<Document> {
        matches!(detail.event.event, OrderEvent::OrderPlaced(_)).then(|| {
            document(
                "acknowledgement",
                detail,
                json!({ "text": format!("We have received order {}.", detail.order.order_id) }),
            )
        })
    }
}

pub struct WorkStarted;
impl Reaction for WorkStarted {
    fn name(&self) -> &'static str {
        "inprocess"
    }
    fn react(&self, detail: &EventDetail) -> Option<Document> {
        matches!(detail.event.event, OrderEvent::OrderStarted {}).then(|| {
            document(
                "work-started",
                detail,
                json!({ "text": format!("Work on order {} has started.", detail.order.order_id) }),
            )
        })
    }
}

pub struct Invoice;
impl Reaction for Invoice {
    fn name(&self) -> &'static str {
        "completed"
    }
    fn react(&self, detail: &EventDetail) -> Option<Document> {
        matches!(detail.event.event, OrderEvent::OrderCompleted {}).then(|| {
            document(
                "invoice",
                detail,
                json!({
                    "invoiceNumber": format!("INV-{}-{}", detail.order.order_id, detail.event.version),
                    "customerId": detail.order.customer_id,
                    "lines": [{ "description": detail.order.description, "quantity": 1 }],
                }),
            )
        })
    }
}

pub struct CancellationNotice;
impl Reaction for CancellationNotice {
    fn name(&self) -> &'static str {
        "canceled"
    }
    fn react(&self, detail: &EventDetail) -> Option<Document> {
        match &detail.event.event {
            OrderEvent::OrderCanceled(c) => Some(document(
                "cancellation-notice",
                detail,
                json!({ "reason": c.reason_for_cancellation }),
            )),
            _ => None,
        }
    }
}
