//! The status fan-out on a running `orders dev`: every event is published, routed to its
//! status's queue and handled once in effect, including poison messages (dead-lettered
//! alone) and a `kill -9` under load.

use std::{collections::BTreeMap, time::Duration};

use e2e::{
    Client, TestApp,
    audit::{document_names, wait_drained},
    log_field, orders_bin, spawn_app, wait_for, wait_until,
};
use serde_json::{Value, json};

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The documents each order must end with, given the transitions it went through.
fn expected_documents(path: &[&str]) -> Vec<String> {
    let mut docs = vec!["000001-acknowledgement.json".to_owned()];
    for (i, step) in path.iter().enumerate() {
        let kind = match *step {
            "start" => "work-started",
            "complete" => "invoice",
            "cancel" => "cancellation-notice",
            other => panic!("unknown step {other}"),
        };
        docs.push(format!("{:06}-{kind}.json", i + 2));
        if kind == "invoice" {
            docs.push(format!("{:06}-invoice.pdf", i + 2));
        }
    }
    docs
}

async fn health(app: &TestApp) -> Value {
    app.get("/health").await.expect_status(200).json
}

async fn run_path(app: &TestApp, order_id: &str, path: &[&str]) {
    run_path_on(app.client, order_id, path).await;
}

async fn run_path_on(client: Client, order_id: &str, path: &[&str]) {
    client
        .post(
            "/orders",
            json!({"orderId": order_id, "description": format!("fan-out {order_id}")}),
        )
        .await
        .expect_status(201);
    for step in path {
        let body = if *step == "cancel" {
            json!({"reasonForCancellation": "no longer needed"})
        } else {
            json!({})
        };
        client
            .post(&format!("/orders/{order_id}/{step}"), body)
            .await
            .expect_status(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_document_appears_once_per_order_in_event_order() {
    let app = spawn_app();
    let paths: [&[&str]; 4] = [
        &["start", "complete"],
        &["cancel"],
        &["start", "cancel"],
        &[],
    ];
    let mut expected = BTreeMap::new();
    for i in 0..12 {
        let id = format!("F-{i:02}");
        let path = paths[i % paths.len()];
        run_path(&app, &id, path).await;
        expected.insert(id, expected_documents(path));
    }
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    for (id, docs) in &expected {
        let got = wait_for(PIPELINE_TIMEOUT, &format!("documents of {id}"), || async {
            let got = document_names(&app, id).await;
            (got.len() >= docs.len()).then_some(got)
        })
        .await;
        assert_eq!(&got, docs, "documents of {id}");
    }
    // Each document names the event it answers, and the reason travels to the notice.
    let events = app.events("F-01").await;
    let notice = app
        .get("/orders/F-01/documents/000002-cancellation-notice.json")
        .await
        .expect_status(200);
    assert_eq!(notice.json["eventId"], events[1]["eventId"]);
    assert_eq!(notice.json["reason"], "no longer needed");
    let h = health(&app).await;
    assert!(
        h["queues"]
            .as_array()
            .is_some_and(|qs| qs.iter().all(|q| q["deadLetters"] == 0)),
        "{h}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_goes_alone_to_the_dead_letter_queue() {
    let app = TestApp::spawn_with_env(&[
        ("ORDERS_VISIBILITY_TIMEOUT", "1"),
        ("ORDERS_HANDLER_FAIL_MARKER", "POISON"),
    ]);
    for i in 0..4 {
        app.place(&format!("G-{i}"), "a good order").await;
    }
    app.place("P-1", "a POISON pill").await;
    wait_until(
        PIPELINE_TIMEOUT,
        "the poison message in the DLQ",
        || async {
            let h = health(&app).await;
            h["queues"][0]["queue"] == "order-received" && h["queues"][0]["deadLetters"] == 1
        },
    )
    .await;
    for i in 0..4 {
        assert_eq!(
            document_names(&app, &format!("G-{i}")).await,
            vec!["000001-acknowledgement.json"]
        );
    }
    assert!(document_names(&app, "P-1").await.is_empty());
    let out = std::process::Command::new(orders_bin())
        .args(["dlq", "list", "--queue", "order-received", "--data"])
        .arg(app.data_dir())
        .output()
        .expect("orders dlq list runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["body"]["detail"]["order"]["orderId"], "P-1");
    let h = health(&app).await;
    assert!(
        h["queues"]
            .as_array()
            .is_some_and(|qs| qs.iter().skip(1).all(|q| q["deadLetters"] == 0)),
        "{h}"
    );
}

/// What the handlers' log says about each event: `document written` as each of its
/// documents is stored (before the ledger record that closes the event), `already handled`
/// when a delivery of it found that record. Keyed by event id; read from the log, which a
/// `kill -9` does not lose.
#[derive(Default, Debug)]
struct Effects {
    /// Event id → (order id, document name) of each `document written`.
    written: BTreeMap<String, Vec<(String, String)>>,
    /// Event ids of each `already handled`.
    already_handled: Vec<String>,
}

fn effects(lines: &[String]) -> Effects {
    let mut effects = Effects::default();
    for line in lines {
        let Some(event_id) = log_field(line, "event_id") else {
            continue;
        };
        if line.contains(": document written") {
            let order = log_field(line, "order_id").unwrap_or("?").to_owned();
            let document = log_field(line, "document").unwrap_or("?").to_owned();
            effects
                .written
                .entry(event_id.to_owned())
                .or_default()
                .push((order, document));
        } else if line.ends_with(": already handled") {
            effects.already_handled.push(event_id.to_owned());
        }
    }
    effects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_under_load_every_event_is_handled_exactly_once() {
    // The handlers' debug lines are the effect count: the documents themselves cannot show
    // a duplicate, a rewrite of the same name leaves the same row. A short visibility
    // timeout brings back what was in flight at the kill within the test's time.
    let mut app = TestApp::spawn_with_env(&[
        ("RUST_LOG", "warn,handlers=debug"),
        ("ORDERS_VISIBILITY_TIMEOUT", "2"),
    ]);
    let mut expected = BTreeMap::new();
    let paths: [&[&str]; 2] = [&["start", "complete"], &["cancel"]];
    // A first wave from several clients at once, so that the handlers fall behind, then
    // the crash while they are still working through it.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let client = app.client;
            tokio::spawn(async move {
                for i in (c..40).step_by(8) {
                    run_path_on(client, &format!("K-{i:02}"), paths[i % 2]).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("a first-wave client");
    }
    for i in 0..40 {
        expected.insert(format!("K-{i:02}"), expected_documents(paths[i % 2]));
    }
    // No waiting: the projector and handlers are still working through the first wave.
    app.kill9();
    let first_wave: usize = expected.values().map(Vec::len).sum();
    // The log lines the killed process left: what it did, told apart from the next start.
    let boundary = app.log_lines().len();
    // The events whose ledger records it had written (claims in progress live in memory):
    // handled for good, so the next process must store none of their documents again.
    let closed: std::collections::HashSet<String> = {
        let conn =
            rusqlite::Connection::open(app.data_dir().join("orders.db")).expect("opens orders.db");
        let mut stmt = conn
            .prepare("SELECT fingerprint FROM idempotency")
            .expect("prepares");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("queries")
            .map(|f| f.expect("a row"))
            .collect()
    };
    let done_at_kill: usize = effects(&app.log_lines()[..boundary])
        .written
        .values()
        .map(Vec::len)
        .sum();
    assert!(
        done_at_kill < first_wave,
        "every document of the first wave was written before the kill ({done_at_kill} of \
         {first_wave}): no work was in flight, the test proves nothing"
    );
    app.start();
    for i in 40..50 {
        let id = format!("K-{i:02}");
        let path = paths[i % 2];
        run_path(&app, &id, path).await;
        expected.insert(id, expected_documents(path));
    }
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    for (id, docs) in &expected {
        let got = wait_for(PIPELINE_TIMEOUT, &format!("documents of {id}"), || async {
            let got = document_names(&app, id).await;
            (got.len() >= docs.len()).then_some(got)
        })
        .await;
        assert_eq!(&got, docs, "documents of {id}: none missing, none extra");
    }
    let h = health(&app).await;
    assert!(
        h["queues"]
            .as_array()
            .is_some_and(|qs| qs.iter().all(|q| q["deadLetters"] == 0)),
        "{h}"
    );

    // Counted, not just present. A document is logged as it is stored, before the ledger
    // record closes its event, so a kill between the two rightly stores it again after the
    // restart; but not once the record was written, no process stores a document twice,
    // and no event misses one.
    let lines = app.log_lines();
    let (killed, restarted) = (effects(&lines[..boundary]), effects(&lines[boundary..]));
    let mut counted = 0;
    for (id, docs) in &expected {
        let events = app.events(id).await;
        for doc in docs {
            let version: usize = doc[..6].parse().expect("a versioned document name");
            let event_id = events[version - 1]["eventId"]
                .as_str()
                .expect("an event id");
            let mut total = 0;
            for (process, effects) in [("killed", &killed), ("restarted", &restarted)] {
                // An event may call for more than one document (the invoice: JSON and PDF).
                let writes: Vec<&(String, String)> = effects
                    .written
                    .get(event_id)
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .filter(|(_, name)| name == doc)
                    .collect();
                assert!(
                    writes.len() <= 1,
                    "{id} {doc}: written {} times by the {process} process: {writes:?}",
                    writes.len()
                );
                if let [(order, _)] = writes.as_slice() {
                    assert_eq!(order, id, "event {event_id}");
                    assert!(
                        process == "killed" || !closed.contains(event_id),
                        "{id} {doc}: stored again after the restart although the ledger had \
                         closed event {event_id} before the kill"
                    );
                }
                total += writes.len();
            }
            // None logged: stored just before the kill, its line lost with the process, and
            // a redelivery found the ledger record and wrote nothing.
            assert!(
                total > 0
                    || killed.already_handled.iter().any(|e| e == event_id)
                    || restarted.already_handled.iter().any(|e| e == event_id),
                "{id} {doc}: no write and no redelivery recorded for event {event_id}"
            );
            counted += total;
        }
    }
    let written: usize = [&killed, &restarted]
        .iter()
        .map(|e| e.written.values().map(Vec::len).sum::<usize>())
        .sum();
    assert_eq!(
        written, counted,
        "documents written for events that call for none: {killed:?} {restarted:?}"
    );
}
