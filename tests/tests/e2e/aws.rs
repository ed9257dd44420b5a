//! `orders dev --backend aws` on a moto server: the same process and HTTP API on DynamoDB,
//! DynamoDB Streams, EventBridge, SQS and S3 — place → start → complete and place → cancel,
//! each handler's document landing in S3 and listed by the API; and replay and audit on the
//! same tables, as an outside auditor would run them (`orders audit verify`, `rebuild`,
//! `republish`, `replay` with `--backend aws --endpoint URL`), with stored items changed
//! directly through DynamoDB's API.

use std::time::Duration;

use e2e::{
    TestApp,
    audit::{
        aws_prefix as prefix, bootstrap_aws as bootstrap, count_in_log, document_count,
        document_names, documents, events_of, explain, fill, json_lines, orders_on_aws, stdout,
        wait_drained,
    },
    moto, wait_for, wait_until,
};
use serde_json::{Value, json};

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_runs_on_the_aws_apis() {
    let endpoint = moto::endpoint();
    let env = moto::env(&prefix());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bootstrap(&env);

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
                "000003-invoice.pdf",
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
                let names = document_names(&app, order).await;
                (names.len() >= expected.len()).then_some(names)
            },
        )
        .await;
        assert_eq!(got, expected, "documents of {order}");
    }
    let notice = e2e::follow(
        app.get("/orders/AWS-2/documents/000002-cancellation-notice.json")
            .await,
    )
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

/// The key of one stored event, in DynamoDB's JSON.
fn event_key(order_id: &str, version: u64) -> Value {
    json!({"orderId": {"S": order_id}, "version": {"N": version.to_string()}})
}

/// Sets the `data.description` of one stored event, directly through DynamoDB's API.
async fn set_description(table: &str, order_id: &str, version: u64, value: &str) {
    moto::dynamodb(
        "UpdateItem",
        json!({
            "TableName": table,
            "Key": event_key(order_id, version),
            "UpdateExpression": "SET #data.#description = :v",
            "ConditionExpression": "attribute_exists(orderId)",
            "ExpressionAttributeNames": {"#data": "data", "#description": "description"},
            "ExpressionAttributeValues": {":v": {"S": value}},
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_rebuild_republish_and_replay_run_on_the_aws_tables() {
    let prefix = prefix();
    let env = moto::env(&prefix);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bootstrap(&env_refs);
    let events_table = format!("{prefix}orders-events");
    let read_model_table = format!("{prefix}orders-read-model");
    let mut app_env = env_refs.clone();
    app_env.push(("RUST_LOG", "warn,handlers=debug"));
    let app = TestApp::spawn_with(
        &["--backend", "aws", "--endpoint", moto::endpoint()],
        &app_env,
    );

    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let ids = fill(&app, "AA", 10).await;
    let events = events_of(10);
    // Placed 10, started 4, completed 2 (a JSON and a PDF invoice each), canceled 4.
    wait_until(PIPELINE_TIMEOUT, "every handler's document", || async {
        document_count(&app, &ids).await >= 22
    })
    .await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;

    // Clean.
    let clean = orders_on_aws(&["audit", "verify"], &env).await;
    assert!(clean.status.success(), "{}", explain(&clean));
    assert!(
        stdout(&clean).contains(&format!("10 order(s), {events} event(s), 0 problem(s)")),
        "{}",
        explain(&clean)
    );

    // One byte of one stored event's data changed: AA-02 is placed, revised, started,
    // canceled; its version 2 carries the revised description.
    let (damaged, version) = (ids[2].as_str(), 2);
    let stored = moto::dynamodb(
        "GetItem",
        json!({"TableName": events_table, "Key": event_key(damaged, version), "ConsistentRead": true}),
    )
    .await;
    let original = stored["Item"]["data"]["M"]["description"]["S"]
        .as_str()
        .expect("a stored description")
        .to_owned();
    let changed = format!("X{}", &original[1..]);
    set_description(&events_table, damaged, version, &changed).await;
    let found = orders_on_aws(&["audit", "verify", "--settle", "1"], &env).await;
    assert_eq!(found.status.code(), Some(1), "{}", explain(&found));
    assert!(
        stdout(&found).contains(&format!("order {damaged}, version {version}: hash:")),
        "{}",
        explain(&found)
    );
    let lines =
        json_lines(&orders_on_aws(&["audit", "verify", "--settle", "1", "--json"], &env).await);
    let problems: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("summary").is_none())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p["orderId"] == damaged && p["version"] == version && p["property"] == "hash"),
        "{lines:?}"
    );
    assert!(
        problems.iter().all(|p| p["orderId"] == damaged),
        "{lines:?}"
    );
    // Replay still shows the trail, and says the chain is damaged.
    let replay = orders_on_aws(&["replay", "--order", damaged], &env).await;
    assert!(replay.status.success(), "{}", explain(&replay));
    assert!(
        stdout(&replay).contains("CHAIN DAMAGED"),
        "{}",
        explain(&replay)
    );
    set_description(&events_table, damaged, version, &original).await;
    let restored = orders_on_aws(&["audit", "verify"], &env).await;
    assert!(restored.status.success(), "{}", explain(&restored));

    // The read model loses a row: verify names it, a rebuild restores it.
    moto::dynamodb(
        "DeleteItem",
        json!({"TableName": read_model_table, "Key": {"orderId": {"S": ids[0]}}}),
    )
    .await;
    let missing = orders_on_aws(&["audit", "verify", "--settle", "1"], &env).await;
    assert_eq!(missing.status.code(), Some(1), "{}", explain(&missing));
    assert!(
        stdout(&missing).contains(&format!("order {}, version 3: read-model-missing", ids[0])),
        "{}",
        explain(&missing)
    );
    let rebuilt = orders_on_aws(&["rebuild", "--json"], &env).await;
    assert!(rebuilt.status.success(), "{}", explain(&rebuilt));
    let summary = &json_lines(&rebuilt)[0]["summary"];
    assert_eq!(summary["orders"], 10, "{summary}");
    assert_eq!(summary["events"], events, "{summary}");
    assert_eq!(summary["changed"], 1, "{summary}");
    let swapped_in = summary["swappedIn"].as_str().expect("the new table");
    assert!(
        swapped_in.starts_with(&format!("{read_model_table}-rebuild-")),
        "{summary}"
    );
    // The service reads the new table (the rebuild waited out its pointer cache): every
    // row is the fold of its order's events, which `GET /orders/{id}` computes.
    let listed = app.list_all("").await;
    assert_eq!(listed.len(), 10);
    for order in &listed {
        let id = order["orderId"].as_str().expect("an id");
        assert_eq!(order, &app.order(id).await, "the rebuilt row of {id}");
    }
    let after = orders_on_aws(&["audit", "verify"], &env).await;
    assert!(after.status.success(), "{}", explain(&after));
    // And the projector writes it: a new order shows up in the list.
    app.place("AA-NEW", "after the rebuild").await;
    wait_until(
        PIPELINE_TIMEOUT,
        "the new order in the rebuilt read model",
        || async {
            app.list_all("status=received")
                .await
                .iter()
                .any(|o| o["orderId"] == "AA-NEW")
        },
    )
    .await;
    let mut all_ids = ids.clone();
    all_ids.push("AA-NEW".into());
    wait_until(PIPELINE_TIMEOUT, "the new order's document", || async {
        document_count(&app, &all_ids).await >= 23
    })
    .await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;

    // Republish the window through EventBridge: each event reaches its handler again,
    // which repeats nothing.
    let docs = documents(&app, &all_ids).await;
    assert_eq!(docs.len(), 23);
    let written = count_in_log(&app, "document written");
    // Every event reaches a handler, which either has done its work already or has none
    // for that event (a revision, say).
    let handled =
        |app: &TestApp| count_in_log(app, "already handled") + count_in_log(app, "nothing to do");
    let handled_before = handled(&app);
    let to = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    let out = orders_on_aws(
        &[
            "republish",
            "--from",
            &from.to_rfc3339(),
            "--to",
            &to,
            "--json",
        ],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", explain(&out));
    let summary = &json_lines(&out)[0]["summary"];
    let republished = events + 1; // AA-NEW's placement too
    assert_eq!(summary["published"], republished, "{summary}");
    wait_until(
        PIPELINE_TIMEOUT,
        "the handlers to see every replayed event",
        || async { handled(&app) >= handled_before + republished },
    )
    .await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    assert_eq!(
        documents(&app, &all_ids).await,
        docs,
        "no document added or changed"
    );
    assert_eq!(
        count_in_log(&app, "document written"),
        written,
        "no document written again"
    );

    // Replay reads the event table too.
    let lines = json_lines(&orders_on_aws(&["replay", "--order", damaged, "--json"], &env).await);
    let stored = app.events(damaged).await;
    assert_eq!(lines.len(), stored.len());
    for (line, event) in lines.iter().zip(&stored) {
        assert_eq!(&line["event"], event, "the event as stored");
    }
}

/// With no events at all, a DynamoDB Scan hands out one empty page: the pass over the read
/// model must still run, or a row without events would pass the audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_on_aws_names_a_read_model_row_when_there_are_no_events() {
    let prefix = prefix();
    let env = moto::env(&prefix);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bootstrap(&env_refs);
    let ghost = "GHOST-1";
    moto::dynamodb(
        "PutItem",
        json!({
            "TableName": format!("{prefix}orders-read-model"),
            "Item": {"orderId": {"S": ghost}, "version": {"N": "1"}},
        }),
    )
    .await;
    let found = orders_on_aws(&["audit", "verify", "--settle", "1"], &env).await;
    assert_eq!(found.status.code(), Some(1), "{}", explain(&found));
    let out = stdout(&found);
    assert!(
        out.contains(ghost) && out.contains("read-model-orphan"),
        "{}",
        explain(&found)
    );
}
