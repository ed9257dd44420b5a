//! What the bus delivers keeps the published contract: every `detail` a running
//! `orders dev` routed to its queues validates against the checked-in JSON Schema
//! (`events-schema/schema/order-event-detail.schema.json`, what subscribers code against),
//! for every event type the schema names, live and republished.
//!
//! The handlers are told to fail these orders (`ORDERS_HANDLER_FAIL_MARKER`), so that each
//! delivered message ends in its dead-letter queue untouched, where `orders dlq list`
//! shows it exactly as the bus delivered it.

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use e2e::{
    TestApp,
    audit::{explain, json_lines},
    orders_bin, wait_until,
};
use serde_json::{Value, json};

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(60);
const MARKER: &str = "SCHEMA-CAPTURE";
const SCHEMA: &str = include_str!("../../../events-schema/schema/order-event-detail.schema.json");

/// The published schema, with formats (`date`, `date-time`) checked too.
fn validator() -> (jsonschema::Validator, Value) {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the published schema is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the published schema compiles");
    (validator, schema)
}

/// The event types the schema defines: the `type` constants of the envelope's variants.
fn schema_event_types(schema: &Value) -> BTreeSet<String> {
    schema["$defs"]["Envelope"]["oneOf"]
        .as_array()
        .expect("the envelope is a oneOf of the event types")
        .iter()
        .map(|v| {
            v["properties"]["type"]["const"]
                .as_str()
                .expect("a type constant")
                .to_owned()
        })
        .collect()
}

/// Every way the schema rejects `detail`, one line each with where it is.
fn violations(validator: &jsonschema::Validator, detail: &Value) -> Vec<String> {
    validator
        .iter_errors(detail)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn orders(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(orders_bin())
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("ORDERS_DATA")
        .env("RUST_LOG", "warn")
        .output()
        .expect("orders runs")
}

/// Places and drives orders through every event type, each optional field sent at least
/// once. Returns how many events were appended.
async fn drive_every_event_type(app: &TestApp) -> usize {
    let mut events = 0;
    let mut write = |r: e2e::Resp, status: u16| {
        r.expect_write(status);
        events += 1;
    };
    // Placed with every optional field, revised (both fields), started, completed.
    write(
        app.post_with(
            "/orders",
            json!({
                "orderId": "SC-1",
                "description": format!("{MARKER} everything"),
                "customerId": "C-42",
                "deliveryDate": "2026-12-24",
                "registerDate": "2026-11-30T08:15:00.123456Z",
            }),
            &[("idempotency-key", "schema-capture-1")],
        )
        .await,
        201,
    );
    write(
        app.put(
            "/orders/SC-1",
            json!({"description": format!("{MARKER} revised"), "deliveryDate": "2026-12-31T18:00:00+01:00"}),
        )
        .await,
        200,
    );
    write(app.post("/orders/SC-1/start", json!({})).await, 200);
    write(app.post("/orders/SC-1/complete", json!({})).await, 200);
    // Placed with the least, canceled from received.
    write(
        app.post(
            "/orders",
            json!({"orderId": "SC-2", "description": format!("{MARKER} minimal")}),
        )
        .await,
        201,
    );
    write(
        app.post(
            "/orders/SC-2/cancel",
            json!({"reasonForCancellation": "no longer needed"}),
        )
        .await,
        200,
    );
    // Seed 001's Spanish body; started, then canceled by a PUT from inprocess.
    write(
        app.post(
            "/orders",
            json!({"orderId": "SC-3", "descripcion": format!("{MARKER} en español"), "fecha_entrega": "15/01/2027", "estado": "recibida"}),
        )
        .await,
        201,
    );
    write(app.post("/orders/SC-3/start", json!({})).await, 200);
    write(
        app.put(
            "/orders/SC-3",
            json!({"status": "canceled", "reasonForCancellation": "out of stock"}),
        )
        .await,
        200,
    );
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_detail_the_bus_delivers_validates_against_the_published_schema() {
    let (validator, schema) = validator();
    let types = schema_event_types(&schema);
    let mut app = TestApp::spawn_with_env(&[
        ("ORDERS_VISIBILITY_TIMEOUT", "1"),
        ("ORDERS_HANDLER_FAIL_MARKER", MARKER),
    ]);
    let from = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let events = drive_every_event_type(&app).await;
    wait_until(
        PIPELINE_TIMEOUT,
        "every delivery in a dead-letter queue",
        || async {
            let h = app.get("/health").await.expect_status(200).json;
            let dead: u64 = h["queues"]
                .as_array()
                .map(|qs| qs.iter().filter_map(|q| q["deadLetters"].as_u64()).sum())
                .unwrap_or(0);
            dead == events as u64
        },
    )
    .await;

    let data = app.data_dir();
    let mut delivered = Vec::new();
    for route in &events_schema::route_table().routes {
        let out = orders(&["dlq", "list", "--queue", &route.queue], &data);
        assert!(out.status.success(), "{}", explain(&out));
        delivered.extend(
            json_lines(&out)
                .into_iter()
                .map(|line| (route.queue.clone(), line["body"].clone())),
        );
    }
    assert_eq!(delivered.len(), events, "{delivered:#?}");
    let mut seen_types = BTreeSet::new();
    for (queue, body) in &delivered {
        let detail = &body["detail"];
        let problems = violations(&validator, detail);
        assert!(
            problems.is_empty(),
            "a detail delivered to {queue} breaks the published schema:\n{}\n{detail:#}",
            problems.join("\n")
        );
        // And it is the event the API serves, as stored.
        let order_id = detail["event"]["orderId"].as_str().expect("an order id");
        let version = detail["event"]["version"].as_u64().expect("a version");
        let stored = &app.events(order_id).await[version as usize - 1];
        assert_eq!(&detail["event"], stored, "{queue}: {order_id} v{version}");
        assert_eq!(body["detail-type"], detail["event"]["type"], "{queue}");
        assert!(
            detail.get("replayed").is_none(),
            "a live delivery: {detail}"
        );
        seen_types.insert(detail["event"]["type"].as_str().unwrap_or("?").to_owned());
    }
    assert_eq!(
        seen_types, types,
        "every event type of the schema is delivered"
    );

    // Republished: the same details, marked `replayed`, still valid. With the service
    // stopped they wait in the queues for it.
    assert!(app.stop_graceful().await.success());
    let to = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    let out = orders(
        &["republish", "--from", &from, "--to", &to, "--json"],
        &data,
    );
    assert!(out.status.success(), "{}", explain(&out));
    assert_eq!(
        json_lines(&out)[0]["summary"]["published"],
        events as u64,
        "{}",
        explain(&out)
    );
    let route_queues: BTreeSet<String> = events_schema::route_table()
        .routes
        .iter()
        .map(|r| r.queue.clone())
        .collect();
    let queued: Vec<Value> = {
        let conn = rusqlite::Connection::open(data.join("orders.db")).expect("opens orders.db");
        let mut stmt = conn
            .prepare("SELECT queue, body FROM messages ORDER BY seq")
            .expect("prepares");
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .expect("queries")
            .map(|row| row.expect("a row"))
            // The dead letters of the live run share the table.
            .filter(|(queue, _)| route_queues.contains(queue))
            .map(|(_, body)| serde_json::from_str(&body).expect("JSON"))
            .collect()
    };
    assert_eq!(queued.len(), events);
    for body in &queued {
        let detail = &body["detail"];
        let problems = violations(&validator, detail);
        assert!(
            problems.is_empty(),
            "a republished detail breaks the published schema:\n{}\n{detail:#}",
            problems.join("\n")
        );
        assert_eq!(detail["replayed"], true, "{detail}");
    }
}

/// A named change to a valid detail.
type Drift = (&'static str, fn(&mut Value));

#[test]
fn a_detail_that_drifts_from_the_schema_is_caught() {
    let (validator, _) = validator();
    let detail = json!({
        "event": {
            "eventId": "01a232ba-4f41-7101-a47c-cd1c34e6c502",
            "orderId": "D-1",
            "version": 2,
            "type": "OrderCanceled",
            "schemaVersion": 1,
            "occurredAt": "2026-11-30T08:15:00.123456Z",
            "status": "canceled",
            "data": {"reasonForCancellation": "no longer needed"},
            "metadata": {"correlationId": "01a232ba-4f40-7440-ab1d-3bc94ec47933"},
            "prevHash": "0".repeat(64),
            "hash": "a".repeat(64),
        },
        "order": {
            "orderId": "D-1",
            "status": "canceled",
            "version": 2,
            "description": "a drifting order",
            "registerDate": "2026-11-30T08:15:00.123456Z",
            "reasonForCancellation": "no longer needed",
            "createdAt": "2026-11-30T08:15:00.123456Z",
            "updatedAt": "2026-11-30T08:16:00Z",
        },
    });
    assert_eq!(violations(&validator, &detail), Vec::<String>::new());
    let drifts: [Drift; 4] = [
        ("a renamed data field", |d| {
            d["event"]["data"] = json!({"reason": "no longer needed"});
        }),
        ("an unknown status", |d| {
            d["order"]["status"] = json!("cancelled")
        }),
        ("a date that is not one", |d| {
            d["order"]["registerDate"] = json!("30/11/2026");
        }),
        ("a missing hash", |d| {
            d["event"].as_object_mut().map(|e| e.remove("hash"));
        }),
    ];
    for (what, drift) in drifts {
        let mut drifted = detail.clone();
        drift(&mut drifted);
        assert!(
            !violations(&validator, &drifted).is_empty(),
            "{what} passed the schema: {drifted}"
        );
    }
}
