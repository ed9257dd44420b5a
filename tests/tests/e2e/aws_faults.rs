//! The command API on the AWS adapters (moto) when DynamoDB refuses an append's condition
//! although no other writer got there (what a lost race looks like from the inside):
//! without `If-Match` the command decides again on a fresh head and succeeds; with it, the
//! client learns that the order changed meanwhile (412). Faults come from the backend
//! tests' interceptor (`backend/tests/it/support/faults.rs`).

use axum::http::Method;
use backend::{
    EventStore,
    aws::{Aws, AwsConfig},
};
use events_schema::{OrderId, route_table};
use serde_json::json;

use crate::aws_requests::{api_process, call, connect, prefix};

#[allow(dead_code)]
#[path = "../../../backend/tests/it/support/faults.rs"]
mod faults;

use faults::{Fault, Faults};

/// A moto deployment whose clients pass every request through the returned `Faults`.
async fn deployment() -> (Aws, Faults) {
    let faults = Faults::default();
    let aws = connect(AwsConfig {
        interceptor: Some(faults.interceptor()),
        ..AwsConfig::prefixed(&prefix())
    })
    .await;
    aws.bootstrap(route_table())
        .await
        .expect("bootstrap on moto");
    (aws, faults)
}

async fn version(aws: &Aws, id: &str) -> u64 {
    let id = OrderId::parse(id).expect("an id");
    aws.events
        .head(&id)
        .await
        .expect("reads")
        .map_or(0, |h| h.order.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_condition_makes_the_command_decide_again_and_succeed() {
    let (aws, faults) = deployment().await;
    let api = api_process(&aws.ports());
    let placed = json!({ "orderId": "ORD-FAULT-1", "description": "raced" });
    let (status, body) = call(&api, Method::POST, "/orders", Some(placed), &[]).await;
    assert_eq!(status, 201, "{body}");
    faults.inject("PutItem", Fault::ConditionFailed, 1);
    let before = faults.attempts("PutItem");

    let (status, body) = call(&api, Method::POST, "/orders/ORD-FAULT-1/start", None, &[]).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["status"], "inprocess");
    assert_eq!(body["order"]["version"], 2);
    assert_eq!(
        faults.attempts("PutItem") - before,
        2,
        "the refused append, then the one decided again"
    );
    assert_eq!(version(&aws, "ORD-FAULT-1").await, 2, "one event appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_if_match_a_refused_append_condition_is_a_412_and_nothing_is_appended() {
    let (aws, faults) = deployment().await;
    let api = api_process(&aws.ports());
    let placed = json!({ "orderId": "ORD-FAULT-2", "description": "raced" });
    let (status, body) = call(&api, Method::POST, "/orders", Some(placed), &[]).await;
    assert_eq!(status, 201, "{body}");
    faults.inject("PutItem", Fault::ConditionFailed, 1);
    let before = faults.attempts("PutItem");

    let (status, body) = call(
        &api,
        Method::POST,
        "/orders/ORD-FAULT-2/start",
        None,
        &[("if-match", "\"1\"")],
    )
    .await;

    assert_eq!(status, 412, "{body}");
    assert_eq!(faults.attempts("PutItem") - before, 1, "not retried");
    assert_eq!(version(&aws, "ORD-FAULT-2").await, 1);
}
