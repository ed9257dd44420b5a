//! Commands from the intake queue on a running `orders dev`, embedded and on AWS APIs
//! (moto): an operator sends them with `orders intake send` as the channels would, and
//! reads the outcome as a client would, over HTTP (`/orders`, `/orders/{id}/events`,
//! `/health`) and with `orders dlq list|redrive --queue order-intake`. A valid place (the
//! Spanish shape) and a start are applied with their channel, a duplicate is counted and
//! deleted, an invalid message is dead-lettered at once with its reason, and a message that
//! fails on its first receive is retried and applied once. And the `orders-intake` Lambda
//! binary itself, fed a mixed SQS batch through a Runtime API emulator.

use std::{path::Path, process::Output, time::Duration};

use backend::{
    Claim, EventStore, IdempotencyStore, IntakeArchive, LedgerKey, Queues,
    aws::{
        AwsConfig,
        config::{ENV_DOCUMENTS_BUCKET, ENV_EVENTS_TABLE, ENV_LEDGER_TABLE, ENV_QUEUE_PREFIX},
    },
};
use e2e::{
    TestApp,
    audit::{aws_prefix, bootstrap_aws, count_in_log, explain, json_lines, orders_on_aws, stdout},
    moto, orders_bin, wait_for, wait_until,
};
use events_schema::{Channel, OrderId, RequestId, route_table};
use serde_json::{Value, json};

use crate::lambda_runtime::{Function, lambda_bin};

const TIMEOUT: Duration = Duration::from_secs(40);
/// A message whose body holds this fails on its first receive (the intake's test hook).
const FLAKY: &str = "flaky-on-first-receive";

/// Where the messages go and what reads the dead letters: the data directory of the
/// running service, or the AWS APIs at moto's endpoint under the test's names.
enum Backend<'a> {
    Embedded(&'a TestApp),
    Aws(&'a [(String, String)]),
}

impl Backend<'_> {
    async fn orders(&self, args: &[&str]) -> Output {
        match self {
            Backend::Embedded(app) => {
                let mut command = std::process::Command::new(orders_bin());
                command
                    .args(args)
                    .arg("--data")
                    .arg(app.data_dir())
                    .env_remove("ORDERS_BACKEND")
                    .env("RUST_LOG", "warn");
                tokio::task::spawn_blocking(move || command.output().expect("orders runs"))
                    .await
                    .expect("the command's thread")
            }
            Backend::Aws(env) => orders_on_aws(args, env).await,
        }
    }

    /// `orders intake send` with `body` in a file; asserts it succeeded.
    async fn send(&self, dir: &Path, args: &[&str], body: &str) {
        let file = dir.join(format!("body-{}.json", uuid::Uuid::now_v7().simple()));
        std::fs::write(&file, body).expect("the body file");
        let file = file.to_string_lossy().into_owned();
        let mut all = vec!["intake", "send"];
        all.extend_from_slice(args);
        all.push(&file);
        let out = self.orders(&all).await;
        assert!(out.status.success(), "{}", explain(&out));
        assert!(
            stdout(&out).contains("sent to order-intake"),
            "{}",
            explain(&out)
        );
    }

    async fn dead_letters(&self) -> Vec<Value> {
        let out = self
            .orders(&["dlq", "list", "--queue", "order-intake"])
            .await;
        assert!(out.status.success(), "{}", explain(&out));
        json_lines(&out)
    }
}

async fn intake_health(app: &TestApp) -> Value {
    app.get("/health").await.expect_status(200).json["intake"].clone()
}

/// The scenario both backends run; returns the accepted place's raw message as archived
/// is checked by the caller (it is stored differently on each).
async fn intake_scenario(app: &TestApp, backend: &Backend<'_>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir = dir.path();
    let spanish = r#"{"orderId": "ATM-1", "descripcion": "Retiro de tarjeta en cajero", "fecha_entrega": "24/12/2026", "estado": "recibida"}"#;
    let place = ["--channel", "atm", "--request-id", "T17-000042"];
    backend.send(dir, &place, spanish).await;
    let ack = wait_for(TIMEOUT, "the ATM order", || async {
        let r = app.get("/orders/ATM-1").await;
        (r.status == 200).then_some(r.json)
    })
    .await;
    assert_eq!(ack["description"], "Retiro de tarjeta en cajero");
    assert_eq!(ack["deliveryDate"], "2026-12-24");
    assert_eq!(ack["status"], "received");
    // The channel sends the same request again (its own retry): counted, not applied.
    backend.send(dir, &place, spanish).await;
    wait_until(TIMEOUT, "the duplicate to be counted", || async {
        intake_health(app).await["duplicates"] == 1
    })
    .await;
    // A body the API would refuse with a 400, a start, and a message that fails once.
    backend
        .send(
            dir,
            &["--channel", "mobile", "--request-id", "M-7"],
            r#"{"estado": "recibida"}"#,
        )
        .await;
    backend
        .send(
            dir,
            &[
                "--channel",
                "atm",
                "--request-id",
                "T17-000043",
                "--order",
                "ATM-1",
                "--action",
                "start",
            ],
            "",
        )
        .await;
    backend
        .send(
            dir,
            &["--channel", "web", "--request-id", "W-1"],
            &json!({"orderId": "WEB-1", "description": FLAKY}).to_string(),
        )
        .await;
    wait_until(TIMEOUT, "the start and the retried place", || async {
        app.get("/orders/ATM-1").await.json["status"] == "inprocess"
            && app.get("/orders/WEB-1").await.status == 200
    })
    .await;
    let counts = wait_for(TIMEOUT, "every outcome counted", || async {
        let h = intake_health(app).await;
        (h["applied"] == 3 && h["invalid"] == 1).then_some(h)
    })
    .await;
    assert_eq!(counts["duplicates"], 1, "{counts}");
    assert!(counts["failed"].as_u64() >= Some(1), "{counts}");
    assert_eq!(counts["queue"], "order-intake");

    // Each command applied once, its events marked with the channel.
    let events = app.events("ATM-1").await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["metadata"]["channel"], "atm", "{e}");
    }
    assert_eq!(events[0]["metadata"]["correlationId"], "T17-000042");
    let web = app.events("WEB-1").await;
    assert_eq!(web.len(), 1);
    assert_eq!(web[0]["metadata"]["channel"], "web");
    // The console's timeline shows where each command came in.
    let page = app.get("/console/orders/ATM-1").await.text;
    assert_eq!(page.matches("<td>atm</td>").count(), 2, "{page}");
    // The duplicate is logged with both message ids: the first is the one that applied.
    let first_message = events[0]["metadata"]["causationId"]
        .as_str()
        .expect("the applying message's id");
    assert_eq!(count_in_log(app, "duplicate intake request"), 1);
    let line = app
        .log_lines()
        .into_iter()
        .find(|l| l.contains("duplicate intake request"))
        .expect("the duplicate's log line");
    assert!(
        line.contains(&format!("first_message_id={first_message}")),
        "{line}"
    );
    assert!(line.contains("message_id="), "{line}");

    // The invalid message waits in the intake DLQ with its reason, not after retries.
    let dead = backend.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["body"]["requestId"], "M-7");
    let reason = dead[0]["lastError"].as_str().unwrap_or_default();
    assert!(
        reason.contains("400") && reason.contains("Missing required field: description"),
        "{reason}"
    );
    // Redriven, it is judged again (still invalid) and lands there once more.
    let out = backend
        .orders(&["dlq", "redrive", "--queue", "order-intake"])
        .await;
    assert!(out.status.success(), "{}", explain(&out));
    wait_until(TIMEOUT, "the redriven message judged again", || async {
        intake_health(app).await["invalid"] == 2
    })
    .await;
    assert_eq!(backend.dead_letters().await.len(), 1);
}

fn flaky_env() -> Vec<(String, String)> {
    vec![
        ("ORDERS_INTAKE_FAIL_MARKER".into(), FLAKY.into()),
        ("ORDERS_VISIBILITY_TIMEOUT".into(), "1".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_messages_are_applied_once_deduplicated_dead_lettered_or_retried_embedded() {
    let env = flaky_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with_env(&env);
    intake_scenario(&app, &Backend::Embedded(&app)).await;
    // The accepted message is archived as received, under intake/ in the document store.
    let conn = rusqlite::Connection::open_with_flags(
        app.data_dir().join("orders.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("orders.db");
    let archived: Vec<u8> = conn
        .query_row(
            "SELECT body FROM documents WHERE order_id = 'intake/atm' AND name = 'T17-000042.json'",
            [],
            |r| r.get(0),
        )
        .expect("the archived message");
    let archived: Value = serde_json::from_slice(&archived).expect("JSON");
    assert_eq!(
        archived["body"]["descripcion"],
        "Retiro de tarjeta en cajero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_messages_are_applied_once_deduplicated_dead_lettered_or_retried_on_aws() {
    let prefix = aws_prefix();
    let mut env = moto::env(&prefix);
    env.extend(flaky_env());
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bootstrap_aws(&borrowed);
    let app = TestApp::spawn_with(
        &["--backend", "aws", "--endpoint", moto::endpoint()],
        &borrowed,
    );
    intake_scenario(&app, &Backend::Aws(&env)).await;
    // The accepted message is archived as received in S3, under intake/ (the bucket is
    // private: the request is signed as moto accepts it).
    let addr = moto::endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("moto's address");
    let archived = e2e::Client { addr }
        .get_with(
            &format!("/{prefix}ordersource-documents/intake/atm/T17-000042.json"),
            &[(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            )],
        )
        .await
        .expect_status(200);
    assert_eq!(
        archived.json["body"]["descripcion"],
        "Retiro de tarjeta en cajero"
    );
    assert_eq!(archived.json["channel"], "atm");
}

/// An SQS event (Lambda's shape) of intake messages `(message id, body)`, each received once.
fn intake_event(queue: &str, messages: &[(&str, &str)]) -> Value {
    let messages: Vec<backend::QueueMessage> = messages
        .iter()
        .map(|(id, body)| backend::QueueMessage {
            message_id: (*id).to_owned(),
            receipt_handle: format!("receipt-{id}"),
            body: (*body).to_owned(),
            receive_count: 1,
            sent_at: chrono::Utc::now(),
            last_error: None,
        })
        .collect();
    crate::lambda_edge::sqs_event(queue, &messages)
}

/// The `orders-intake` binary started as Lambda starts it (Runtime API emulator) on a moto
/// deployment, fed SQS batches: a valid place, a duplicate of it, an invalid message and
/// one whose request another delivery still holds; only that one is a batch item failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_function_fails_only_the_passing_failure_of_a_mixed_sqs_batch() {
    let aws =
        crate::aws_requests::connect(AwsConfig::prefixed(&crate::aws_requests::prefix())).await;
    aws.bootstrap(route_table())
        .await
        .expect("bootstrap on moto");
    let c = &aws.config;
    let mut intake = Function::start(
        &lambda_bin("orders-intake"),
        "OrdersIntake",
        256,
        moto::endpoint(),
        &[
            (ENV_EVENTS_TABLE, c.events_table.clone()),
            (ENV_LEDGER_TABLE, c.ledger_table.clone()),
            (ENV_DOCUMENTS_BUCKET, c.documents_bucket.clone()),
            (ENV_QUEUE_PREFIX, c.queue_prefix.clone()),
        ],
    )
    .await;
    let queue = c.queue_name(&route_table().intake.queue);
    let place = r#"{"channel":"atm","requestId":"T-1","command":"place","body":{"orderId":"LAMBDA-1","descripcion":"Retiro en cajero"}}"#;
    let first = intake
        .invoke(intake_event(&queue, &[("m-0", place)]))
        .await
        .response();
    assert_eq!(
        first,
        json!({ "batchItemFailures": [] }),
        "{}",
        intake.log()
    );

    // Another delivery of W-busy (the same command) holds its claim: an invocation still
    // running elsewhere.
    let busy = r#"{"channel":"web","requestId":"W-busy","command":"place","body":{"description":"waits"}}"#;
    let busy_key = LedgerKey::intake(
        &Channel::parse("web").expect("channel"),
        &RequestId::parse("W-busy").expect("request id"),
    );
    let fingerprint =
        command_api::intake_fingerprint(&serde_json::from_str(busy).expect("a message"));
    let held = aws
        .ledger
        .claim(&busy_key, &fingerprint, chrono::Utc::now())
        .await
        .expect("claim");
    assert_eq!(held, Claim::Acquired);
    let invalid = r#"{"channel":"mobile","requestId":"M-1","command":"start","orderId":"LAMBDA-1","body":{"extra":true}}"#;
    let answer = intake
        .invoke(intake_event(
            &queue,
            &[
                ("m-1", place),
                ("m-2", invalid),
                ("m-3", busy),
                (
                    "m-4",
                    r#"{"channel":"atm","requestId":"T-2","command":"start","orderId":"LAMBDA-1"}"#,
                ),
            ],
        ))
        .await
        .response();
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": "m-3" }] }),
        "{}",
        intake.log()
    );
    let order = OrderId::parse("LAMBDA-1").expect("id");
    let events = aws
        .events
        .events(&order, 0, 10)
        .await
        .expect("events")
        .items;
    assert_eq!(events.len(), 2, "placed once, then started");
    assert!(
        events
            .iter()
            .all(|e| e.metadata.channel.as_deref() == Some("atm"))
    );
    assert_eq!(events[0].metadata.causation_id.as_deref(), Some("m-0"));
    let dead = aws
        .queues
        .dead_letters(&route_table().intake.queue)
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, invalid);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|r| r.starts_with("400 Bad Request")),
        "{dead:?}"
    );
    let archived = aws
        .documents
        .archived(
            &Channel::parse("atm").expect("channel"),
            &RequestId::parse("T-1").expect("request id"),
        )
        .await
        .expect("read");
    assert_eq!(archived.as_deref(), Some(place));
    let log = intake.log();
    assert!(
        log.contains("duplicate intake request") && log.contains("m-0") && log.contains("m-1"),
        "{log}"
    );
    let duplicates = log
        .lines()
        .filter(|l| l.contains("\"Duplicates\"") && l.contains("IntakeRequest"))
        .count();
    assert_eq!(
        duplicates, 1,
        "one EMF Duplicates sample of kind IntakeRequest\n{log}"
    );
}
