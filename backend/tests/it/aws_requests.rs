//! Requests per order on the AWS backend: one order's lifecycle run through the ports the
//! way the command API, the projector and a handler use them, with every AWS request
//! counted by the SDK interceptor the adapters install ([`backend::aws::RequestCounter`]).
//! Run with `--nocapture` to see the table (the README's cost per order comes from it).
//!
//! The write path is held to at most two requests per command (a head read and one write).

use crate::support;
use std::{collections::BTreeMap, fmt::Write, time::Duration};

use backend::{Append, BusEntry, Claim, Document, IdempotencyRecord, Ports, SavedResponse, item};
use chrono::Utc;
use events_schema::{
    Command, Description, EventContext, EventDetail, Metadata, OrderId, PlaceOrder, Reason, decide,
    record, route_table,
};

/// What one step cost, by operation.
type Counts = BTreeMap<String, u64>;

struct Ledger {
    rows: Vec<(String, Counts)>,
}

impl Ledger {
    fn add(&mut self, step: impl Into<String>, counts: Counts) -> u64 {
        let total = counts.values().sum();
        self.rows.push((step.into(), counts));
        total
    }

    fn table(&self) -> String {
        let mut out = String::from("requests per step (AWS backend, moto):\n");
        for (step, counts) in &self.rows {
            let total: u64 = counts.values().sum();
            let detail: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
            let _ = writeln!(out, "  {step:<58} {total:>2}  {}", detail.join(", "));
        }
        out
    }
}

/// A command as the command service runs it: head (unless the id is new, or the head is
/// cached from this process's last write), decide, record, one append; with an
/// `Idempotency-Key`, the claim first and the saved response in the append.
async fn command(
    ports: &Ports,
    id: &OrderId,
    command: Command,
    head_known: Option<Option<backend::Head>>,
    key: Option<&str>,
) {
    if let Some(key) = key {
        let claim = ports
            .idempotency
            .claim(key, "fingerprint", Utc::now())
            .await
            .expect("claim");
        assert_eq!(claim, Claim::Acquired);
    }
    let head = match head_known {
        Some(head) => head,
        None => ports.events.head(id).await.expect("head"),
    };
    let events = decide(id, head.as_ref().map(|h| &h.order), &command).expect("accepted");
    let ctx = EventContext {
        occurred_at: Utc::now(),
        metadata: Metadata {
            correlation_id: "requests".into(),
            ..Metadata::default()
        },
    };
    let recorded = record(
        id,
        head.as_ref().map(|h| (&h.order, &h.hash)),
        events,
        &ctx,
        uuid::Uuid::now_v7,
    )
    .expect("records");
    let now = Utc::now();
    let append = Append {
        order_id: id.clone(),
        expected_version: head.map_or(0, |h| h.order.version),
        events: recorded,
        idempotency: key.map(|key| IdempotencyRecord {
            key: key.into(),
            fingerprint: "fingerprint".into(),
            response: SavedResponse {
                status: 200,
                headers: Vec::new(),
                body: "{}".into(),
            },
            expires_at: now + chrono::Duration::hours(24),
        }),
    };
    ports.events.append(append).await.expect("appends");
}

/// One turn of the local stream poller with the projector: a batch, the read model, the
/// bus, the checkpoint. Returns how many events it projected.
async fn project(ports: &Ports, source: &str) -> usize {
    let batch = ports
        .feed
        .next_batch(500, Duration::from_secs(2))
        .await
        .expect("batch");
    let Some(last) = batch
        .records
        .last()
        .and_then(|r| r.change.sequence_number.clone())
    else {
        return 0;
    };
    let recorded: Vec<_> = batch
        .records
        .into_iter()
        .map(|r| item::from_item(r.change.new_image).expect("an event item"))
        .collect();
    let orders: Vec<_> = recorded.iter().map(|r| r.order.clone()).collect();
    ports.read_model.apply(&orders).await.expect("apply");
    let entries: Vec<BusEntry> = recorded
        .iter()
        .map(|r| BusEntry {
            source: source.into(),
            detail_type: r.envelope.event.type_name().into(),
            detail: serde_json::to_string(&EventDetail {
                event: r.envelope.clone(),
                order: r.order.clone(),
                replayed: false,
            })
            .expect("detail"),
            time: r.envelope.occurred_at,
        })
        .collect();
    assert!(
        ports
            .publisher
            .publish(&entries)
            .await
            .expect("publish")
            .is_empty()
    );
    ports.feed.checkpoint(&last).await.expect("checkpoint");
    recorded.len()
}

/// One turn of a queue poller with a handler: receive, then per message the ledger claim,
/// the document, the ledger record; then the batch's delete.
async fn handle(ports: &Ports, queue: &str) -> usize {
    let messages = ports
        .queues
        .receive(queue, 10, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .expect("receive");
    for m in &messages {
        let event: serde_json::Value = serde_json::from_str(&m.body).expect("JSON");
        let detail: EventDetail = serde_json::from_value(event["detail"].clone()).expect("detail");
        let event_id = detail.event.event_id.to_string();
        let key = format!("handled:{queue}:{event_id}");
        let now = Utc::now();
        assert_eq!(
            ports
                .idempotency
                .claim(&key, &event_id, now)
                .await
                .expect("claim"),
            Claim::Acquired
        );
        let document = Document {
            name: format!("{queue}.json"),
            content_type: "application/json".into(),
            body: m.body.clone().into_bytes(),
        };
        ports
            .documents
            .put(&detail.event.order_id, &document)
            .await
            .expect("document");
        ports
            .idempotency
            .complete(IdempotencyRecord {
                key,
                fingerprint: event_id,
                response: SavedResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: document.name,
                },
                expires_at: now + chrono::Duration::days(365),
            })
            .await
            .expect("complete");
    }
    let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    ports.queues.delete(queue, &handles).await.expect("delete");
    messages.len()
}

/// Each event item's size as plain JSON (envelope members + `order`), near what DynamoDB
/// bills: writes per 1 KB, reads per 4 KB of item.
async fn item_sizes(ports: &Ports, id: &OrderId) -> Vec<String> {
    let mut state = None;
    let mut sizes = Vec::new();
    for envelope in ports.events.history(id).await.expect("history") {
        let order = events_schema::evolve(state.as_ref(), &envelope).expect("folds");
        let json = serde_json::to_string(&(&envelope, &order)).expect("JSON");
        sizes.push(format!("{} {} B", envelope.event.type_name(), json.len()));
        state = Some(order);
    }
    sizes
}

fn place() -> Command {
    Command::Place(PlaceOrder {
        description: Description::parse("a lifecycle").expect("valid"),
        register_date: Utc::now(),
        delivery_date: None,
        customer_id: None,
    })
}

fn oid(s: &str) -> OrderId {
    OrderId::parse(s).expect("valid id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_costs_at_most_two_requests_per_command_on_the_write_path() {
    let aws = support::moto::aws().await;
    let ports = aws.ports();
    let source = aws.config.event_source.clone();
    let counter = aws.requests.clone();
    let mut ledger = Ledger { rows: Vec::new() };
    let queue = |s| route_table().route(s).expect("route").queue.clone();

    // Warm-up, once per process: the stream's ARN and shards, the checkpoint, an iterator.
    counter.take();
    command(&ports, &oid("warm-up"), place(), Some(None), None).await;
    counter.take();
    assert_eq!(project(&ports, &source).await, 1);
    ledger.add(
        "projector start-up (once per process) + 1 event",
        counter.take(),
    );
    assert_eq!(
        handle(&ports, &queue(events_schema::Status::Received)).await,
        1
    );
    for status in events_schema::Status::ALL {
        // Each queue's URL is looked up once per process, then cached.
        ports
            .queues
            .receive(&queue(status), 1, Duration::ZERO, Duration::ZERO)
            .await
            .expect("receive");
    }
    counter.take();

    // Lifecycle 1: place (server-made id: no head read) -> start -> complete, each command
    // projected and handled on its own (the low-traffic case: batches of one).
    let a = oid("order-a");
    let mut write_path = Vec::new();
    let steps = [
        ("place, server-made id (no head read)", place(), Some(None)),
        ("start (head read)", Command::Start, None),
        ("complete (head read)", Command::Complete, None),
    ];
    for (name, cmd, head) in steps {
        let status_before = counter.take();
        assert!(status_before.is_empty());
        command(&ports, &a, cmd, head, None).await;
        let n = ledger.add(format!("command: {name}"), counter.take());
        write_path.push((name, n));
        assert_eq!(project(&ports, &source).await, 1);
        ledger.add(
            "  projector: batch of 1 (poll, read model, bus, checkpoint)",
            counter.take(),
        );
        let status = ports
            .events
            .head(&a)
            .await
            .expect("head")
            .expect("exists")
            .order
            .status;
        counter.take();
        assert_eq!(handle(&ports, &queue(status)).await, 1);
        ledger.add(
            format!("  handler {}: 1 message", status.as_str()),
            counter.take(),
        );
    }

    // Lifecycle 2: a client-chosen id (head read on place), then cancel.
    let b = oid("order-b");
    let steps = [
        ("place, client id (head read)", place()),
        (
            "cancel (head read)",
            Command::Cancel {
                reason: Reason::parse("changed my mind").expect("valid"),
            },
        ),
    ];
    for (name, cmd) in steps {
        command(&ports, &b, cmd, None, None).await;
        let n = ledger.add(format!("command: {name}"), counter.take());
        write_path.push((name, n));
    }
    assert_eq!(project(&ports, &source).await, 2);
    ledger.add(
        "  projector: batch of 2 events of one order",
        counter.take(),
    );

    // With an Idempotency-Key: the claim is one more request.
    let c = oid("order-c");
    command(&ports, &c, place(), Some(None), Some("key-1")).await;
    let n = ledger.add(
        "command: place, server-made id, Idempotency-Key",
        counter.take(),
    );
    write_path.push(("place with Idempotency-Key", n));
    command(&ports, &c, Command::Start, None, Some("key-2")).await;
    ledger.add(
        "command: start, Idempotency-Key (claim, head, transaction)",
        counter.take(),
    );
    // A warm command service has the head cached from its own last write.
    let head = ports.events.head(&c).await.expect("head");
    counter.take();
    command(&ports, &c, Command::Complete, Some(head), None).await;
    let n = ledger.add(
        "command: complete, head cached in the process",
        counter.take(),
    );
    write_path.push(("complete, head cached", n));

    println!("{}", ledger.table());
    println!(
        "event item sizes: {}",
        item_sizes(&ports, &a).await.join(", ")
    );
    for (name, n) in write_path {
        assert!(n <= 2, "{name}: {n} requests on the write path");
    }
}
