//! Helpers of the replay-and-audit suites (embedded in `tests/e2e/audit.rs`, AWS in
//! `tests/e2e/aws.rs`): orders filled over HTTP through varied lifecycles, the pipeline drained,
//! the `orders` command's output read, every document of a set of orders. The fan-out suite
//! drains the pipeline and lists documents with them too.

use std::{
    process::{Command, Output},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{TestApp, moto, orders_bin, wait_until};

/// The lifecycles the orders go through (after placement).
pub const PATHS: [&[&str]; 5] = [
    &["start", "complete"],
    &["cancel"],
    &["revise", "start", "cancel"],
    &["revise"],
    &[],
];

/// How many events [`fill`] appends for `count` orders.
pub fn events_of(count: usize) -> usize {
    (0..count).map(|i| 1 + PATHS[i % PATHS.len()].len()).sum()
}

/// Places `count` orders `<prefix>-00`, ... and drives each through a lifecycle over HTTP.
pub async fn fill(app: &TestApp, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let id = format!("{prefix}-{i:02}");
        app.place(&id, &format!("audit order {i}")).await;
        for step in PATHS[i % PATHS.len()] {
            match *step {
                "revise" => {
                    app.put(
                        &format!("/orders/{id}"),
                        json!({"description": format!("revised order {i}")}),
                    )
                    .await
                    .expect_status(200);
                }
                "cancel" => {
                    app.post(
                        &format!("/orders/{id}/cancel"),
                        json!({"reasonForCancellation": "no longer needed"}),
                    )
                    .await
                    .expect_status(200);
                }
                other => {
                    app.post(&format!("/orders/{id}/{other}"), json!({}))
                        .await
                        .expect_status(200);
                }
            }
        }
        ids.push(id);
    }
    ids
}

/// Until the projector is caught up and every queue is empty with nothing in flight.
pub async fn wait_drained(app: &TestApp, timeout: Duration) {
    wait_until(timeout, "the pipeline to drain", || async {
        let h = app.get("/health").await.expect_status(200).json;
        h["projectorLag"] == 0
            && h["queues"]
                .as_array()
                .is_some_and(|qs| qs.iter().all(|q| q["depth"] == 0 && q["inFlight"] == 0))
    })
    .await;
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's exit status and output, for failure messages.
pub fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The JSON objects of a `--json` run, one per line.
pub fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", explain(o)))
        })
        .collect()
}

/// The names of an order's documents, as `GET /orders/{id}/documents` lists them.
pub async fn document_names(app: &TestApp, order_id: &str) -> Vec<String> {
    let r = app
        .get(&format!("/orders/{order_id}/documents"))
        .await
        .expect_status(200);
    r.json["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {}", r.text))
        .iter()
        .map(|d| d["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// How many documents the orders have, from the listings alone: what a poll needs.
pub async fn document_count(app: &TestApp, ids: &[String]) -> usize {
    let mut count = 0;
    for id in ids {
        count += document_names(app, id).await.len();
    }
    count
}

/// Every document of every order: name and bytes.
pub async fn documents(app: &TestApp, ids: &[String]) -> Vec<(String, String, Vec<u8>)> {
    let mut all = Vec::new();
    for id in ids {
        for name in document_names(app, id).await {
            let body = crate::follow(app.get(&format!("/orders/{id}/documents/{name}")).await)
                .await
                .expect_status(200)
                .body;
            all.push((id.clone(), name, body));
        }
    }
    all
}

/// How often `needle` appears in the service's log.
pub fn count_in_log(app: &TestApp, needle: &str) -> usize {
    std::fs::read_to_string(app.log_path())
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// A fresh prefix for one test's AWS resource names on the shared moto server.
pub fn aws_prefix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("e{}-", &id[20..])
}

/// `orders aws bootstrap` on the moto server with `env`: every resource, under the env's
/// names.
pub fn bootstrap_aws(env: &[(&str, &str)]) {
    let bootstrap = Command::new(orders_bin())
        .args(["aws", "bootstrap", "--endpoint", moto::endpoint()])
        .envs(env.iter().copied())
        .output()
        .expect("orders aws bootstrap runs");
    assert!(bootstrap.status.success(), "{}", explain(&bootstrap));
    let created = stdout(&bootstrap);
    assert!(
        created.contains("orders-events") && created.contains("order-received"),
        "{created}"
    );
}

/// Runs `orders <args> --backend aws --endpoint <moto>` with `env` to completion.
pub async fn orders_on_aws(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(orders_bin());
    command
        .args(args)
        .args(["--backend", "aws", "--endpoint", moto::endpoint()])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("ORDERS_BACKEND")
        .env("RUST_LOG", "warn");
    tokio::task::spawn_blocking(move || command.output().expect("orders runs"))
        .await
        .expect("the command's thread")
}

/// The root an `orders audit digest --out FILE` run printed (its `root <hex>` line).
pub fn printed_root(o: &Output) -> String {
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix("root "))
        .unwrap_or_else(|| panic!("no root line\n{}", explain(o)))
        .to_owned()
}

/// A digest file's JSON, to edit it as a tamperer would.
pub fn read_digest(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the digest file");
    serde_json::from_str(&text).expect("the digest file is JSON")
}
