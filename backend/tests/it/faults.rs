//! The AWS adapters under the failures AWS answers with under load, injected into their real
//! requests to a moto server by an SDK interceptor (`support/faults.rs`, installed through
//! `AwsConfig::interceptor`): throttling, failed conditions, transaction conflicts, batch
//! calls that leave items unprocessed, `PutEvents` refusing some entries. Each test asserts
//! how often the operation really went out and the state it left, so that it fails if the
//! retry or the handling it checks is taken away.

use std::{sync::Arc, time::Duration};

use backend::{
    Append, AppendError, BusEntry, EventArchive, EventPublisher, EventStore, ProjectionRebuild,
    ProjectionScan, QueueMessage, Queues, ReadModel,
    aws::{Aws, AwsConfig},
};
use chrono::{TimeZone, Utc};
use events_schema::{
    Command, Description, EventContext, Metadata, OrderId, PlaceOrder, Status, UpdateOrder, decide,
    record, route_table,
};

use crate::support::{
    faults::{Fault, Faults},
    moto,
};

/// The AWS adapters on fresh moto resources, every client passing its requests through
/// the returned `Faults` (nothing injected yet).
async fn aws() -> (Aws, Faults) {
    let faults = Faults::default();
    let aws = moto::aws_with(AwsConfig {
        interceptor: Some(faults.interceptor()),
        ..AwsConfig::prefixed(&moto::fresh_prefix())
    })
    .await;
    (aws, faults)
}

fn oid(s: &str) -> OrderId {
    OrderId::parse(s).expect("a valid id")
}

fn place() -> Command {
    Command::Place(PlaceOrder {
        description: Description::parse("an order").expect("valid"),
        register_date: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a date"),
        delivery_date: None,
        customer_id: None,
    })
}

/// Starting and revising at once: two events, so one `TransactWriteItems`.
fn start_and_revise() -> Command {
    Command::Update(UpdateOrder {
        status: Some(Status::Inprocess),
        description: Some(Description::parse("revised").expect("valid")),
        ..UpdateOrder::default()
    })
}

/// The append that records `command` on the order's current head.
async fn next_append(events: &dyn EventStore, id: &OrderId, command: Command) -> Append {
    let head = events.head(id).await.expect("head");
    let decided = decide(id, head.as_ref().map(|h| &h.order), &command).expect("accepted");
    let ctx = EventContext {
        occurred_at: Utc::now(),
        metadata: Metadata {
            correlation_id: "faults".into(),
            ..Metadata::default()
        },
    };
    let recorded = record(
        id,
        head.as_ref().map(|h| (&h.order, &h.hash)),
        decided,
        &ctx,
        uuid::Uuid::now_v7,
    )
    .expect("records");
    Append {
        order_id: id.clone(),
        expected_version: head.map_or(0, |h| h.order.version),
        events: recorded,
        idempotency: None,
    }
}

/// The version the event table holds for `id` (0: none).
async fn stored_version(events: &dyn EventStore, id: &OrderId) -> u64 {
    events
        .head(id)
        .await
        .expect("head")
        .map_or(0, |h| h.order.version)
}

/// Places `id` with no fault injected.
async fn placed(aws: &Aws, id: &str) -> OrderId {
    let id = oid(id);
    let append = next_append(aws.events.as_ref(), &id, place()).await;
    aws.events.append(append).await.expect("appends");
    id
}

// ---- Appends.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_append_is_retried_by_the_sdk_and_lands_once() {
    let (aws, faults) = aws().await;
    let id = oid("ORD-THROTTLED");
    let append = next_append(aws.events.as_ref(), &id, place()).await;
    faults.inject("PutItem", Fault::Throttle, 2);
    let before = faults.attempts("PutItem");

    aws.events
        .append(append)
        .await
        .expect("the third attempt lands");

    assert_eq!(
        faults.attempts("PutItem") - before,
        3,
        "two throttled, one sent"
    );
    assert_eq!(faults.unused(), 0);
    assert_eq!(stored_version(aws.events.as_ref(), &id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_past_the_sdk_retries_is_a_retryable_error_and_stores_nothing() {
    let (aws, faults) = aws().await;
    let id = oid("ORD-THROTTLED-OUT");
    let append = next_append(aws.events.as_ref(), &id, place()).await;
    faults.inject("PutItem", Fault::Throttle, 100);
    let before = faults.attempts("PutItem");

    let err = aws.events.append(append).await.expect_err("throttled out");

    let AppendError::Store(err) = err else {
        panic!("a store error, not {err:?}");
    };
    assert!(
        err.is_retryable(),
        "throttling is worth trying later: {err}"
    );
    assert_eq!(
        faults.attempts("PutItem") - before,
        3,
        "the SDK's standard retry: three attempts"
    );
    assert_eq!(stored_version(aws.events.as_ref(), &id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_condition_on_append_is_a_version_conflict_and_is_not_retried() {
    let (aws, faults) = aws().await;
    let id = placed(&aws, "ORD-RACE").await;
    let append = next_append(aws.events.as_ref(), &id, Command::Start).await;
    faults.inject("PutItem", Fault::ConditionFailed, 1);
    let before = faults.attempts("PutItem");

    let err = aws.events.append(append).await.expect_err("lost the race");

    assert!(
        matches!(&err, AppendError::Conflict { order_id, expected: 1 } if *order_id == id),
        "{err:?}"
    );
    assert_eq!(faults.attempts("PutItem") - before, 1);
    assert_eq!(stored_version(aws.events.as_ref(), &id).await, 1);
    // The caller decides again on a fresh head, and that append goes through.
    let again = next_append(aws.events.as_ref(), &id, Command::Start).await;
    aws.events.append(again).await.expect("appends");
    assert_eq!(stored_version(aws.events.as_ref(), &id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_meeting_another_writers_transaction_is_a_version_conflict() {
    let (aws, faults) = aws().await;
    let id = placed(&aws, "ORD-MID-TX").await;
    let append = next_append(aws.events.as_ref(), &id, Command::Start).await;
    faults.inject("PutItem", Fault::TransactionConflict, 1);

    let err = aws.events.append(append).await.expect_err("conflicts");

    assert!(
        matches!(err, AppendError::Conflict { expected: 1, .. }),
        "a race to decide again on, not a failure: {err:?}"
    );
    assert_eq!(stored_version(aws.events.as_ref(), &id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cancelled_by_a_conflict_is_retried_and_lands() {
    let (aws, faults) = aws().await;
    let id = placed(&aws, "ORD-TX").await;
    let append = next_append(aws.events.as_ref(), &id, start_and_revise()).await;
    assert_eq!(append.events.len(), 2, "a transaction");
    faults.inject("TransactWriteItems", Fault::TransactionConflict, 2);
    let before = faults.attempts("TransactWriteItems");

    aws.events
        .append(append)
        .await
        .expect("the third transaction commits");

    assert_eq!(faults.attempts("TransactWriteItems") - before, 3);
    assert_eq!(faults.unused(), 0);
    assert_eq!(stored_version(aws.events.as_ref(), &id).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_conflict_that_persists_is_reported_as_a_version_race() {
    let (aws, faults) = aws().await;
    let id = placed(&aws, "ORD-TX-BUSY").await;
    let append = next_append(aws.events.as_ref(), &id, start_and_revise()).await;
    faults.inject("TransactWriteItems", Fault::TransactionConflict, 100);
    let before = faults.attempts("TransactWriteItems");

    let err = aws.events.append(append).await.expect_err("gives up");

    assert!(
        matches!(err, AppendError::Conflict { expected: 1, .. }),
        "the command decides again on a fresh head: {err:?}"
    );
    assert_eq!(
        faults.attempts("TransactWriteItems") - before,
        3,
        "three transactions, then the race is the caller's"
    );
    assert_eq!(stored_version(aws.events.as_ref(), &id).await, 1);
}

// ---- Batches that leave work unprocessed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_sends_unprocessed_writes_again_until_the_fresh_table_is_complete() {
    let (aws, faults) = aws().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = placed(&aws, &format!("ORD-RB-{i:02}")).await;
        if i % 3 == 0 {
            let start = next_append(aws.events.as_ref(), &id, Command::Start).await;
            aws.events.append(start).await.expect("appends");
        }
        ids.push(id);
    }
    // Every call of the first three leaves 10 writes (or all but one) unprocessed.
    faults.inject("BatchWriteItem", Fault::Unprocessed(10), 3);
    let before = faults.calls("BatchWriteItem");

    aws.rebuilder()
        .rebuild(Arc::new(|_| {}))
        .await
        .expect("rebuilds");

    assert_eq!(faults.unused(), 0, "every injection met a call");
    let calls = faults.calls("BatchWriteItem") - before;
    assert!(
        calls > 3,
        "the unprocessed writes went again: {calls} calls"
    );
    let sent: usize = faults.sent("BatchWriteItem").iter().sum();
    assert!(sent >= 30, "at least one write per order: {sent}");
    for (i, id) in ids.iter().enumerate() {
        let row = aws
            .read_model
            .get(id)
            .await
            .expect("reads")
            .unwrap_or_else(|| panic!("{id} is missing from the rebuilt read model"));
        let want = if i % 3 == 0 { 2 } else { 1 };
        assert_eq!(row.version, want, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_page_asks_again_for_unprocessed_keys_until_every_row_is_read() {
    let (aws, faults) = aws().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let id = placed(&aws, &format!("ORD-BG-{i:02}")).await;
        ids.push(id);
    }
    let mut orders = Vec::new();
    for id in &ids {
        orders.push(
            aws.events
                .head(id)
                .await
                .expect("head")
                .expect("placed")
                .order,
        );
    }
    aws.read_model.apply(&orders).await.expect("projects");
    let archive = aws.archive();
    let page = archive.histories(None, 1_000).await.expect("a page");
    assert_eq!(page.histories.len(), ids.len());
    faults.inject("BatchGetItem", Fault::Unprocessed(5), 2);

    let rows = archive.rows_for(&page).await.expect("reads the rows");

    assert_eq!(faults.unused(), 0);
    assert_eq!(
        faults.sent("BatchGetItem"),
        vec![7, 1, 4],
        "12 keys: 5 held back; of those 5, 4 held back again; then the last 4"
    );
    let mut got: Vec<String> = rows.iter().map(|r| r.order_id.clone()).collect();
    got.sort();
    let want: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    assert_eq!(got, want, "every row, each once");
}

// ---- PutEvents refusing some entries.

/// A bus entry for a received order `id` (what the rules route by: the source and
/// `detail.order.status`).
fn bus_entry(source: &str, id: &str) -> BusEntry {
    let detail = serde_json::json!({
        "event": { "orderId": id },
        "order": { "orderId": id, "status": "received" },
    });
    BusEntry {
        source: source.to_owned(),
        detail_type: "OrderPlaced".into(),
        detail: detail.to_string(),
        time: Utc::now(),
        trace_header: None,
    }
}

/// Every message in `queue` until it has been empty for one receive after `want` came,
/// or `within` passed.
async fn drain(aws: &Aws, queue: &str, want: usize, within: Duration) -> Vec<QueueMessage> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    loop {
        let batch = aws
            .queues
            .receive(queue, 10, Duration::from_secs(60), Duration::from_secs(1))
            .await
            .expect("receive");
        let empty = batch.is_empty();
        got.extend(batch);
        if (empty && got.len() >= want) || tokio::time::Instant::now() > deadline {
            return got;
        }
    }
}

fn received_queue() -> String {
    route_table()
        .route(Status::Received)
        .expect("a route")
        .queue
        .clone()
}

/// The order id in each delivered bus event, sorted.
fn delivered_orders(messages: &[QueueMessage]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| {
            let event: serde_json::Value = serde_json::from_str(&m.body).expect("JSON");
            event["detail"]["event"]["orderId"]
                .as_str()
                .expect("an order id")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_refused_for_now_are_sent_again_alone_and_each_is_published_once() {
    let (aws, faults) = aws().await;
    let source = aws.config.event_source.clone();
    let ids: Vec<String> = (0..5).map(|i| format!("ORD-PE-{i}")).collect();
    let entries: Vec<BusEntry> = ids.iter().map(|id| bus_entry(&source, id)).collect();
    faults.inject(
        "PutEvents",
        Fault::FailEntries {
            indices: vec![1, 3],
            code: "ThrottlingException",
        },
        1,
    );

    let failed = aws.publisher.publish(&entries).await.expect("publishes");

    assert_eq!(failed, Vec::<usize>::new(), "none left failed");
    assert_eq!(
        faults.sent("PutEvents"),
        vec![3, 2],
        "the second call carries only the two refused entries"
    );
    let got = drain(&aws, &received_queue(), 5, Duration::from_secs(20)).await;
    assert_eq!(
        delivered_orders(&got),
        ids,
        "each entry delivered exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_refused_for_good_are_reported_by_index_and_not_sent_again() {
    let (aws, faults) = aws().await;
    let source = aws.config.event_source.clone();
    let ids: Vec<String> = (0..4).map(|i| format!("ORD-PM-{i}")).collect();
    let entries: Vec<BusEntry> = ids.iter().map(|id| bus_entry(&source, id)).collect();
    faults.inject(
        "PutEvents",
        Fault::FailEntries {
            indices: vec![2],
            code: "MalformedDetail",
        },
        1,
    );

    let failed = aws.publisher.publish(&entries).await.expect("publishes");

    assert_eq!(failed, vec![2]);
    assert_eq!(faults.sent("PutEvents"), vec![3], "one call, no retry");
    let got = drain(&aws, &received_queue(), 3, Duration::from_secs(20)).await;
    let mut want = ids.clone();
    want.remove(2);
    assert_eq!(delivered_orders(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_refused_on_every_round_is_reported_and_the_rest_published_once() {
    let (aws, faults) = aws().await;
    let source = aws.config.event_source.clone();
    let ids: Vec<String> = (0..3).map(|i| format!("ORD-PT-{i}")).collect();
    let entries: Vec<BusEntry> = ids.iter().map(|id| bus_entry(&source, id)).collect();
    // Entry 0 of each call: the first entry, in the first call and in both retries.
    faults.inject(
        "PutEvents",
        Fault::FailEntries {
            indices: vec![0],
            code: "InternalFailure",
        },
        100,
    );

    let failed = aws.publisher.publish(&entries).await.expect("publishes");

    assert_eq!(failed, vec![0], "reported for the projector to retry");
    assert_eq!(
        faults.sent("PutEvents"),
        vec![2, 0, 0],
        "three rounds; the retries carry only the refused entry"
    );
    let got = drain(&aws, &received_queue(), 2, Duration::from_secs(20)).await;
    assert_eq!(delivered_orders(&got), ids[1..].to_vec());
}
