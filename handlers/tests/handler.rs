//! A handler over the embedded ledger and documents: each event reacted to once in effect,
//! other events ignored, poison messages reported as batch-item failures.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use backend::{DocumentStore, embedded::Embedded};
use chrono::Utc;
use events_schema::{
    Command, Description, EventContext, EventDetail, Metadata, OrderId, PlaceOrder, Reason,
    Recorded, decide, record,
};

/// Records `commands` for one order, as the event store would.
fn history(id: &str, commands: &[Command]) -> Vec<Recorded> {
    let order_id = OrderId::parse(id).expect("id");
    let mut out: Vec<Recorded> = Vec::new();
    for c in commands {
        let head = out.last().map(|r| (&r.order, &r.envelope.hash));
        let events = decide(&order_id, head.map(|(o, _)| o), c).expect("accepted");
        let ctx = EventContext {
            occurred_at: Utc::now(),
            metadata: Metadata {
                correlation_id: "c".into(),
                ..Metadata::default()
            },
        };
        let new = record(&order_id, head, events, &ctx, uuid::Uuid::now_v7).expect("records");
        out.extend(new);
    }
    out
}

fn place(description: &str) -> Command {
    Command::Place(PlaceOrder {
        description: Description::parse(description).expect("valid"),
        register_date: Utc::now(),
        delivery_date: None,
        customer_id: None,
    })
}

fn message(id: &str, r: &Recorded) -> SqsMessage {
    let detail = EventDetail {
        event: r.envelope.clone(),
        order: r.order.clone(),
        replayed: false,
    };
    let body = serde_json::json!({
        "version": "0", "id": "x", "detail-type": r.envelope.event.type_name(),
        "source": "ordersource.orders", "time": "2026-01-01T00:00:00Z", "region": "local",
        "resources": [], "detail": detail,
    });
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body.to_string());
    m
}

fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

struct Setup {
    _dir: tempfile::TempDir,
    embedded: Embedded,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let embedded = Embedded::open(dir.path(), events_schema::route_table()).expect("opens");
    Setup {
        _dir: dir,
        embedded,
    }
}

fn handler(s: &Setup, name: &str, fail_marker: Option<&str>) -> handlers::Handler {
    handlers::handler(
        name,
        s.embedded.events.clone(),
        s.embedded.documents.clone(),
        fail_marker.map(str::to_owned),
    )
    .expect("a handler")
}

#[tokio::test]
async fn each_status_handler_writes_its_document_for_its_event_only() {
    let s = setup();
    let events = history("ORD-1", &[place("a"), Command::Start, Command::Complete]);
    for (name, expected) in [
        ("received", "000001-acknowledgement.json"),
        ("inprocess", "000002-work-started.json"),
        ("completed", "000003-invoice.json"),
    ] {
        let all: Vec<SqsMessage> = events
            .iter()
            .enumerate()
            .map(|(i, r)| message(&format!("{name}-{i}"), r))
            .collect();
        let response = handlers::lambda::handle(&handler(&s, name, None), batch(all)).await;
        assert!(response.batch_item_failures.is_empty(), "{name}");
        let docs = s
            .embedded
            .documents
            .list(&events[0].order.order_id)
            .await
            .expect("list");
        assert!(docs.iter().any(|d| d.name == expected), "{name}: {docs:?}");
    }
    let docs = s
        .embedded
        .documents
        .list(&events[0].order.order_id)
        .await
        .expect("list");
    assert_eq!(
        docs.len(),
        3,
        "one document per status, nothing for other events"
    );
}

#[tokio::test]
async fn the_cancellation_notice_carries_the_reason() {
    let s = setup();
    let events = history(
        "ORD-2",
        &[
            place("a"),
            Command::Cancel {
                reason: Reason::parse("Motivo X").expect("reason"),
            },
        ],
    );
    let response = handlers::lambda::handle(
        &handler(&s, "canceled", None),
        batch(vec![message("m", &events[1])]),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    let doc = s
        .embedded
        .documents
        .get(&events[1].order.order_id, "000002-cancellation-notice.json")
        .await
        .expect("get")
        .expect("written");
    let json: serde_json::Value = serde_json::from_slice(&doc.body).expect("json");
    assert_eq!(json["reason"], "Motivo X");
    assert_eq!(json["document"], "cancellation-notice");
}

#[tokio::test]
async fn a_redelivered_event_is_handled_once_in_effect() {
    let s = setup();
    let events = history("ORD-3", &[place("a")]);
    let h = handler(&s, "received", None);
    for round in 0..3 {
        let response =
            handlers::lambda::handle(&h, batch(vec![message(&format!("m{round}"), &events[0])]))
                .await;
        assert!(response.batch_item_failures.is_empty());
    }
    let docs = s
        .embedded
        .documents
        .list(&events[0].order.order_id)
        .await
        .expect("list");
    assert_eq!(docs.len(), 1);
    // The ledger remembers the event: the key is now a replay, not a fresh claim.
    let key = backend::LedgerKey::handler("received", events[0].envelope.event_id);
    let claim = backend::IdempotencyStore::claim(
        s.embedded.events.as_ref(),
        &key,
        &events[0].envelope.event_id.to_string(),
        Utc::now(),
    )
    .await
    .expect("claim");
    assert!(matches!(claim, backend::Claim::Replay(_)), "{claim:?}");
}

#[tokio::test]
async fn only_the_poison_message_of_a_batch_is_reported() {
    let s = setup();
    let good = history("ORD-4", &[place("fine")]);
    let bad = history("ORD-5", &[place("please FAIL here")]);
    let mut garbage = SqsMessage::default();
    garbage.message_id = Some("garbage".into());
    garbage.body = Some("{not json".into());
    let response = handlers::lambda::handle(
        &handler(&s, "received", Some("FAIL")),
        batch(vec![
            message("good", &good[0]),
            message("bad", &bad[0]),
            garbage,
        ]),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["bad", "garbage"]);
    assert_eq!(
        s.embedded
            .documents
            .list(&good[0].order.order_id)
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        s.embedded
            .documents
            .list(&bad[0].order.order_id)
            .await
            .expect("list")
            .is_empty()
    );
}

#[test]
fn every_route_names_a_known_handler() {
    for route in &events_schema::route_table().routes {
        assert!(
            handlers::reactions::by_name(&route.handler).is_some(),
            "{}",
            route.handler
        );
    }
}

#[tokio::test]
async fn emf_counts_the_document_once_and_the_redelivery_as_a_duplicate() {
    backend::emf::capture_in_memory();
    let s = setup();
    let events = history("ORD-EMF", &[place("a")]);
    let event_id = events[0].envelope.event_id.to_string();
    let h = handler(&s, "received", None);
    let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    for round in 0..2 {
        let mut m = message(&format!("e{round}"), &events[0]);
        m.attributes
            .insert("AWSTraceHeader".to_owned(), trace.to_owned());
        let response = handlers::lambda::handle(&h, batch(vec![m])).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let docs = backend::emf::captured();
    // Each names the event's correlation id and the trace the message came in.
    for d in docs
        .iter()
        .filter(|d| d["eventId"] == event_id.as_str() || d["id"] == event_id.as_str())
    {
        assert_eq!(
            (&d["correlationId"], &d["traceHeader"]),
            (&serde_json::json!("c"), &serde_json::json!(trace)),
            "{d}"
        );
    }
    let written = docs
        .iter()
        .filter(|d| d["eventId"] == event_id.as_str() && d["Handler"] == "received")
        .map(|d| d["DocumentsWritten"].as_f64().expect("a value"))
        .sum::<f64>();
    let duplicates = docs
        .iter()
        .filter(|d| d["id"] == event_id.as_str() && d["Kind"] == "HandlerDelivery")
        .map(|d| d["Duplicates"].as_f64().expect("a value"))
        .sum::<f64>();
    assert_eq!((written, duplicates), (1.0, 1.0), "{docs:#?}");
}
