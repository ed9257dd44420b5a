//! What one order costs in AWS requests, counted through the real code on a moto server:
//!
//! - commands through the command API's axum router (`command_api::router`, as `orders-api`
//!   and `orders dev` serve it), driven in process;
//! - the projector's core (`projector::Projector::project`) over batches read from the AWS
//!   change feed (DynamoDB Streams), each followed by the feed's checkpoint;
//! - each status handler's core (`handlers::Handler::handle`) over deliveries received from
//!   its SQS queue, then deleted, as the local queue poller does.
//!
//! Every request the AWS adapters send goes through the SDK interceptor they install
//! ([`backend::aws::RequestCounter`]). Each step's requests are asserted exactly, by
//! operation, and the whole table is printed (run with `--nocapture`): the request table
//! in `docs/aws.md` is this table.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use axum::body::Body;
use backend::{
    Change, Ports,
    aws::{Aws, AwsConfig, RequestCounter},
};
use e2e::moto;
use events_schema::{Recorded, Status, route_table};
use handlers::{Delivery, Handler};
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Requests of one step, keyed `Service.Operation`.
type Counts = BTreeMap<String, u64>;

/// How often the change feed lists the stream's shards again (`SHARD_REFRESH` in
/// `backend/src/aws/change_feed.rs`): one `DescribeStream` per 30 s per process.
const SHARD_REFRESH: Duration = Duration::from_secs(30);
const DESCRIBE_STREAM: &str = "DynamoDB Streams.DescribeStream";

/// The steps measured so far, and any step whose requests differ from the expected ones.
/// Mismatches are collected, not asserted on the spot, so that the whole table is printed
/// before the test fails.
struct Meter {
    counters: Vec<RequestCounter>,
    rows: Vec<(String, Counts)>,
    mismatches: Vec<String>,
    /// No later than the feed's last shard listing.
    listed_at: Instant,
    /// When the current step began (the last take).
    since: Instant,
}

impl Meter {
    fn new(counters: Vec<RequestCounter>) -> Self {
        Self {
            counters,
            rows: Vec::new(),
            mismatches: Vec::new(),
            listed_at: Instant::now(),
            since: Instant::now(),
        }
    }

    /// Forgets what was counted so far (set-up that is not a step of the table).
    fn reset(&mut self) {
        self.take();
    }

    fn take(&mut self) -> Counts {
        self.since = Instant::now();
        let mut all = Counts::new();
        for counter in &self.counters {
            for (op, n) in counter.take() {
                *all.entry(op).or_default() += n;
            }
        }
        all
    }

    /// Records the requests counted since the last step under `step`, and checks them
    /// against `expected`. The feed's periodic shard listing is not part of any step: it is
    /// set aside, but only once it is due.
    fn step(&mut self, step: impl Into<String>, expected: &[(&str, u64)]) {
        let step = step.into();
        let began = self.since;
        let mut counts = self.take();
        let expected: Counts = expected
            .iter()
            .map(|(op, n)| (op.to_string(), *n))
            .collect();
        if counts.contains_key(DESCRIBE_STREAM) {
            if !expected.contains_key(DESCRIBE_STREAM) && self.listed_at.elapsed() >= SHARD_REFRESH
            {
                counts.remove(DESCRIBE_STREAM);
            }
            self.listed_at = began;
        }
        if counts != expected {
            self.mismatches.push(format!(
                "{step}: measured {}, expected {}",
                show(&counts),
                show(&expected)
            ));
        }
        self.rows.push((step, counts));
    }

    fn table(&self) -> String {
        let mut out = String::from(
            "AWS requests per step (real command API, projector and handlers on moto):\n",
        );
        for (step, counts) in &self.rows {
            let total: u64 = counts.values().sum();
            let _ = writeln!(out, "  {step:<72} {total:>2}  {}", show(counts));
        }
        out
    }
}

fn show(counts: &Counts) -> String {
    if counts.is_empty() {
        return "-".into();
    }
    counts
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The AWS adapters on moto under `config`: dummy credentials, moto's endpoint.
pub(crate) async fn connect(config: AwsConfig) -> Aws {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(moto::endpoint())
        .load()
        .await;
    Aws::with_sdk_config(config, &sdk)
}

pub(crate) fn prefix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("r{}-", &id[20..])
}

/// The command API as one process serves it: a fresh `App` has its own cache of the heads
/// it wrote last, so a new one stands for another process (another Lambda instance).
pub(crate) fn api_process(ports: &Ports) -> axum::Router {
    command_api::router(command_api::App::new(ports, route_table()))
}

/// One HTTP request to the router, in process; the status and the JSON body.
pub(crate) async fn call(
    api: &axum::Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = Request::builder().method(method.clone()).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = api
        .clone()
        .oneshot(request.body(body).expect("a request"))
        .await
        .expect("the router answers");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, json)
}

/// A write that must succeed with `status`; the order it answers with.
async fn write(
    api: &axum::Router,
    method: Method,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
    status: u16,
) -> Value {
    let (got, json) = call(api, method.clone(), path, Some(body), headers).await;
    assert_eq!(got, status, "{method} {path}: {json}");
    json["order"].clone()
}

/// The projector as `orders dev --backend aws` runs it, one step at a time: a batch from the
/// change feed, the projector's core over its events, the checkpoint. (The stream Lambda
/// runs the same core; its batches come from the event source mapping.)
struct ProjectorTurn<'a> {
    ports: &'a Ports,
    source: &'a str,
}

impl ProjectorTurn<'_> {
    async fn next_batch(&self) -> Vec<Change> {
        self.ports
            .feed
            .next_batch(100, Duration::from_secs(5))
            .await
            .expect("a batch from the change feed")
    }

    async fn project(&self, read_model: &dyn backend::ReadModel, batch: &[Change]) {
        let recorded: Vec<Recorded> = batch.iter().map(|c| c.recorded.clone()).collect();
        projector::Projector {
            read_model,
            publisher: &*self.ports.publisher,
            source: self.source,
        }
        .project(&recorded)
        .await
        .expect("the batch is projected");
    }

    async fn checkpoint(&self, batch: &[Change]) {
        let last = &batch.last().expect("a non-empty batch").at;
        self.ports.feed.checkpoint(last).await.expect("checkpoint");
    }
}

/// A status handler as the queue poller (and the SQS event source mapping) drives it.
struct HandlerTurn {
    ports: Ports,
    queue: String,
    batch_size: usize,
    visibility: Duration,
    handler: Handler,
}

impl HandlerTurn {
    fn new(ports: &Ports, status: Status) -> Self {
        let route = route_table().route(status).expect("a route per status");
        Self {
            ports: ports.clone(),
            queue: route.queue.clone(),
            batch_size: route.batch_size as usize,
            visibility: Duration::from_secs(u64::from(route.visibility_timeout_seconds)),
            handler: handlers::handler(
                &route.handler,
                ports.idempotency.clone(),
                ports.documents.clone(),
                ports.events.clone(),
                None,
            )
            .expect("a handler per route"),
        }
    }

    /// Receives a batch; the deliveries and their receipt handles.
    async fn receive(&self) -> (Vec<Delivery>, Vec<String>) {
        self.ports
            .queues
            .receive(
                &self.queue,
                self.batch_size,
                self.visibility,
                Duration::from_secs(2),
            )
            .await
            .expect("receive")
            .into_iter()
            .map(Delivery::received)
            .unzip()
    }

    async fn handle(&self, deliveries: Vec<Delivery>) {
        let failed = self.handler.handle(deliveries).await;
        assert!(
            failed.is_empty(),
            "{}: failed deliveries {failed:?}",
            self.queue
        );
    }

    async fn delete(&self, receipts: &[String]) {
        self.ports
            .queues
            .delete(&self.queue, receipts)
            .await
            .expect("delete");
    }
}

const PUT_ITEM: &str = "DynamoDB.PutItem";
const GET_ITEM: &str = "DynamoDB.GetItem";
const QUERY: &str = "DynamoDB.Query";
const TRANSACT: &str = "DynamoDB.TransactWriteItems";
const DESCRIBE_TABLE: &str = "DynamoDB.DescribeTable";
const GET_SHARD_ITERATOR: &str = "DynamoDB Streams.GetShardIterator";
const GET_RECORDS: &str = "DynamoDB Streams.GetRecords";
const PUT_EVENTS: &str = "EventBridge.PutEvents";
const GET_QUEUE_URL: &str = "SQS.GetQueueUrl";
const RECEIVE: &str = "SQS.ReceiveMessage";
const DELETE_BATCH: &str = "SQS.DeleteMessageBatch";
const PUT_OBJECT: &str = "S3.PutObject";

/// A handled event that calls for a document: the ledger's claim and completion, the
/// document in S3.
const HANDLED: &[(&str, u64)] = &[(PUT_ITEM, 2), (PUT_OBJECT, 1)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_of_an_order_costs_the_aws_requests_in_the_docs_table() {
    let deployment = AwsConfig::prefixed(&prefix());
    let aws = connect(AwsConfig {
        // Pinned so that no step depends on timing; what the pointer costs when it is not
        // cached (the default cache period: 5 s) is measured below with a second process.
        read_model_cache: Duration::from_secs(3600),
        ..deployment.clone()
    })
    .await;
    aws.bootstrap(route_table())
        .await
        .expect("bootstrap on moto");
    // Another process of the same deployment with the default cache period, which has not
    // read the live-table pointer yet: what every process pays again each 5 s.
    let other = connect(deployment).await;
    let ports = aws.ports();
    let source = aws.config.event_source.clone();
    let mut m = Meter::new(vec![aws.requests.clone(), other.requests.clone()]);
    let turn = ProjectorTurn {
        ports: &ports,
        source: &source,
    };
    let handler_for = |status| HandlerTurn::new(&ports, status);
    let received = handler_for(Status::Received);
    let inprocess = handler_for(Status::Inprocess);
    let completed = handler_for(Status::Completed);
    let canceled = handler_for(Status::Canceled);
    m.reset();

    // ---- Start-up, once per process: the first batch of the feed, the first handler turn.
    let api = api_process(&ports);
    let (status, _) = call(
        &api,
        Method::POST,
        "/orders",
        Some(json!({"description": "warm-up"})),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    m.reset();
    let batch = turn.next_batch().await;
    assert_eq!(batch.len(), 1);
    m.step(
        "feed start-up: stream ARN, shards, checkpoint, iterator, first batch",
        &[
            (DESCRIBE_TABLE, 1),
            (DESCRIBE_STREAM, 1),
            (GET_ITEM, 1),
            (GET_SHARD_ITERATOR, 1),
            (GET_RECORDS, 1),
        ],
    );
    turn.project(&*ports.read_model, &batch).await;
    m.step(
        "projector start-up (live-table pointer) + batch of 1",
        &[(GET_ITEM, 1), (PUT_ITEM, 1), (PUT_EVENTS, 1)],
    );
    turn.checkpoint(&batch).await;
    m.step("feed checkpoint", &[(PUT_ITEM, 1)]);
    let (deliveries, receipts) = received.receive().await;
    assert_eq!(deliveries.len(), 1);
    m.step(
        "handler start-up: queue URL (once per queue and process) + receive",
        &[(GET_QUEUE_URL, 1), (RECEIVE, 1)],
    );
    received.handle(deliveries).await;
    received.delete(&receipts).await;
    // The other queues' URLs, once per process.
    for h in [&inprocess, &completed, &canceled] {
        let none = ports
            .queues
            .receive(&h.queue, 1, Duration::ZERO, Duration::ZERO)
            .await
            .expect("receive");
        assert!(none.is_empty());
    }
    m.reset();

    // ---- Commands. Order A, in one API process: it keeps the head it wrote last.
    let a = write(
        &api,
        Method::POST,
        "/orders",
        json!({"description": "order A"}),
        &[],
        201,
    )
    .await;
    let a = a["orderId"].as_str().expect("an orderId").to_owned();
    m.step("command: place, server-made id (no read)", &[(PUT_ITEM, 1)]);
    write(
        &api,
        Method::POST,
        &format!("/orders/{a}/start"),
        json!({}),
        &[],
        200,
    )
    .await;
    m.step(
        "command: start, head cached by this process's last write",
        &[(PUT_ITEM, 1)],
    );
    write(
        &api,
        Method::POST,
        &format!("/orders/{a}/complete"),
        json!({}),
        &[],
        200,
    )
    .await;
    m.step(
        "command: complete, head cached by this process's last write",
        &[(PUT_ITEM, 1)],
    );

    // Order B, each command from another API process (a cold one): the head is read first.
    let b = format!("order-b-{}", uuid::Uuid::now_v7().simple());
    write(
        &api_process(&ports),
        Method::POST,
        "/orders",
        json!({"orderId": b, "description": "order B"}),
        &[],
        201,
    )
    .await;
    m.step(
        "command: place, client-chosen orderId (head read)",
        &[(QUERY, 1), (PUT_ITEM, 1)],
    );
    write(
        &api_process(&ports),
        Method::POST,
        &format!("/orders/{b}/start"),
        json!({}),
        &[],
        200,
    )
    .await;
    m.step(
        "command: start, head not cached (another process)",
        &[(QUERY, 1), (PUT_ITEM, 1)],
    );
    write(
        &api_process(&ports),
        Method::PUT,
        &format!("/orders/{b}"),
        json!({"description": "order B, revised"}),
        &[],
        200,
    )
    .await;
    m.step(
        "command: PUT revision, head not cached (another process)",
        &[(QUERY, 1), (PUT_ITEM, 1)],
    );
    write(
        &api_process(&ports),
        Method::POST,
        &format!("/orders/{b}/cancel"),
        json!({"reasonForCancellation": "changed plans"}),
        &[],
        200,
    )
    .await;
    m.step(
        "command: cancel, head not cached (another process)",
        &[(QUERY, 1), (PUT_ITEM, 1)],
    );

    // With an Idempotency-Key: the key's claim first; the append and the saved response
    // commit in one transaction. A retry with the same key and body gets the saved answer.
    let key = format!("key-{}", uuid::Uuid::now_v7().simple());
    let first = write(
        &api,
        Method::POST,
        "/orders",
        json!({"description": "order C"}),
        &[("idempotency-key", &key)],
        201,
    )
    .await;
    m.step(
        "command: place with a new Idempotency-Key",
        &[(PUT_ITEM, 1), (TRANSACT, 1)],
    );
    let again = write(
        &api,
        Method::POST,
        "/orders",
        json!({"description": "order C"}),
        &[("idempotency-key", &key)],
        201,
    )
    .await;
    assert_eq!(again, first, "a replay answers with the saved response");
    m.step(
        "command: the same request replayed (saved response)",
        &[(PUT_ITEM, 1)],
    );
    let c = first["orderId"].as_str().expect("an orderId").to_owned();
    let key2 = format!("key-{}", uuid::Uuid::now_v7().simple());
    write(
        &api,
        Method::POST,
        &format!("/orders/{c}/start"),
        json!({}),
        &[("idempotency-key", &key2)],
        200,
    )
    .await;
    m.step(
        "command: start with a new Idempotency-Key, head cached",
        &[(PUT_ITEM, 1), (TRANSACT, 1)],
    );
    write(
        &api,
        Method::PUT,
        &format!("/orders/{c}"),
        json!({"description": "order C, revised"}),
        &[],
        200,
    )
    .await;
    m.step("command: PUT revision, head cached", &[(PUT_ITEM, 1)]);
    write(
        &api,
        Method::POST,
        &format!("/orders/{c}/complete"),
        json!({}),
        &[],
        200,
    )
    .await;
    m.step("command: complete, head cached", &[(PUT_ITEM, 1)]);

    // A strongly consistent read is one Query of the order's latest event; a past version
    // one Query of that event; a page of events one Query, never the whole history.
    let (status, order) = call(&api, Method::GET, &format!("/orders/{a}"), None, &[]).await;
    assert_eq!((status, order["status"].as_str()), (200, Some("completed")));
    m.step("read: GET /orders/{id} (its latest event)", &[(QUERY, 1)]);
    let (status, first) = call(
        &api,
        Method::GET,
        &format!("/orders/{a}?version=1"),
        None,
        &[],
    )
    .await;
    assert_eq!((status, first["version"].as_u64()), (200, Some(1)));
    m.step(
        "read: GET /orders/{id}?version=1 (that event)",
        &[(QUERY, 1)],
    );
    let (status, page) = call(
        &api,
        Method::GET,
        &format!("/orders/{a}/events?limit=2"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert!(page["nextCursor"].is_string(), "{page}");
    m.step(
        "read: GET /orders/{id}/events?limit=2 (one page)",
        &[(QUERY, 1)],
    );

    // ---- The projector over what the commands appended, as the feed hands it out: one
    // batch of everything so far (the busy case), then a batch of one (the quiet case).
    let batch = turn.next_batch().await;
    let orders_in = |batch: &[Change]| {
        let mut ids: Vec<_> = batch
            .iter()
            .map(|c| c.recorded.envelope.order_id.to_string())
            .collect();
        ids.dedup();
        ids
    };
    assert_eq!(batch.len(), 11, "3 events of A, 4 of B, 4 of C");
    assert_eq!(orders_in(&batch), [a.as_str(), b.as_str(), c.as_str()]);
    m.step(
        "feed: next batch (11 events of 3 orders)",
        &[(GET_RECORDS, 1)],
    );
    turn.project(&*ports.read_model, &batch).await;
    m.step(
        "projector: batch of 11 events of 3 orders",
        &[(PUT_ITEM, 3), (PUT_EVENTS, 2)],
    );
    turn.checkpoint(&batch).await;
    m.step("feed: checkpoint", &[(PUT_ITEM, 1)]);

    // One event, one batch: the quiet case.
    let d = write(
        &api,
        Method::POST,
        "/orders",
        json!({"description": "order D"}),
        &[],
        201,
    )
    .await;
    m.reset();
    let batch = turn.next_batch().await;
    assert_eq!(batch.len(), 1);
    assert_eq!(orders_in(&batch), [d["orderId"].as_str().expect("an id")]);
    m.step("feed: next batch (1 event)", &[(GET_RECORDS, 1)]);
    turn.project(&*ports.read_model, &batch).await;
    m.step(
        "projector: batch of 1 event",
        &[(PUT_ITEM, 1), (PUT_EVENTS, 1)],
    );
    turn.checkpoint(&batch).await;
    m.step("feed: checkpoint", &[(PUT_ITEM, 1)]);

    // The same in a process whose live-table pointer is not cached (its first batch, or
    // 5 s since it last read the pointer).
    let e = write(
        &api,
        Method::POST,
        "/orders",
        json!({"description": "order E"}),
        &[],
        201,
    )
    .await;
    m.reset();
    let batch = turn.next_batch().await;
    assert_eq!(orders_in(&batch), [e["orderId"].as_str().expect("an id")]);
    m.reset();
    turn.project(&*other.read_model, &batch).await;
    m.step(
        "projector: batch of 1 event, live-table pointer read (once per 5 s)",
        &[(GET_ITEM, 1), (PUT_ITEM, 1), (PUT_EVENTS, 1)],
    );
    turn.checkpoint(&batch).await;
    m.reset();

    // ---- The handlers over what the bus routed to their queues.
    let (deliveries, receipts) = received.receive().await;
    assert_eq!(deliveries.len(), 5, "placed: A, B, C, D, E");
    m.step("handler received: receive (5 messages)", &[(RECEIVE, 1)]);
    let redelivery = deliveries[0].clone();
    received.handle(deliveries).await;
    m.step(
        "handler received: 5 events, each a document",
        &[(PUT_ITEM, 10), (PUT_OBJECT, 5)],
    );
    received.delete(&receipts).await;
    m.step("handler received: delete the batch", &[(DELETE_BATCH, 1)]);
    received.handle(vec![redelivery]).await;
    m.step(
        "handler received: an event delivered again (already handled)",
        &[(PUT_ITEM, 1)],
    );

    let (deliveries, receipts) = inprocess.receive().await;
    assert_eq!(deliveries.len(), 5, "started: A, B, C; revised: B, C");
    m.step("handler inprocess: receive (5 messages)", &[(RECEIVE, 1)]);
    inprocess.handle(deliveries).await;
    m.step(
        "handler inprocess: 3 starts (a document each), 2 revisions (nothing to do)",
        &[(PUT_ITEM, 6), (PUT_OBJECT, 3)],
    );
    inprocess.delete(&receipts).await;
    m.step("handler inprocess: delete the batch", &[(DELETE_BATCH, 1)]);

    let (deliveries, receipts) = completed.receive().await;
    assert_eq!(deliveries.len(), 2, "completed: A, C");
    m.step("handler completed: receive (2 messages)", &[(RECEIVE, 1)]);
    completed.handle(deliveries).await;
    m.step(
        "handler completed: 2 events, each the order's history read and an invoice as JSON and PDF",
        &[(QUERY, 2), (PUT_ITEM, 4), (PUT_OBJECT, 4)],
    );
    completed.delete(&receipts).await;
    m.step("handler completed: delete the batch", &[(DELETE_BATCH, 1)]);

    let (deliveries, receipts) = canceled.receive().await;
    assert_eq!(deliveries.len(), 1, "canceled: B");
    m.step("handler canceled: receive (1 message)", &[(RECEIVE, 1)]);
    canceled.handle(deliveries).await;
    m.step("handler canceled: 1 event, a document", HANDLED);
    canceled.delete(&receipts).await;
    m.step("handler canceled: delete the batch", &[(DELETE_BATCH, 1)]);

    println!("{}", m.table());
    assert!(
        m.mismatches.is_empty(),
        "requests differ from the expected ones:\n  {}\n{}",
        m.mismatches.join("\n  "),
        m.table()
    );
}
