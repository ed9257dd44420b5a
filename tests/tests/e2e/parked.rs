//! Failures are parked, never skipped: a change feed record that keeps failing the
//! projector is parked with its error (durably), the feed moves on, `/health` and
//! `/metrics` count it, and `orders parked replay` projects it once the fault is gone.

use std::{process::Output, time::Duration};

use e2e::{
    TestApp,
    audit::{aws_prefix, bootstrap_aws, document_names, explain, json_lines, orders_on_aws},
    moto, orders_bin, wait_until,
};
use serde_json::Value;

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(30);
const AWS_TIMEOUT: Duration = Duration::from_secs(60);

fn parked(app: &TestApp, args: &[&str]) -> Output {
    std::process::Command::new(orders_bin())
        .arg("parked")
        .args(args)
        .arg("--data")
        .arg(app.data_dir())
        .env_remove("ORDERS_PROJECTOR_FAIL_MARKER")
        .output()
        .expect("orders parked runs")
}

async fn health(app: &TestApp) -> Value {
    app.get("/health").await.expect_status(200).json
}

async fn listed_ids(app: &TestApp) -> Vec<String> {
    app.list_all("status=received")
        .await
        .iter()
        .filter_map(|o| o["orderId"].as_str().map(str::to_owned))
        .collect()
}

/// A service whose projector fails every record of an order described with "POISON",
/// giving up after 3 tries.
fn poisoned_app() -> TestApp {
    TestApp::spawn_with_env(&[
        ("ORDERS_PROJECTOR_FAIL_MARKER", "POISON"),
        ("ORDERS_PROJECTOR_MAX_ATTEMPTS", "3"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_parked_the_feed_moves_on_and_a_replay_projects_it() {
    let mut app = poisoned_app();
    app.place("P-1", "a POISON order").await;
    for i in 0..3 {
        app.place(&format!("G-{i}"), "a good order").await;
    }
    wait_until(PIPELINE_TIMEOUT, "one parked record, lag 0", || async {
        let h = health(&app).await;
        h["parkedRecords"] == 1 && h["projectorLag"] == 0
    })
    .await;

    // The records after it were projected, published and handled.
    assert_eq!(listed_ids(&app).await, ["G-0", "G-1", "G-2"]);
    for i in 0..3 {
        let id = format!("G-{i}");
        wait_until(
            PIPELINE_TIMEOUT,
            &format!("{id}'s acknowledgement"),
            || async { document_names(&app, &id).await == ["000001-acknowledgement.json"] },
        )
        .await;
    }
    assert!(document_names(&app, "P-1").await.is_empty());
    let metrics = app.get("/metrics").await.expect_status(200).text;
    assert!(
        metrics.lines().any(|l| l == "orders_parked_records 1"),
        "{metrics}"
    );

    // Parked durably: still there after a restart, not projected meanwhile.
    app.restart_graceful().await;
    app.wait_projected().await;
    assert_eq!(health(&app).await["parkedRecords"], 1);

    let list = parked(&app, &["list"]);
    assert!(list.status.success(), "{}", explain(&list));
    let lines = json_lines(&list);
    assert_eq!(lines.len(), 1, "{}", explain(&list));
    let event = &app.events("P-1").await[0];
    let record = &lines[0];
    assert_eq!(record["orderId"], "P-1");
    assert_eq!(record["version"], 1);
    assert_eq!(record["eventId"], event["eventId"]);
    assert_eq!(record["attempts"], 3);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("injected failure for order P-1")),
        "{record}"
    );
    assert!(record["parkedAt"].is_string(), "{record}");

    // Replayed beside the running service, without the fault.
    let id = record["id"].as_str().expect("an id");
    let replay = parked(&app, &["replay", id]);
    assert!(replay.status.success(), "{}", explain(&replay));
    wait_until(PIPELINE_TIMEOUT, "P-1's acknowledgement", || async {
        document_names(&app, "P-1").await == ["000001-acknowledgement.json"]
    })
    .await;
    assert_eq!(listed_ids(&app).await, ["P-1", "G-0", "G-1", "G-2"]);
    assert_eq!(health(&app).await["parkedRecords"], 0);
    let list = parked(&app, &["list"]);
    assert!(
        list.status.success() && json_lines(&list).is_empty(),
        "{}",
        explain(&list)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_an_unknown_or_unnamed_parked_record_fails_with_one_clear_line() {
    let app = TestApp::spawn();
    let unknown = parked(&app, &["replay", "42"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", explain(&unknown));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no parked record \"42\""),
        "{}",
        explain(&unknown)
    );
    let unnamed = parked(&app, &["replay"]);
    assert!(!unnamed.status.success(), "{}", explain(&unnamed));
    assert!(
        String::from_utf8_lossy(&unnamed.stderr).contains("<ID|--all>"),
        "{}",
        explain(&unnamed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_parked_record_goes_to_the_on_failure_queue_and_replays_from_the_stream() {
    let env = moto::env(&aws_prefix());
    let names: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bootstrap_aws(&names);
    let mut service = names.clone();
    service.extend([
        ("ORDERS_PROJECTOR_FAIL_MARKER", "POISON"),
        ("ORDERS_PROJECTOR_MAX_ATTEMPTS", "3"),
    ]);
    let app = TestApp::spawn_with(
        &["--backend", "aws", "--endpoint", moto::endpoint()],
        &service,
    );
    app.place("AP-1", "a POISON order").await;
    app.place("AG-1", "a good order").await;
    wait_until(AWS_TIMEOUT, "one parked record", || async {
        health(&app).await["parkedRecords"] == 1
    })
    .await;
    wait_until(AWS_TIMEOUT, "AG-1's acknowledgement", || async {
        document_names(&app, "AG-1").await == ["000001-acknowledgement.json"]
    })
    .await;
    assert!(document_names(&app, "AP-1").await.is_empty());

    // Lambda's on-failure record names the shard and the sequence numbers; the local
    // poller's adds the order, the version and the error.
    let list = orders_on_aws(&["parked", "list"], &env).await;
    assert!(list.status.success(), "{}", explain(&list));
    let lines = json_lines(&list);
    assert_eq!(lines.len(), 1, "{}", explain(&list));
    let record = &lines[0];
    assert_eq!(record["orderId"], "AP-1");
    assert_eq!(record["version"], 1);
    assert_eq!(record["attempts"], 3);
    assert!(
        record["position"]
            .as_str()
            .is_some_and(|p| p.starts_with("shardId-")),
        "{record}"
    );
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("injected failure for order AP-1")),
        "{record}"
    );
    // Listing leaves the message in the queue.
    assert_eq!(health(&app).await["parkedRecords"], 1);

    let replay = orders_on_aws(&["parked", "replay", "--all"], &env).await;
    assert!(replay.status.success(), "{}", explain(&replay));
    wait_until(AWS_TIMEOUT, "AP-1's acknowledgement", || async {
        document_names(&app, "AP-1").await == ["000001-acknowledgement.json"]
    })
    .await;
    wait_until(AWS_TIMEOUT, "AP-1 in the read model", || async {
        listed_ids(&app).await.contains(&"AP-1".to_owned())
    })
    .await;
    wait_until(AWS_TIMEOUT, "no parked record", || async {
        health(&app).await["parkedRecords"] == 0
    })
    .await;
}
