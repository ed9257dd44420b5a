//! A handler over the embedded ledger and documents: each event reacted to once in effect,
//! other events ignored, poison messages reported as batch-item failures.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use backend::{DocumentStore, embedded::Embedded};
use chrono::Utc;
use events_schema::{
    Command, CustomerId, DeliveryDate, Description, Envelope, EventContext, EventDetail, Metadata,
    OrderId, PlaceOrder, Reason, Recorded, decide, record,
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
        s.embedded.events.clone(),
        fail_marker.map(str::to_owned),
    )
    .expect("a handler")
}

/// Appends `events` (one order's, from its first) to the store, as the API would have.
async fn store(s: &Setup, events: &[Recorded]) {
    backend::EventStore::append(
        s.embedded.events.as_ref(),
        backend::Append {
            order_id: events[0].order.order_id.clone(),
            expected_version: 0,
            events: events.to_vec(),
            idempotency: None,
        },
    )
    .await
    .expect("appended");
}

#[tokio::test]
async fn each_status_handler_writes_its_document_for_its_event_only() {
    let s = setup();
    let events = history("ORD-1", &[place("a"), Command::Start, Command::Complete]);
    store(&s, &events).await;
    for (name, expected) in [
        ("received", "000001-acknowledgement.json"),
        ("inprocess", "000002-work-started.json"),
        ("completed", "000003-invoice.json"),
        ("completed", "000003-invoice.pdf"),
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
        4,
        "one document per status (two for the invoice), nothing for other events"
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

/// A completed order whose description needs more than ASCII, its events as recorded.
fn completed_order(id: &str) -> Vec<Recorded> {
    history(
        id,
        &[
            Command::Place(PlaceOrder {
                description: Description::parse("Café añejo — pedido nº 7").expect("valid"),
                register_date: Utc::now(),
                delivery_date: Some(DeliveryDate::parse("2026-12-24").expect("date")),
                customer_id: Some(CustomerId::parse("cliente-ñ").expect("customer")),
            }),
            Command::Start,
            Command::Complete,
        ],
    )
}

fn detail(r: &Recorded) -> EventDetail {
    EventDetail {
        event: r.envelope.clone(),
        order: r.order.clone(),
        replayed: false,
    }
}

fn envelopes(events: &[Recorded]) -> Vec<Envelope> {
    events.iter().map(|r| r.envelope.clone()).collect()
}

/// The text of every page, as a PDF reader extracts it (through the font's Unicode map).
fn pdf_text(pdf: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(pdf).expect("a valid PDF");
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    assert!(!pages.is_empty(), "the PDF has pages");
    doc.extract_text(&pages).expect("extractable text")
}

fn date(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn the_invoice_pdf_parses_and_its_text_has_the_order_the_dates_the_status_history_and_the_hash() {
    let events = completed_order("ORD-PDF-1");
    let completed = &events[2];
    let pdf =
        handlers::invoice_pdf::render(&detail(completed), &envelopes(&events)).expect("renders");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf);
    let order = &completed.order;
    let mut expected = vec![
        "Invoice INV-ORD-PDF-1-3".to_owned(),
        "ORD-PDF-1".to_owned(),
        "Café añejo — pedido nº 7".to_owned(),
        "cliente-ñ".to_owned(),
        "2026-12-24".to_owned(),
        date(order.register_date),
        completed.envelope.event_id.to_string(),
        completed.envelope.hash.to_string(),
    ];
    for (r, status) in events.iter().zip(["received", "inprocess", "completed"]) {
        expected.push(format!("{}  {status}", date(r.envelope.occurred_at)));
    }
    for field in expected {
        assert!(
            text.contains(&field),
            "{field:?} not in the PDF's text:\n{text}"
        );
    }
}

#[test]
fn the_invoice_pdf_is_read_by_pdftotext_accents_included() {
    let Ok(found) = std::process::Command::new("pdftotext").arg("-v").output() else {
        eprintln!(
            "SKIPPED: pdftotext is not installed (apt-get install poppler-utils); lopdf reads the PDF in the test above"
        );
        return;
    };
    assert!(found.status.success() || !found.stderr.is_empty());
    let events = completed_order("ORD-PDF-2");
    let pdf =
        handlers::invoice_pdf::render(&detail(&events[2]), &envelopes(&events)).expect("renders");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("invoice.pdf");
    std::fs::write(&file, &pdf).expect("written");
    let out = std::process::Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    for field in [
        "ORD-PDF-2",
        "Café añejo — pedido nº 7",
        &events[2].envelope.hash.to_string(),
    ] {
        assert!(text.contains(field), "{field:?} not in:\n{text}");
    }
}

#[test]
fn the_invoice_pdf_is_the_same_bytes_for_the_same_event_and_differs_for_another() {
    let events = completed_order("ORD-PDF-3");
    let history = envelopes(&events);
    let first = handlers::invoice_pdf::render(&detail(&events[2]), &history).expect("renders");
    let again = handlers::invoice_pdf::render(&detail(&events[2]), &history).expect("renders");
    assert!(
        first == again,
        "a re-issue for the same event must be byte-identical"
    );
    let other = completed_order("ORD-PDF-3");
    let different =
        handlers::invoice_pdf::render(&detail(&other[2]), &envelopes(&other)).expect("renders");
    assert!(
        first != different,
        "another event (id, hash) gives another PDF"
    );
}

#[test]
fn a_description_longer_than_a_page_flows_onto_more_pages_and_nothing_is_lost() {
    let lines: Vec<String> = (1..=150).map(|i| format!("línea {i}")).collect();
    let events = history(
        "ORD-PDF-LONG",
        &[place(&lines.join("\n")), Command::Start, Command::Complete],
    );
    let pdf =
        handlers::invoice_pdf::render(&detail(&events[2]), &envelopes(&events)).expect("renders");
    let doc = lopdf::Document::load_mem(&pdf).expect("a valid PDF");
    assert!(doc.get_pages().len() > 1, "150 lines do not fit one page");
    let text = pdf_text(&pdf);
    let text_lines: Vec<&str> = text.lines().map(str::trim).collect();
    for line in &lines {
        assert!(
            text_lines.contains(&line.as_str()),
            "{line:?} not in the PDF's text"
        );
    }
    assert!(text.contains(&events[2].envelope.hash.to_string()));
}

#[tokio::test]
async fn the_completed_handler_writes_the_pdf_invoice_once_for_a_redelivered_event() {
    let s = setup();
    let events = completed_order("ORD-PDF-4");
    store(&s, &events).await;
    let h = handler(&s, "completed", None);
    let mut bodies = Vec::new();
    for round in 0..2 {
        let response =
            handlers::lambda::handle(&h, batch(vec![message(&format!("p{round}"), &events[2])]))
                .await;
        assert!(response.batch_item_failures.is_empty());
        let doc = s
            .embedded
            .documents
            .get(&events[2].order.order_id, "000003-invoice.pdf")
            .await
            .expect("get")
            .expect("written");
        assert_eq!(doc.content_type, "application/pdf");
        bodies.push(doc.body);
    }
    assert!(bodies[0] == bodies[1]);
    assert!(pdf_text(&bodies[0]).contains("Café añejo — pedido nº 7"));
}

#[tokio::test]
async fn the_completed_handler_retries_while_the_event_store_lacks_the_event() {
    let s = setup();
    let events = completed_order("ORD-PDF-5");
    store(&s, &events[..2]).await;
    let response = handlers::lambda::handle(
        &handler(&s, "completed", None),
        batch(vec![message("early", &events[2])]),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["early"]);
    assert!(
        s.embedded
            .documents
            .list(&events[2].order.order_id)
            .await
            .expect("list")
            .is_empty()
    );
}

#[test]
fn only_the_invoice_reads_the_order_history() {
    // The CDK app grants Query on the event table to these handlers only
    // (HISTORY_HANDLERS in cdk/lib/ordersource-stack.ts): keep the two lists equal.
    let reading: Vec<&str> = events_schema::route_table()
        .routes
        .iter()
        .filter_map(|r| handlers::reactions::by_name(&r.handler))
        .filter(|r| r.needs_history())
        .map(|r| r.name())
        .collect();
    assert_eq!(reading, ["completed"]);
}
