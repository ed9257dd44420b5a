//! The status fan-out on a running `orders dev`: every event is published, routed to its
//! status's queue and handled once in effect, including poison messages (dead-lettered
//! alone) and a `kill -9` under load.

use std::{collections::BTreeMap, time::Duration};

use e2e::{
    TestApp,
    audit::{document_names, wait_drained},
    orders_bin, spawn_app, wait_for, wait_until,
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
    }
    docs
}

async fn health(app: &TestApp) -> Value {
    app.get("/health").await.expect_status(200).json
}

async fn run_path(app: &TestApp, order_id: &str, path: &[&str]) {
    app.place(order_id, &format!("fan-out {order_id}")).await;
    for step in path {
        let body = if *step == "cancel" {
            json!({"reasonForCancellation": "no longer needed"})
        } else {
            json!({})
        };
        app.post(&format!("/orders/{order_id}/{step}"), body)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_under_load_every_event_is_handled_exactly_once() {
    let mut app = spawn_app();
    let mut expected = BTreeMap::new();
    let paths: [&[&str]; 2] = [&["start", "complete"], &["cancel"]];
    // A first wave, then the crash while a second wave is still being handled.
    for i in 0..40 {
        let id = format!("K-{i:02}");
        let path = paths[i % 2];
        run_path(&app, &id, path).await;
        expected.insert(id, expected_documents(path));
    }
    // No waiting: the projector and handlers are still working through the first wave.
    app.restart_after_crash();
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
}
