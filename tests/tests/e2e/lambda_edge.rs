//! The three Lambda binaries (`orders-api`, `orders-projector`, `orders-handler`) started
//! as Lambda starts them, each behind its own Runtime API emulator (`lambda_runtime.rs`),
//! on a moto deployment, fed real-shaped events: API Gateway HTTP API v2 requests, a
//! DynamoDB stream batch of events really appended, an SQS batch of messages EventBridge
//! really delivered plus one poison message.
//!
//! Build the binaries first: `cargo build -p command-api -p projector -p handlers --bins`
//! (`scripts/test` builds every binary). The ignored `cold_start_and_peak_memory_per_function`
//! prints the figures of `docs/performance.md`.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use backend::{
    Append, DocumentStore, EventPublisher, EventStore, QueueMessage, Queues, ReadModel,
    aws::{
        Aws, AwsConfig,
        config::{
            ENV_DOCUMENTS_BUCKET, ENV_EVENT_BUS, ENV_EVENT_SOURCE, ENV_EVENTS_TABLE,
            ENV_LEDGER_TABLE, ENV_READ_MODEL_TABLE,
        },
    },
};
use chrono::{TimeZone, Utc};
use e2e::{OK_MESSAGE, moto};
use events_schema::{
    Command, Description, EventContext, Metadata, OrderId, PlaceOrder, Recorded, Status, decide,
    record, route_table,
};
use serde_json::{Value, json};

use crate::{
    aws_requests::{connect, prefix},
    lambda_runtime::{ACCOUNT, ColdStart, Function, REGION, lambda_bin},
};

/// Memory sizes the CDK app gives the functions.
const API_MEMORY_MB: u32 = 512;
const PROJECTOR_MEMORY_MB: u32 = 256;
const HANDLER_MEMORY_MB: u32 = 256;

/// A fresh deployment on moto: every resource created, as `orders aws bootstrap` does.
pub(crate) async fn deployment() -> Aws {
    let aws = connect(AwsConfig::prefixed(&prefix())).await;
    aws.bootstrap(route_table())
        .await
        .expect("bootstrap on moto");
    aws
}

async fn api_function(aws: &Aws) -> Function {
    api_function_with(aws, &[]).await
}

/// The API function with `extra` environment variables (a deployment setting).
pub(crate) async fn api_function_with(aws: &Aws, extra: &[(&str, String)]) -> Function {
    let c = &aws.config;
    let mut env = vec![
        (ENV_EVENTS_TABLE, c.events_table.clone()),
        (ENV_READ_MODEL_TABLE, c.read_model_table.clone()),
        (ENV_LEDGER_TABLE, c.ledger_table.clone()),
        (ENV_DOCUMENTS_BUCKET, c.documents_bucket.clone()),
    ];
    env.extend_from_slice(extra);
    Function::start(
        &lambda_bin("orders-api"),
        "OrdersApi",
        API_MEMORY_MB,
        moto::endpoint(),
        &env,
    )
    .await
}

async fn projector_function(aws: &Aws) -> Function {
    let c = &aws.config;
    Function::start(
        &lambda_bin("orders-projector"),
        "OrdersProjector",
        PROJECTOR_MEMORY_MB,
        moto::endpoint(),
        &[
            (ENV_READ_MODEL_TABLE, c.read_model_table.clone()),
            (ENV_LEDGER_TABLE, c.ledger_table.clone()),
            (ENV_EVENT_BUS, c.event_bus.clone()),
            (ENV_EVENT_SOURCE, c.event_source.clone()),
        ],
    )
    .await
}

async fn handler_function(aws: &Aws, handler: &str) -> Function {
    let c = &aws.config;
    Function::start(
        &lambda_bin("orders-handler"),
        &format!("OrdersHandler-{handler}"),
        HANDLER_MEMORY_MB,
        moto::endpoint(),
        &[
            (ENV_LEDGER_TABLE, c.ledger_table.clone()),
            (ENV_DOCUMENTS_BUCKET, c.documents_bucket.clone()),
            ("ORDERS_HANDLER", handler.to_owned()),
        ],
    )
    .await
}

// ---- Real-shaped events.

/// An API Gateway HTTP API (payload format 2.0) request event.
pub(crate) fn http_event(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut all: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    all.insert(
        "host".into(),
        json!("abc123.execute-api.us-east-1.amazonaws.com"),
    );
    all.insert("user-agent".into(), json!("e2e-lambda-edge"));
    if let Some(body) = body {
        all.insert("content-length".into(), json!(body.len().to_string()));
    }
    let now = Utc::now();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": all,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "e2e-lambda-edge",
            },
            "requestId": uuid::Uuid::now_v7().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body,
        "isBase64Encoded": false,
    })
}

/// A DynamoDB attribute value in the JSON of stream events (`{"S": ...}`, `{"M": ...}`).
fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::L(items) => {
            json!({ "L": items.iter().map(attribute_json).collect::<Vec<_>>() })
        }
        AttributeValue::M(map) => json!({ "M": item_json(map) }),
        other => panic!("no stream JSON for {other:?} in an event item"),
    }
}

fn item_json(item: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect(),
    )
}

/// The order's items as the event table holds them, in version order.
async fn event_items(
    aws: &Aws,
    order_id: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    aws.clients
        .dynamodb
        .query()
        .table_name(&aws.config.events_table)
        .key_condition_expression("orderId = :id")
        .expression_attribute_values(":id", AttributeValue::S(order_id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("queries the event table")
        .items
        .unwrap_or_default()
}

/// A DynamoDB stream event (Lambda's shape) of INSERT records with these new images.
fn stream_event(aws: &Aws, images: &[std::collections::HashMap<String, AttributeValue>]) -> Value {
    let arn = format!(
        "arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}/stream/2026-12-01T00:00:00.000",
        aws.config.events_table
    );
    let records: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let keys: std::collections::HashMap<String, AttributeValue> = image
                .iter()
                .filter(|(k, _)| *k == "orderId" || *k == "version")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            json!({
                "eventID": format!("{:032x}", i + 1),
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": Utc::now().timestamp(),
                    "Keys": item_json(&keys),
                    "NewImage": item_json(image),
                    "SequenceNumber": format!("{}", 100_000_000_000_000_000_000u128 + i as u128),
                    "SizeBytes": 512,
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": arn,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// An SQS event (Lambda's shape) of these messages from `queue`.
pub(crate) fn sqs_event(queue: &str, messages: &[QueueMessage]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_at.timestamp_millis().to_string(),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": Utc::now().timestamp_millis().to_string(),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"),
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

// ---- Events really appended, and really delivered.

fn ctx() -> EventContext {
    EventContext {
        occurred_at: Utc::now(),
        metadata: Metadata {
            correlation_id: "lambda-edge".into(),
            ..Metadata::default()
        },
    }
}

fn place() -> Command {
    Command::Place(PlaceOrder {
        description: Description::parse("placed for the Lambda edge").expect("valid"),
        register_date: Utc
            .with_ymd_and_hms(2026, 12, 1, 9, 0, 0)
            .single()
            .expect("a date"),
        delivery_date: None,
        customer_id: None,
    })
}

/// Appends `commands` to a new order `id` on the deployment; the recorded events.
async fn appended(aws: &Aws, id: &str, commands: &[Command]) -> Vec<Recorded> {
    let id = OrderId::parse(id).expect("an order id");
    let mut all: Vec<Recorded> = Vec::new();
    for command in std::iter::once(&place()).chain(commands) {
        let head = all.last().map(|r| (&r.order, &r.envelope.hash));
        let events = decide(&id, head.map(|(o, _)| o), command).expect("accepted");
        let recorded = record(&id, head, events, &ctx(), uuid::Uuid::now_v7).expect("records");
        aws.events
            .append(Append {
                order_id: id.clone(),
                expected_version: all.last().map_or(0, |r| r.order.version),
                events: recorded.clone(),
                idempotency: None,
            })
            .await
            .expect("appends on moto");
        all.extend(recorded);
    }
    all
}

fn queue_of(status: Status) -> String {
    route_table().route(status).expect("a route").queue.clone()
}

/// Receives from `queue` until `want` messages came (or 20 s passed).
async fn receive(aws: &Aws, queue: &str, want: usize) -> Vec<QueueMessage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let batch = aws
            .queues
            .receive(queue, 10, Duration::from_secs(60), Duration::from_secs(1))
            .await
            .expect("receives");
        got.extend(batch);
    }
    got
}

/// The order id of the bus event a queue message carries.
fn order_of(message: &QueueMessage) -> String {
    let event: Value = serde_json::from_str(&message.body).expect("JSON");
    event["detail"]["event"]["orderId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Publishes placed orders as the projector would, and takes the messages EventBridge
/// delivered for them from the received queue (skipping other orders' messages).
async fn delivered_placements(aws: &Aws, ids: &[&str]) -> Vec<QueueMessage> {
    let mut entries = Vec::new();
    for id in ids {
        let recorded = appended(aws, id, &[]).await;
        entries.push(
            projector::bus_entry(&aws.config.event_source, &recorded[0], false).expect("an entry"),
        );
    }
    let failed = aws.publisher.publish(&entries).await.expect("publishes");
    assert!(failed.is_empty(), "{failed:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut got: Vec<QueueMessage> = Vec::new();
    while got.len() < ids.len() && tokio::time::Instant::now() < deadline {
        let more = receive(aws, &queue_of(Status::Received), 1).await;
        got.extend(
            more.into_iter()
                .filter(|m| ids.contains(&order_of(m).as_str())),
        );
    }
    let mut delivered: Vec<String> = got.iter().map(order_of).collect();
    delivered.sort();
    assert_eq!(delivered, ids, "EventBridge delivered each placement once");
    got
}

fn header<'a>(response: &'a Value, name: &str) -> &'a str {
    response["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} header in {response}"))
}

fn body(response: &Value) -> Value {
    let text = response["body"].as_str().expect("a text body");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

// ---- The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_function_answers_http_api_v2_requests_with_status_headers_and_body() {
    let aws = deployment().await;
    let mut api = api_function(&aws).await;
    let json_type = [("content-type", "application/json")];

    let placed = api
        .invoke(http_event(
            "POST",
            "/orders",
            &json_type,
            Some(r#"{"orderId":"ORD-LAMBDA-1","description":"through API Gateway"}"#),
        ))
        .await
        .response();
    assert_eq!(placed["statusCode"], 201, "{placed}");
    assert_eq!(header(&placed, "location"), "/orders/ORD-LAMBDA-1");
    assert_eq!(header(&placed, "etag"), "\"1\"");
    assert!(header(&placed, "content-type").starts_with("application/json"));
    let b = body(&placed);
    assert_eq!(b["message"], OK_MESSAGE);
    assert_eq!(b["order"]["status"], "received");
    let id = OrderId::parse("ORD-LAMBDA-1").expect("an id");
    let head = aws
        .events
        .head(&id)
        .await
        .expect("reads")
        .expect("stored on moto");
    assert_eq!(head.order.version, 1);

    let read = api
        .invoke(http_event("GET", "/orders/ORD-LAMBDA-1", &[], None))
        .await
        .response();
    assert_eq!(read["statusCode"], 200, "{read}");
    assert_eq!(header(&read, "etag"), "\"1\"");
    assert_eq!(body(&read)["description"], "through API Gateway");

    let refused = api
        .invoke(http_event(
            "POST",
            "/orders",
            &json_type,
            Some(r#"{"orderId":"ORD-LAMBDA-BAD"}"#),
        ))
        .await
        .response();
    assert_eq!(refused["statusCode"], 400, "{refused}");
    assert_eq!(header(&refused, "content-type"), "application/problem+json");
    let problem = body(&refused);
    assert_eq!(problem["status"], 400);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("description")),
        "{problem}"
    );
    assert_eq!(problem["error"], problem["detail"]);
    let bad = OrderId::parse("ORD-LAMBDA-BAD").expect("an id");
    assert!(
        aws.events.head(&bad).await.expect("reads").is_none(),
        "nothing stored"
    );

    let wrong_type = api
        .invoke(http_event(
            "POST",
            "/orders",
            &[("content-type", "text/plain")],
            Some(r#"{"description":"x"}"#),
        ))
        .await
        .response();
    assert_eq!(wrong_type["statusCode"], 415, "{wrong_type}");
    assert_eq!(
        header(&wrong_type, "content-type"),
        "application/problem+json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_function_projects_a_stream_batch_and_publishes_each_event() {
    let aws = deployment().await;
    appended(&aws, "ORD-STREAM-1", &[Command::Start]).await;
    appended(&aws, "ORD-STREAM-2", &[]).await;
    let mut images = event_items(&aws, "ORD-STREAM-1").await;
    images.extend(event_items(&aws, "ORD-STREAM-2").await);
    assert_eq!(images.len(), 3);
    let mut projector = projector_function(&aws).await;

    let answer = projector
        .invoke(stream_event(&aws, &images))
        .await
        .response();

    assert_eq!(answer, json!({ "batchItemFailures": [] }));
    let one = OrderId::parse("ORD-STREAM-1").expect("an id");
    let row = aws
        .read_model
        .get(&one)
        .await
        .expect("reads")
        .expect("projected");
    assert_eq!((row.version, row.status), (2, Status::Inprocess));
    let two = OrderId::parse("ORD-STREAM-2").expect("an id");
    let row = aws
        .read_model
        .get(&two)
        .await
        .expect("reads")
        .expect("projected");
    assert_eq!((row.version, row.status), (1, Status::Received));
    let received = receive(&aws, &queue_of(Status::Received), 2).await;
    let started = receive(&aws, &queue_of(Status::Inprocess), 1).await;
    let types = |messages: &[QueueMessage]| {
        let mut t: Vec<(String, String)> = messages
            .iter()
            .map(|m| {
                let e: Value = serde_json::from_str(&m.body).expect("JSON");
                (
                    e["detail"]["event"]["orderId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    e["detail-type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        types(&received),
        [
            ("ORD-STREAM-1".to_owned(), "OrderPlaced".to_owned()),
            ("ORD-STREAM-2".to_owned(), "OrderPlaced".to_owned()),
        ]
    );
    assert_eq!(
        types(&started),
        [("ORD-STREAM-1".to_owned(), "OrderStarted".to_owned())]
    );

    // A record that is not an event: it (and what follows) is the batch's failure.
    let mut unreadable = images[0].clone();
    unreadable.remove("order");
    let event = stream_event(&aws, &[images[2].clone(), unreadable]);
    let second_sequence = event["Records"][1]["dynamodb"]["SequenceNumber"].clone();
    let answer = projector.invoke(event).await.response();
    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": second_sequence }] })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_function_reports_exactly_the_poison_message_of_an_sqs_batch() {
    let aws = deployment().await;
    let mut messages = delivered_placements(&aws, &["ORD-SQS-1", "ORD-SQS-2"]).await;
    let poison = QueueMessage {
        message_id: uuid::Uuid::now_v7().to_string(),
        receipt_handle: "poison-receipt".into(),
        body: r#"{"version":"0","detail":{"not":"an order event"}"#.into(),
        receive_count: 1,
        sent_at: Utc::now(),
        last_error: None,
    };
    messages.insert(1, poison.clone());
    let queue = aws.config.queue_name(&queue_of(Status::Received));
    let mut handler = handler_function(&aws, "received").await;

    let answer = handler
        .invoke(sqs_event(&queue, &messages))
        .await
        .response();

    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": poison.message_id }] })
    );
    for id in ["ORD-SQS-1", "ORD-SQS-2"] {
        let id = OrderId::parse(id).expect("an id");
        let documents = aws.documents.list(&id).await.expect("lists");
        assert_eq!(
            documents.len(),
            1,
            "the acknowledgement of {id}: {documents:?}"
        );
    }
}

/// The median of `runs` by `key`.
fn median(runs: &mut [ColdStart], key: impl Fn(&ColdStart) -> u128) -> u128 {
    runs.sort_by_key(|r| key(r));
    key(&runs[runs.len() / 2])
}

/// Cold start of each function, `RUNS` fresh processes each: spawn → first
/// `invocation/next`, spawn → first response (a representative first event), and peak
/// RSS. Run it on the binaries to measure, e.g. the size profile's:
///
/// ```sh
/// cargo build --profile lambda -p command-api -p projector -p handlers --bins
/// LAMBDA_BIN_DIR=target/lambda cargo test -p e2e --test e2e cold_start -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures for docs/performance.md; run on demand"]
async fn cold_start_and_peak_memory_per_function() {
    const RUNS: usize = 7;
    let aws = deployment().await;
    let mut table = Vec::new();

    let mut runs = Vec::new();
    for i in 0..RUNS {
        let mut api = api_function(&aws).await;
        let body = format!(r#"{{"orderId":"ORD-COLD-{i}","description":"cold"}}"#);
        let event = http_event(
            "POST",
            "/orders",
            &[("content-type", "application/json")],
            Some(&body),
        );
        let answer = api.invoke(event).await.response();
        assert_eq!(answer["statusCode"], 201, "{answer}");
        runs.push(api.cold_start());
    }
    table.push(("orders-api", "POST /orders (HTTP API v2)", runs));

    let mut runs = Vec::new();
    for i in 0..RUNS {
        let id = format!("ORD-COLD-STREAM-{i}");
        appended(&aws, &id, &[]).await;
        let event = stream_event(&aws, &event_items(&aws, &id).await);
        let mut projector = projector_function(&aws).await;
        let answer = projector.invoke(event).await.response();
        assert_eq!(answer, json!({ "batchItemFailures": [] }));
        runs.push(projector.cold_start());
    }
    table.push(("orders-projector", "stream batch of 1 INSERT", runs));

    let queue = aws.config.queue_name(&queue_of(Status::Received));
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let id = format!("ORD-COLD-SQS-{i}");
        let messages = delivered_placements(&aws, &[&id]).await;
        let event = sqs_event(&queue, &messages);
        let mut handler = handler_function(&aws, "received").await;
        let answer = handler.invoke(event).await.response();
        assert_eq!(answer, json!({ "batchItemFailures": [] }));
        runs.push(handler.cold_start());
    }
    table.push(("orders-handler", "SQS batch of 1 (acknowledgement)", runs));

    println!(
        "binaries: {}",
        lambda_bin("orders-api")
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("| function | first event | init (spawn → first next) | first response | peak RSS |");
    println!("|---|---|---|---|---|");
    for (name, event, mut runs) in table {
        let init = median(&mut runs, |r| r.init.as_micros());
        let first = median(&mut runs, |r| r.first_response.as_micros());
        let rss = median(&mut runs, |r| u128::from(r.peak_rss_kib));
        println!(
            "| {name} | {event} | {:.1} ms | {:.1} ms | {:.1} MB |",
            init as f64 / 1000.0,
            first as f64 / 1000.0,
            rss as f64 / 1024.0,
        );
    }
    println!("(medians of {RUNS} cold starts each, moto on the same machine)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_function_records_its_invocations_trace_and_writes_emf_metrics() {
    let aws = deployment().await;
    let mut api = api_function(&aws).await;
    let placed = api
        .invoke(http_event(
            "POST",
            "/orders",
            &[("content-type", "application/json")],
            Some(r#"{"orderId":"ORD-LAMBDA-TRACE","description":"traced"}"#),
        ))
        .await
        .response();
    assert_eq!(placed["statusCode"], 201, "{placed}");
    // The runtime API's Lambda-Runtime-Trace-Id of the invocation, in the event's metadata.
    let id = OrderId::parse("ORD-LAMBDA-TRACE").expect("an id");
    let page = aws.events.events(&id, 0, 10).await.expect("reads");
    let trace = page.items[0]
        .metadata
        .trace_header
        .clone()
        .expect("the invocation's trace header");
    assert!(
        trace.starts_with("Root=1-") && trace.contains(";Parent="),
        "{trace}"
    );
    // One EMF document on stdout for the command.
    let log = api.log();
    let counted = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ordersource")
        .filter(|d| d["Command"] == "PlaceOrder" && d["Outcome"] == "Accepted")
        .count();
    assert_eq!(counted, 1, "{log}");
}
