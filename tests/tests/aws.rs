//! `orders dev --backend aws` on a moto server: the same process and HTTP API on DynamoDB,
//! DynamoDB Streams, EventBridge, SQS and S3 — place → start → complete and place → cancel,
//! each handler's document landing in S3 and listed by the API.

use std::time::Duration;

use e2e::{TestApp, moto, orders_bin, wait_for};
use serde_json::json;

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(60);

fn prefix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("e{}-", &id[20..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_runs_on_the_aws_apis() {
    let endpoint = moto::endpoint();
    let env = moto::env(&prefix());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let bootstrap = std::process::Command::new(orders_bin())
        .args(["aws", "bootstrap", "--endpoint", endpoint])
        .envs(env.iter().copied())
        .output()
        .expect("orders aws bootstrap runs");
    assert!(
        bootstrap.status.success(),
        "{}",
        String::from_utf8_lossy(&bootstrap.stderr)
    );
    let created = String::from_utf8_lossy(&bootstrap.stdout);
    assert!(
        created.contains("orders-events") && created.contains("order-received"),
        "{created}"
    );

    let app = TestApp::spawn_with(&["--backend", "aws", "--endpoint", endpoint], &env);
    app.post(
        "/orders",
        json!({"orderId": "AWS-1", "description": "on AWS APIs"}),
    )
    .await
    .expect_status(201);
    app.post("/orders/AWS-1/start", json!({}))
        .await
        .expect_status(200);
    app.post("/orders/AWS-1/complete", json!({}))
        .await
        .expect_status(200);
    app.post(
        "/orders",
        json!({"orderId": "AWS-2", "description": "to cancel"}),
    )
    .await
    .expect_status(201);
    app.post(
        "/orders/AWS-2/cancel",
        json!({"reasonForCancellation": "changed plans"}),
    )
    .await
    .expect_status(200);
    // Illegal transitions and stale preconditions behave as on the embedded backend.
    app.post("/orders/AWS-2/start", json!({}))
        .await
        .expect_status(409);
    app.put_with(
        "/orders/AWS-1",
        json!({"description": "late"}),
        &[("if-match", "\"1\"")],
    )
    .await
    .expect_status(412);
    let events = app.events("AWS-1").await;
    assert_eq!(events.len(), 3);

    for (order, expected) in [
        (
            "AWS-1",
            vec![
                "000001-acknowledgement.json",
                "000002-work-started.json",
                "000003-invoice.json",
            ],
        ),
        (
            "AWS-2",
            vec![
                "000001-acknowledgement.json",
                "000002-cancellation-notice.json",
            ],
        ),
    ] {
        let got = wait_for(
            PIPELINE_TIMEOUT,
            &format!("documents of {order} in S3"),
            || async {
                let r = app
                    .get(&format!("/orders/{order}/documents"))
                    .await
                    .expect_status(200);
                let names: Vec<String> = r.json["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|d| d["name"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (names.len() >= expected.len()).then_some(names)
            },
        )
        .await;
        assert_eq!(got, expected, "documents of {order}");
    }
    let notice = app
        .get("/orders/AWS-2/documents/000002-cancellation-notice.json")
        .await
        .expect_status(200);
    assert_eq!(notice.json["reason"], "changed plans");
    // The read model (DynamoDB, GSI by status) catches up too.
    let listed = wait_for(PIPELINE_TIMEOUT, "the read model", || async {
        let r = app.get("/orders?status=completed").await.expect_status(200);
        let ids: Vec<String> = r.json["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|o| o["orderId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    assert_eq!(listed, vec!["AWS-1"]);
}
