//! The port contract: one suite, run against every backend. Each backend module below
//! provides `fixture()`; the `contract_suite!` macro instantiates every test for it: the
//! embedded backend on a temporary directory, the AWS backend on a moto server (one per
//! test binary, fresh resources per test; see `support/moto.rs`).

use crate::support;
use std::{sync::Arc, time::Duration};

use backend::{
    Append, AppendError, BusEntry, ChangeFeed, Claim, Document, DocumentStore, EventPublisher,
    EventStore, Head, IN_PROGRESS_EXPIRY, IdempotencyKey, IdempotencyRecord, IdempotencyStore,
    IntakeArchive, LedgerKey, ListQuery, ParkedRecords, QueueMessage, Queues, ReadModel,
    SavedResponse,
};
use chrono::{TimeZone, Utc};
use events_schema::{
    Command, Description, Envelope, EventContext, EventDetail, MAX_EVENTS_PER_ORDER, Metadata,
    Order, OrderDetailsRevised, OrderEvent, OrderId, PlaceOrder, Recorded, Rejection, Status,
    UpdateOrder, decide, record, route_table, transitions_left,
};

/// Everything a backend offers, behind the ports.
pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub read_model: Arc<dyn ReadModel>,
    pub feed: Arc<dyn ChangeFeed>,
    pub publisher: Arc<dyn EventPublisher>,
    pub queues: Arc<dyn Queues>,
    pub documents: Arc<dyn DocumentStore>,
    pub intake_archive: Arc<dyn IntakeArchive>,
    pub parked: Arc<dyn ParkedRecords>,
    /// The EventBridge `Source` the backend's rules match.
    pub source: String,
    /// Keeps whatever the backend needs alive (a temp dir, a server).
    pub _guard: Box<dyn std::any::Any + Send + Sync>,
}

fn oid(s: &str) -> OrderId {
    OrderId::parse(s).expect("valid id")
}

fn ctx() -> EventContext {
    EventContext {
        occurred_at: Utc::now(),
        metadata: Metadata {
            correlation_id: "test".into(),
            ..Metadata::default()
        },
    }
}

/// Decides `command` on the order's current head and returns the append that records it.
async fn next_append(f: &Fixture, id: &OrderId, command: Command) -> Append {
    let head = f.events.head(id).await.expect("head");
    let events = decide(id, head.as_ref().map(|h| &h.order), &command).expect("accepted");
    let recorded = record(
        id,
        head.as_ref().map(|h| (&h.order, &h.hash)),
        events,
        &ctx(),
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

fn place(description: &str) -> Command {
    Command::Place(PlaceOrder {
        description: Description::parse(description).expect("valid"),
        register_date: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date"),
        delivery_date: None,
        customer_id: None,
    })
}

/// Every event of the order, read a page at a time.
async fn all_events(f: &Fixture, id: &OrderId) -> Vec<Envelope> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = f.events.events(id, after, 100).await.expect("events");
        events.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => return events,
        }
    }
}

/// Appends `n` revisions of the order, one event per append (a transaction of several
/// costs moto a copy of the table per event), each at `at` when given.
async fn revise(f: &Fixture, id: &OrderId, n: u64, at: Option<chrono::DateTime<Utc>>) {
    let mut head = f.events.head(id).await.expect("head").expect("placed");
    for _ in 0..n {
        let text = format!("revision {}", head.order.version + 1);
        let event = OrderEvent::OrderDetailsRevised(OrderDetailsRevised {
            description: Some(Description::parse(&text).expect("valid")),
            delivery_date: None,
        });
        let mut context = ctx();
        if let Some(at) = at {
            context.occurred_at = at;
        }
        let recorded = record(
            id,
            Some((&head.order, &head.hash)),
            vec![event],
            &context,
            uuid::Uuid::now_v7,
        )
        .expect("records");
        let append = Append {
            order_id: id.clone(),
            expected_version: head.order.version,
            events: recorded.clone(),
            idempotency: None,
        };
        f.events.append(append).await.expect("appends");
        if let Some(last) = recorded.last() {
            head = Head {
                order: last.order.clone(),
                hash: last.envelope.hash,
            };
        }
    }
}

async fn placed(f: &Fixture, id: &str) -> OrderId {
    let id = oid(id);
    let append = next_append(f, &id, place("an order")).await;
    f.events.append(append).await.expect("appends");
    id
}

pub async fn append_then_head_and_history_return_what_was_written(f: Fixture) {
    let id = placed(&f, "ORD-A").await;
    let start = next_append(&f, &id, Command::Start).await;
    f.events.append(start).await.expect("appends");
    let head = f.events.head(&id).await.expect("head").expect("exists");
    assert_eq!(
        (head.order.version, head.order.status),
        (2, Status::Inprocess)
    );
    let history = all_events(&f, &id).await;
    assert_eq!(
        history.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(head.hash, history[1].hash);
    assert!(f.events.head(&oid("nobody")).await.expect("head").is_none());
    assert!(all_events(&f, &oid("nobody")).await.is_empty());
}

pub async fn events_are_read_a_page_at_a_time_each_once_in_version_order(f: Fixture) {
    let id = placed(&f, "ORD-PAGES").await;
    revise(&f, &id, 249, None).await;
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = f.events.events(&id, after, 100).await.expect("events");
        pages.push(page.items.iter().map(|e| e.version).collect::<Vec<_>>());
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    assert_eq!(pages.concat(), (1..=250).collect::<Vec<u64>>());
    // A page that ends exactly at the last event says that nothing follows.
    let last = f.events.events(&id, 150, 100).await.expect("events");
    assert_eq!((last.items.len(), last.next), (100, None));
    let past = f.events.events(&id, 250, 100).await.expect("events");
    assert_eq!((past.items.len(), past.next), (0, None));
    let other = f
        .events
        .events(&oid("nobody"), 0, 100)
        .await
        .expect("events");
    assert!(other.items.is_empty());
}

pub async fn the_state_at_a_version_or_a_time_is_the_one_stored_with_that_event(f: Fixture) {
    let id = oid("ORD-ASOF");
    let t0 = Utc
        .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("date");
    let second = chrono::Duration::seconds(1);
    let mut append = next_append(&f, &id, place("as of")).await;
    for r in &mut append.events {
        r.envelope.occurred_at = t0;
    }
    f.events.append(append).await.expect("appends");
    revise(&f, &id, 1, Some(t0 + second)).await;
    revise(&f, &id, 1, Some(t0 + second * 2)).await;
    let stored = |v: u64| {
        let f = &f;
        let id = &id;
        async move {
            f.events
                .at_version(id, v)
                .await
                .expect("at version")
                .map(|o| (o.version, o.description.as_str().to_owned()))
        }
    };
    assert_eq!(stored(1).await, Some((1, "as of".to_owned())));
    assert_eq!(stored(2).await, Some((2, "revision 2".to_owned())));
    assert_eq!(stored(3).await, Some((3, "revision 3".to_owned())));
    assert_eq!(stored(4).await, None);
    assert_eq!(stored(0).await, None);
    assert_eq!(stored(u64::MAX).await, None);
    let head = f.events.head(&id).await.expect("head").expect("exists");
    assert_eq!(
        f.events.at_version(&id, 3).await.expect("at version"),
        Some(head.order)
    );

    let at = |t: chrono::DateTime<Utc>| {
        let f = &f;
        let id = &id;
        async move {
            f.events
                .at_time(id, t)
                .await
                .expect("at time")
                .map(|o| o.version)
        }
    };
    let micro = chrono::Duration::microseconds(1);
    assert_eq!(at(t0 - micro).await, None, "before the first event");
    assert_eq!(at(t0).await, Some(1), "at the very instant of an event");
    assert_eq!(at(t0 + second - micro).await, Some(1));
    assert_eq!(at(t0 + second + second / 2).await, Some(2));
    assert_eq!(at(t0 + second * 2).await, Some(3));
    assert_eq!(at(t0 + chrono::Duration::days(365)).await, Some(3));
    assert_eq!(
        f.events.at_time(&oid("nobody"), t0).await.expect("at time"),
        None
    );
}

pub async fn an_order_at_the_event_limit_refuses_revisions_and_can_still_finish(f: Fixture) {
    let id = placed(&f, "ORD-FULL").await;
    let room = MAX_EVENTS_PER_ORDER - transitions_left(Status::Received);
    revise(&f, &id, room - 1, None).await;
    let head = f.events.head(&id).await.expect("head").expect("exists");
    assert_eq!(head.order.version, room);
    let revision = Command::Update(UpdateOrder {
        description: Some(Description::parse("one more").expect("valid")),
        ..UpdateOrder::default()
    });
    assert_eq!(
        decide(&id, Some(&head.order), &revision),
        Err(Rejection::HistoryFull {
            order_id: id.clone(),
            events: room,
            limit: MAX_EVENTS_PER_ORDER,
        })
    );
    for command in [Command::Start, Command::Complete] {
        let append = next_append(&f, &id, command).await;
        f.events.append(append).await.expect("appends");
    }
    let events = all_events(&f, &id).await;
    assert_eq!(events.len() as u64, MAX_EVENTS_PER_ORDER);
    assert_eq!(
        f.events
            .head(&id)
            .await
            .expect("head")
            .map(|h| h.order.version),
        Some(MAX_EVENTS_PER_ORDER)
    );
}

pub async fn an_append_at_a_stale_version_is_a_conflict_and_writes_nothing(f: Fixture) {
    let id = placed(&f, "ORD-B").await;
    let first = next_append(&f, &id, Command::Start).await;
    let stale = first.clone();
    f.events.append(first).await.expect("first wins");
    match f.events.append(stale).await {
        Err(AppendError::Conflict { expected: 1, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(all_events(&f, &id).await.len(), 2);
}

pub async fn placing_an_existing_order_again_conflicts(f: Fixture) {
    let id = placed(&f, "ORD-C").await;
    let again = Append {
        expected_version: 0,
        ..next_append(&f, &oid("ORD-C-other"), place("x")).await
    };
    let again = Append {
        order_id: id.clone(),
        ..again
    };
    assert!(matches!(
        f.events.append(again).await,
        Err(AppendError::Conflict { .. })
    ));
}

pub async fn of_many_concurrent_appends_at_one_version_exactly_one_wins(f: Fixture) {
    let f = Arc::new(f);
    let id = placed(&f, "ORD-D").await;
    let append = next_append(&f, &id, Command::Start).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (f, a) = (f.clone(), append.clone());
        tasks.push(tokio::spawn(async move { f.events.append(a).await }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => wins += 1,
            Err(AppendError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(all_events(&f, &id).await.len(), 2);
}

pub async fn concurrent_appends_to_different_orders_all_commit(f: Fixture) {
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            placed(&f, &format!("ORD-E-{i}")).await
        }));
    }
    for t in tasks {
        let id = t.await.expect("task");
        assert_eq!(all_events(&f, &id).await.len(), 1);
    }
}

/// An anonymous client's key in the API's namespace.
fn api_key(raw: &str) -> LedgerKey {
    LedgerKey::api(None, &IdempotencyKey::parse(raw).expect("valid key"))
}

fn saved(body: &str) -> SavedResponse {
    SavedResponse {
        status: 201,
        headers: vec![("etag".into(), "\"1\"".into())],
        body: body.into(),
    }
}

pub async fn idempotency_keys_claim_replay_mismatch_and_release(f: Fixture) {
    let now = Utc::now();
    let store = &f.idempotency;
    let k1 = api_key("k1");
    assert_eq!(
        store.claim(&k1, "fp", now).await.expect("claim"),
        Claim::Acquired
    );
    assert_eq!(
        store.claim(&k1, "fp", now).await.expect("claim"),
        Claim::InProgress
    );
    assert_eq!(
        store.claim(&k1, "other", now).await.expect("claim"),
        Claim::Mismatch
    );
    store.release(&k1).await.expect("release");
    assert_eq!(
        store.claim(&k1, "fp", now).await.expect("claim"),
        Claim::Acquired
    );

    let id = oid("ORD-F");
    let mut append = next_append(&f, &id, place("x")).await;
    append.idempotency = Some(IdempotencyRecord {
        key: k1.clone(),
        fingerprint: "fp".into(),
        response: saved("first"),
        expires_at: now + chrono::Duration::hours(1),
    });
    f.events.append(append).await.expect("appends");
    assert_eq!(
        store.claim(&k1, "fp", now).await.expect("claim"),
        Claim::Replay(saved("first"))
    );
    assert_eq!(
        store.claim(&k1, "changed", now).await.expect("claim"),
        Claim::Mismatch
    );
    // After expiry the key is free again.
    let later = now + chrono::Duration::hours(2);
    assert_eq!(
        store.claim(&k1, "fp", later).await.expect("claim"),
        Claim::Acquired
    );
}

/// An in-progress claim holds its key for `IN_PROGRESS_EXPIRY` by the `now` passed to
/// `claim` (not the store's clock), in whole seconds, and is taken over after that: the same
/// on every backend.
pub async fn an_abandoned_claim_is_taken_over_after_its_expiry_by_the_given_clock(f: Fixture) {
    assert_eq!(IN_PROGRESS_EXPIRY, Duration::from_secs(60));
    let expiry = chrono::Duration::from_std(IN_PROGRESS_EXPIRY).expect("expiry");
    let second = chrono::Duration::seconds(1);
    // Far from the wall clock, and not on a whole second.
    let t =
        Utc.with_ymd_and_hms(2031, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::milliseconds(700);
    let store = &f.idempotency;
    let k3 = api_key("k3");
    let k4 = api_key("k4");
    assert_eq!(
        store.claim(&k3, "fp", t).await.expect("claim"),
        Claim::Acquired
    );
    assert_eq!(
        store.claim(&k3, "fp", t + second).await.expect("claim"),
        Claim::InProgress,
        "held at T+1s"
    );
    assert_eq!(
        store.claim(&k3, "fp", t + expiry).await.expect("claim"),
        Claim::InProgress,
        "held at T+expiry"
    );
    assert_eq!(
        store
            .claim(&k3, "fp", t + expiry + second)
            .await
            .expect("claim"),
        Claim::Acquired,
        "taken over at T+expiry+1s"
    );
    // The new claim holds from its own time.
    let t2 = t + expiry + second;
    assert_eq!(
        store.claim(&k3, "fp", t2 + second).await.expect("claim"),
        Claim::InProgress
    );
    assert_eq!(
        store.claim(&k3, "other", t2 + second).await.expect("claim"),
        Claim::Mismatch
    );
    // An abandoned claim is free to any request once expired, whatever its fingerprint.
    assert_eq!(
        store
            .claim(&k3, "other", t2 + expiry + second)
            .await
            .expect("claim"),
        Claim::Acquired
    );
    // A claim at the wall clock's time is not expired by it: it holds against its own clock.
    let now = Utc::now();
    assert_eq!(
        store.claim(&k4, "fp", now).await.expect("claim"),
        Claim::Acquired
    );
    assert_eq!(
        store.claim(&k4, "fp", now + expiry).await.expect("claim"),
        Claim::InProgress
    );
}

pub async fn a_response_saved_without_events_is_replayed(f: Fixture) {
    let now = Utc::now();
    let k2 = api_key("k2");
    assert_eq!(
        f.idempotency.claim(&k2, "fp", now).await.expect("claim"),
        Claim::Acquired
    );
    f.idempotency
        .complete(IdempotencyRecord {
            key: k2.clone(),
            fingerprint: "fp".into(),
            response: saved("no change"),
            expires_at: now + chrono::Duration::hours(1),
        })
        .await
        .expect("complete");
    assert_eq!(
        f.idempotency.claim(&k2, "fp", now).await.expect("claim"),
        Claim::Replay(saved("no change"))
    );
}

/// One store keeps the API's keys and the handlers' claims: a client's key spelled like a
/// handler's claim, or sent by another actor, is another key.
pub async fn ledger_namespaces_and_caller_scopes_never_collide(f: Fixture) {
    let now = Utc::now();
    let store = &f.idempotency;
    let event = uuid::Uuid::now_v7();
    let handler = LedgerKey::handler("completed", event);
    let spelled = IdempotencyKey::parse(&format!("handled:completed:{event}")).expect("key");
    let anonymous = LedgerKey::api(None, &spelled);
    let alice = LedgerKey::api(Some("alice"), &spelled);
    let bob = LedgerKey::api(Some("bob"), &spelled);
    for key in [&anonymous, &alice, &bob] {
        assert_eq!(
            store.claim(key, "client", now).await.expect("claim"),
            Claim::Acquired,
            "{key}"
        );
    }
    store
        .complete(IdempotencyRecord {
            key: anonymous.clone(),
            fingerprint: "client".into(),
            response: saved("client's"),
            expires_at: now + chrono::Duration::hours(1),
        })
        .await
        .expect("complete");
    assert_eq!(
        store
            .claim(&handler, &event.to_string(), now)
            .await
            .expect("claim"),
        Claim::Acquired,
        "the client's record does not stand in the handler's way"
    );
    store
        .complete(IdempotencyRecord {
            key: handler.clone(),
            fingerprint: event.to_string(),
            response: saved("handler's"),
            expires_at: now + chrono::Duration::hours(1),
        })
        .await
        .expect("complete");
    assert_eq!(
        store
            .claim(&handler, &event.to_string(), now)
            .await
            .expect("claim"),
        Claim::Replay(saved("handler's"))
    );
    assert_eq!(
        store.claim(&anonymous, "client", now).await.expect("claim"),
        Claim::Replay(saved("client's"))
    );
    // Alice's claim is still in progress, whatever the others did with the same text.
    assert_eq!(
        store.claim(&alice, "client", now).await.expect("claim"),
        Claim::InProgress
    );
    store.release(&bob).await.expect("release");
    assert_eq!(
        store.claim(&alice, "other", now).await.expect("claim"),
        Claim::Mismatch
    );
}

pub async fn the_change_feed_delivers_every_event_in_order_once_checkpointed(f: Fixture) {
    for i in 0..5 {
        placed(&f, &format!("ORD-G-{i}")).await;
    }
    let id = oid("ORD-G-0");
    let start = next_append(&f, &id, Command::Start).await;
    f.events.append(start).await.expect("appends");
    let wait = std::time::Duration::from_secs(5);
    let mut seen: Vec<Recorded> = Vec::new();
    let first = f.feed.next_batch(4, wait).await.expect("batch");
    assert_eq!(first.len(), 4, "honours the batch size");
    // Not checkpointed: the same records come again.
    let again = f.feed.next_batch(4, wait).await.expect("batch");
    assert_eq!(again, first);
    loop {
        let batch = f
            .feed
            .next_batch(4, std::time::Duration::from_millis(50))
            .await
            .expect("batch");
        let Some(last) = batch.last().map(|c| c.at.clone()) else {
            break;
        };
        seen.extend(batch.into_iter().map(|c| c.recorded));
        f.feed.checkpoint(&last).await.expect("checkpoint");
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(f.feed.lag().await.expect("lag"), 0);
    let g0: Vec<u64> = seen
        .iter()
        .filter(|r| r.envelope.order_id == id)
        .map(|r| r.envelope.version)
        .collect();
    assert_eq!(g0, vec![1, 2], "an order's events arrive in version order");
    assert_eq!(seen.last().map(|r| r.order.status), Some(Status::Inprocess));
}

fn order_at(f_id: &str, version: u64, status: Status, created_second: u32) -> Order {
    let t = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, created_second)
        .single()
        .expect("date");
    Order {
        order_id: oid(f_id),
        status,
        version,
        description: Description::parse(&format!("v{version}")).expect("valid"),
        register_date: t,
        delivery_date: None,
        customer_id: None,
        reason_for_cancellation: None,
        created_at: t,
        updated_at: t,
    }
}

pub async fn a_parked_record_is_listed_counted_read_back_from_the_feed_and_removed(f: Fixture) {
    placed(&f, "ORD-P-0").await;
    placed(&f, "ORD-P-1").await;
    let wait = Duration::from_secs(5);
    let batch = f.feed.next_batch(1, wait).await.expect("batch");
    let change = batch.first().expect("a change").clone();
    assert_eq!(f.parked.count().await.expect("count"), 0);
    f.parked
        .park(&change.at, Some(&change.recorded), 3, "boom")
        .await
        .expect("parks");
    f.feed.checkpoint(&change.at).await.expect("checkpoint");
    let listed = f.parked.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let parked = &listed[0];
    let envelope = &change.recorded.envelope;
    assert_eq!(parked.order_id.as_deref(), Some(envelope.order_id.as_str()));
    assert_eq!(parked.version, Some(envelope.version));
    assert_eq!(parked.event_id, Some(envelope.event_id.to_string()));
    assert_eq!(parked.attempts, 3);
    assert!(parked.error.contains("boom"), "{parked:?}");
    // Listing leaves it parked; the record comes back from the feed itself.
    assert_eq!(f.parked.count().await.expect("count"), 1);
    assert_eq!(
        f.parked.records(parked).await.expect("reads back"),
        vec![change.recorded.clone()]
    );
    let next = f.feed.next_batch(1, wait).await.expect("batch");
    assert_ne!(
        next.first().map(|c| &c.at),
        Some(&change.at),
        "the feed moved on"
    );
    assert!(f.parked.remove(parked).await.expect("removes"));
    assert_eq!(f.parked.count().await.expect("count"), 0);
    assert!(f.parked.list().await.expect("list").is_empty());
}

pub async fn the_read_model_never_moves_an_order_back_a_version(f: Fixture) {
    let rm = &f.read_model;
    rm.apply(&[order_at("ORD-H", 2, Status::Inprocess, 1)])
        .await
        .expect("apply");
    rm.apply(&[order_at("ORD-H", 1, Status::Received, 1)])
        .await
        .expect("apply");
    rm.apply(&[order_at("ORD-H", 2, Status::Inprocess, 1)])
        .await
        .expect("apply twice");
    let got = rm.get(&oid("ORD-H")).await.expect("get").expect("exists");
    assert_eq!((got.version, got.status), (2, Status::Inprocess));
    rm.apply(&[order_at("ORD-H", 3, Status::Completed, 1)])
        .await
        .expect("apply");
    assert_eq!(
        rm.get(&oid("ORD-H")).await.expect("get").map(|o| o.version),
        Some(3)
    );
}

pub async fn the_read_model_lists_by_status_in_creation_order_across_pages(f: Fixture) {
    let rm = &f.read_model;
    let mut orders = Vec::new();
    for i in 0..7u32 {
        let status = if i % 2 == 0 {
            Status::Received
        } else {
            Status::Canceled
        };
        orders.push(order_at(&format!("ORD-L-{i}"), 1, status, i));
    }
    rm.apply(&orders).await.expect("apply");
    let mut after = None;
    let mut ids = Vec::new();
    loop {
        let page = rm
            .list(&ListQuery {
                status: Some(Status::Received),
                limit: 2,
                after,
                newest_first: false,
            })
            .await
            .expect("list");
        assert!(page.items.len() <= 2);
        ids.extend(page.items.iter().map(|o| o.order_id.to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, vec!["ORD-L-0", "ORD-L-2", "ORD-L-4", "ORD-L-6"]);
    let all = rm
        .list(&ListQuery {
            status: None,
            limit: 100,
            after: None,
            newest_first: false,
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), 7);
    assert!(all.next.is_none());
    // Every status, page by page: one creation order across the statuses.
    let mut after = None;
    let mut ids = Vec::new();
    loop {
        let page = rm
            .list(&ListQuery {
                status: None,
                limit: 3,
                after,
                newest_first: false,
            })
            .await
            .expect("list");
        assert!(page.items.len() <= 3);
        ids.extend(page.items.iter().map(|o| o.order_id.to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        ids,
        (0..7).map(|i| format!("ORD-L-{i}")).collect::<Vec<_>>()
    );
}

pub async fn the_read_model_lists_newest_first_across_pages_and_counts_by_status(f: Fixture) {
    let rm = &f.read_model;
    let empty = rm.count_by_status().await.expect("counts");
    assert_eq!(empty, Status::ALL.map(|s| (s, 0)).to_vec());
    let mut orders = Vec::new();
    for i in 0..7u32 {
        let status = match i % 3 {
            0 => Status::Received,
            1 => Status::Completed,
            _ => Status::Canceled,
        };
        orders.push(order_at(&format!("ORD-N-{i}"), 1, status, i));
    }
    rm.apply(&orders).await.expect("apply");
    // A later version of one order moves it to another status: counted once, there.
    rm.apply(&[order_at("ORD-N-0", 2, Status::Inprocess, 0)])
        .await
        .expect("apply");
    assert_eq!(
        rm.count_by_status().await.expect("counts"),
        vec![
            (Status::Received, 2),
            (Status::Inprocess, 1),
            (Status::Completed, 2),
            (Status::Canceled, 2),
        ]
    );
    for (status, limit, expected) in [
        (None, 3, vec![6, 5, 4, 3, 2, 1, 0]),
        (Some(Status::Completed), 1, vec![4, 1]),
    ] {
        let mut after = None;
        let mut ids = Vec::new();
        loop {
            let page = rm
                .list(&ListQuery {
                    status,
                    limit,
                    after,
                    newest_first: true,
                })
                .await
                .expect("list");
            assert!(page.items.len() <= limit);
            ids.extend(page.items.iter().map(|o| o.order_id.to_string()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = expected.iter().map(|i| format!("ORD-N-{i}")).collect();
        assert_eq!(ids, expected, "{status:?}");
    }
}

/// The bus entry the projector publishes for `recorded`.
fn bus_entry(source: &str, recorded: &Recorded) -> BusEntry {
    let detail = EventDetail {
        event: recorded.envelope.clone(),
        order: recorded.order.clone(),
        replayed: false,
    };
    BusEntry {
        source: source.into(),
        detail_type: recorded.envelope.event.type_name().into(),
        detail: serde_json::to_string(&detail).expect("detail JSON"),
        time: recorded.envelope.occurred_at,
        trace_header: None,
    }
}

/// The recorded events of placing `id` and then running `commands` on it.
async fn lifecycle(f: &Fixture, id: &str, commands: Vec<Command>) -> Vec<Recorded> {
    let id = placed(f, id).await;
    for command in commands {
        let append = next_append(f, &id, command).await;
        f.events.append(append).await.expect("appends");
    }
    let history = all_events(f, &id).await;
    let mut recorded = Vec::new();
    let mut state = None;
    for envelope in history {
        let order = events_schema::evolve(state.as_ref(), &envelope).expect("folds");
        state = Some(order.clone());
        recorded.push(Recorded { envelope, order });
    }
    recorded
}

/// Receives from `queue` until `want` messages came or `within` passed.
async fn receive_all(
    f: &Fixture,
    queue: &str,
    want: usize,
    visibility: Duration,
    within: Duration,
) -> Vec<QueueMessage> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let batch = f
            .queues
            .receive(queue, 10, visibility, Duration::from_secs(1))
            .await
            .expect("receive");
        got.extend(batch);
    }
    got
}

fn queue_of(status: Status) -> String {
    route_table().route(status).expect("a route").queue.clone()
}

pub async fn publishing_routes_each_entry_to_its_status_queue_and_no_other(f: Fixture) {
    let placed = lifecycle(&f, "ORD-P-1", vec![]).await;
    let canceled = lifecycle(
        &f,
        "ORD-P-2",
        vec![Command::Cancel {
            reason: events_schema::Reason::parse("no longer needed").expect("valid"),
        }],
    )
    .await;
    let mut entries = vec![
        bus_entry(&f.source, &placed[0]),
        bus_entry(&f.source, &canceled[1]),
    ];
    // Another system's event with the same shape matches no rule: the rules name the source.
    let mut foreign = bus_entry(&f.source, &placed[0]);
    foreign.source = "someone.else".into();
    entries.push(foreign);
    let failed = f.publisher.publish(&entries).await.expect("publish");
    assert!(failed.is_empty(), "failed entries: {failed:?}");

    let expect = [
        (Status::Received, Some(&placed[0])),
        (Status::Inprocess, None),
        (Status::Completed, None),
        (Status::Canceled, Some(&canceled[1])),
    ];
    for (status, recorded) in expect {
        let queue = queue_of(status);
        let got = match recorded {
            Some(_) => {
                receive_all(
                    &f,
                    &queue,
                    1,
                    Duration::from_secs(30),
                    Duration::from_secs(10),
                )
                .await
            }
            None => f
                .queues
                .receive(&queue, 10, Duration::from_secs(30), Duration::ZERO)
                .await
                .expect("receive"),
        };
        let Some(recorded) = recorded else {
            assert!(got.is_empty(), "{queue} got {got:?}");
            continue;
        };
        assert_eq!(got.len(), 1, "{queue} gets exactly its event");
        let event: serde_json::Value = serde_json::from_str(&got[0].body).expect("JSON body");
        assert_eq!(event["source"], f.source.as_str());
        assert_eq!(event["detail-type"], recorded.envelope.event.type_name());
        let detail: EventDetail =
            serde_json::from_value(event["detail"].clone()).expect("an event detail");
        assert_eq!(detail.event, recorded.envelope);
        assert_eq!(detail.order.status, status);
    }
}

pub async fn queues_hide_received_messages_until_deleted_or_their_visibility_ends(f: Fixture) {
    let queue = queue_of(Status::Inprocess);
    let bodies: Vec<String> = (0..3).map(|i| format!("message {i}")).collect();
    f.queues.send(&queue, &bodies).await.expect("send");
    let visibility = Duration::from_secs(2);
    let first = receive_all(&f, &queue, 3, visibility, Duration::from_secs(10)).await;
    let mut got: Vec<&str> = first.iter().map(|m| m.body.as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, ["message 0", "message 1", "message 2"]);
    assert!(first.iter().all(|m| m.receive_count == 1));
    assert!(
        f.queues
            .receive(&queue, 10, visibility, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty(),
        "received messages are hidden"
    );
    let stats = f.queues.stats(&queue).await.expect("stats");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_letters),
        (0, 3, 0)
    );

    let deleted = first.iter().find(|m| m.body == "message 1").expect("there");
    f.queues
        .delete(&queue, std::slice::from_ref(&deleted.receipt_handle))
        .await
        .expect("delete");
    tokio::time::sleep(visibility + Duration::from_millis(500)).await;
    let again = receive_all(&f, &queue, 2, visibility, Duration::from_secs(10)).await;
    let mut got: Vec<&str> = again.iter().map(|m| m.body.as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, ["message 0", "message 2"], "the deleted one is gone");
    assert!(again.iter().all(|m| m.receive_count == 2), "{again:?}");
    let handles: Vec<String> = again.iter().map(|m| m.receipt_handle.clone()).collect();
    f.queues.delete(&queue, &handles).await.expect("delete");
    // A stale receipt (its message received again since, or deleted) deletes nothing.
    f.queues
        .delete(&queue, std::slice::from_ref(&deleted.receipt_handle))
        .await
        .expect("a stale receipt is no error");
    let stats = f.queues.stats(&queue).await.expect("stats");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_letters),
        (0, 0, 0)
    );
}

pub async fn a_message_received_max_receive_count_times_is_dead_lettered_and_redriven(f: Fixture) {
    let route = route_table().route(Status::Completed).expect("a route");
    let queue = route.queue.clone();
    f.queues
        .send(&queue, &["poison".to_owned()])
        .await
        .expect("send");
    for attempt in 1..=route.max_receive_count {
        // A zero visibility timeout: the failed message is back at once.
        let got = receive_all(&f, &queue, 1, Duration::ZERO, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "receive {attempt}");
        assert_eq!(
            (got[0].body.as_str(), got[0].receive_count),
            ("poison", attempt)
        );
    }
    let after = f
        .queues
        .receive(&queue, 10, Duration::ZERO, Duration::from_secs(1))
        .await
        .expect("receive");
    assert!(
        after.is_empty(),
        "moved to the dead-letter queue: {after:?}"
    );
    let stats = f.queues.stats(&queue).await.expect("stats");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_letters),
        (0, 0, 1)
    );
    let dead = f.queues.dead_letters(&queue).await.expect("dead letters");
    assert_eq!(
        dead.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["poison"]
    );
    assert_eq!(
        f.queues.stats(&queue).await.expect("stats").dead_letters,
        1,
        "looking does not take"
    );

    assert_eq!(f.queues.redrive(&queue).await.expect("redrive"), 1);
    assert!(
        f.queues
            .dead_letters(&queue)
            .await
            .expect("dead letters")
            .is_empty()
    );
    let back = receive_all(
        &f,
        &queue,
        1,
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].body.as_str(), back[0].receive_count),
        ("poison", 1)
    );
    let stats = f.queues.stats(&queue).await.expect("stats");
    assert_eq!((stats.in_flight, stats.dead_letters), (1, 0));
}

pub async fn the_intake_queue_takes_messages_and_dead_letters_at_once_with_the_reason(f: Fixture) {
    let intake = &route_table().intake;
    let queue = intake.queue.clone();
    f.queues
        .send(&queue, &[r#"{"channel":"atm"}"#.to_owned()])
        .await
        .expect("send");
    let got = receive_all(
        &f,
        &queue,
        1,
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(got.len(), 1);
    f.queues
        .dead_letter(
            &queue,
            &got[0].body,
            "400 Bad Request: Missing required field: requestId",
        )
        .await
        .expect("dead-letter at once");
    f.queues
        .delete(&queue, &[got[0].receipt_handle.clone()])
        .await
        .expect("delete");
    let dead = f.queues.dead_letters(&queue).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, r#"{"channel":"atm"}"#);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("400 Bad Request: Missing required field: requestId")
    );
    let stats = f.queues.stats(&queue).await.expect("stats");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_letters),
        (0, 0, 1)
    );
}

pub async fn accepted_intake_messages_are_archived_apart_from_the_orders_documents(f: Fixture) {
    let atm = events_schema::Channel::parse("atm").expect("channel");
    let web = events_schema::Channel::parse("web").expect("channel");
    let request = events_schema::RequestId::parse("T17-000042").expect("request id");
    let message = r#"{"channel":"atm","requestId":"T17-000042","command":"place","body":{"descripcion":"Caja ñ"}}"#;
    assert_eq!(
        f.intake_archive
            .archived(&atm, &request)
            .await
            .expect("read"),
        None
    );
    f.intake_archive
        .archive(&atm, &request, message)
        .await
        .expect("archive");
    // A redelivery archives the same bytes again.
    f.intake_archive
        .archive(&atm, &request, message)
        .await
        .expect("archive again");
    assert_eq!(
        f.intake_archive
            .archived(&atm, &request)
            .await
            .expect("read")
            .as_deref(),
        Some(message)
    );
    assert_eq!(
        f.intake_archive
            .archived(&web, &request)
            .await
            .expect("read"),
        None,
        "the same request id on another channel is another request"
    );
    // No order's documents include it, whatever the order is called.
    for id in ["intake", "atm", "T17-000042"] {
        assert!(
            f.documents.list(&oid(id)).await.expect("list").is_empty(),
            "{id}"
        );
    }
}

pub async fn a_dead_letter_says_why_and_is_redriven_alone(f: Fixture) {
    let route = route_table().route(Status::Canceled).expect("a route");
    let queue = route.queue.clone();
    f.queues
        .dead_letter(&queue, "{not json", "the message is not JSON")
        .await
        .expect("dead-letter at once");
    f.queues
        .send(&queue, &["fails".to_owned()])
        .await
        .expect("send");
    for attempt in 1..=route.max_receive_count {
        let got = receive_all(&f, &queue, 1, Duration::ZERO, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "receive {attempt}");
        f.queues
            .record_failure(
                &queue,
                &got[0].receipt_handle,
                &format!("failure {attempt}"),
            )
            .await
            .expect("record the failure");
    }
    assert!(
        f.queues
            .receive(&queue, 10, Duration::ZERO, Duration::from_secs(1))
            .await
            .expect("receive")
            .is_empty(),
        "moved to the dead-letter queue"
    );
    let dead = f.queues.dead_letters(&queue).await.expect("dead letters");
    let mut bodies: Vec<&str> = dead.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["fails", "{not json"]);
    let invalid = dead.iter().find(|m| m.body == "{not json").expect("listed");
    assert_eq!(
        invalid.last_error.as_deref(),
        Some("the message is not JSON")
    );
    let failed = dead.iter().find(|m| m.body == "fails").expect("listed");
    // The embedded queues keep the handler's last error; SQS keeps none (the log has it).
    assert!(
        matches!(failed.last_error.as_deref(), None | Some("failure 5")),
        "{failed:?}"
    );
    assert_eq!(f.queues.stats(&queue).await.expect("stats").dead_letters, 2);

    assert!(
        f.queues
            .redrive_message(&queue, &failed.message_id)
            .await
            .expect("redrive one")
    );
    assert!(
        !f.queues
            .redrive_message(&queue, &failed.message_id)
            .await
            .expect("redrive one again"),
        "it is no longer a dead letter"
    );
    let left = f.queues.dead_letters(&queue).await.expect("dead letters");
    assert_eq!(
        left.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["{not json"],
        "the other dead letter stays"
    );
    let back = receive_all(
        &f,
        &queue,
        1,
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (back[0].body.as_str(), back[0].receive_count),
        ("fails", 1),
        "back with a fresh start"
    );
    assert_eq!(f.queues.stats(&queue).await.expect("stats").dead_letters, 1);
}

fn document(name: &str, content_type: &str, body: &str) -> Document {
    Document {
        name: name.into(),
        content_type: content_type.into(),
        body: body.as_bytes().to_vec(),
    }
}

pub async fn documents_are_kept_per_order_listed_by_name_and_read_back(f: Fixture) {
    let (a, b) = (oid("ORD-DOC-1"), oid("ORD-DOC-2"));
    let invoice = document("invoice.json", "application/json", r#"{"total":1}"#);
    let notice = document("notice.txt", "text/plain; charset=utf-8", "started");
    f.documents.put(&a, &notice).await.expect("put");
    f.documents.put(&a, &invoice).await.expect("put");
    // Rewriting a document (a handler's retry) leaves one document.
    f.documents.put(&a, &invoice).await.expect("put again");
    f.documents
        .put(&b, &document("ack.json", "application/json", "{}"))
        .await
        .expect("put");
    let listed = f.documents.list(&a).await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|d| (d.name.as_str(), d.size))
            .collect::<Vec<_>>(),
        [("invoice.json", 11), ("notice.txt", 7)]
    );
    assert_eq!(
        f.documents.get(&a, "invoice.json").await.expect("get"),
        Some(invoice)
    );
    assert_eq!(
        f.documents.get(&a, "notice.txt").await.expect("get"),
        Some(notice)
    );
    assert_eq!(f.documents.get(&a, "ack.json").await.expect("get"), None);
    assert_eq!(f.documents.get(&a, "../ack.json").await.expect("get"), None);
    assert!(
        f.documents
            .list(&oid("ORD-DOC-3"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        f.documents
            .put(&a, &document("../escape.json", "application/json", "{}"))
            .await
            .is_err(),
        "a name is one plain file name"
    );
    // Ids that look like parts of paths are still one order each (`.` and `..` themselves
    // are not order ids).
    for id in ["...", "..x", "a:b"] {
        let doc = document("n.json", "application/json", id);
        f.documents.put(&oid(id), &doc).await.expect("put");
    }
    for id in ["...", "..x", "a:b"] {
        let got = f.documents.get(&oid(id), "n.json").await.expect("get");
        assert_eq!(got.map(|d| d.body), Some(id.as_bytes().to_vec()), "{id}");
        assert_eq!(f.documents.list(&oid(id)).await.expect("list").len(), 1);
    }
}

/// A link is the store's own way to hand a document out (S3: a presigned GET with the
/// expiry asked for); a store without one, or without the document, answers `None` and the
/// API serves the document from `get` (or answers 404).
pub async fn a_document_link_names_the_document_and_its_expiry_or_there_is_none(f: Fixture) {
    let order = oid("ORD-LINK-1");
    let pdf = document("000003-invoice.pdf", "application/pdf", "%PDF-1.7 …");
    f.documents.put(&order, &pdf).await.expect("put");
    let expiry = Duration::from_secs(2);
    if let Some(url) = f
        .documents
        .link(&order, &pdf.name, expiry)
        .await
        .expect("link")
    {
        assert!(
            url.contains("/orders/ORD-LINK-1/000003-invoice.pdf?"),
            "{url}"
        );
        for part in ["X-Amz-Expires=2&", "X-Amz-Signature="] {
            assert!(url.contains(part), "{part} not in {url}");
        }
    } else {
        // No link: the API serves the bytes, so `get` must have them.
        assert_eq!(
            f.documents.get(&order, &pdf.name).await.expect("get"),
            Some(pdf.clone())
        );
    }
    for name in ["000009-invoice.pdf", "../000003-invoice.pdf"] {
        assert_eq!(
            f.documents.link(&order, name, expiry).await.expect("link"),
            None,
            "{name}"
        );
    }
}

macro_rules! contract_suite {
    ($backend:ident, $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::backends::$backend::fixture().await).await;
                }
            )*
        }
    };
}

mod backends {
    pub mod embedded {
        use std::sync::Arc;

        use backend::embedded::Embedded;

        pub async fn fixture() -> super::super::Fixture {
            let dir = tempfile::tempdir().expect("temp dir");
            let routes = events_schema::route_table();
            let e = Embedded::open(dir.path(), routes).expect("opens");
            super::super::Fixture {
                events: e.events.clone(),
                idempotency: e.events.clone(),
                read_model: e.read_model.clone(),
                feed: e.feed.clone(),
                publisher: e.bus.clone(),
                queues: e.queues.clone(),
                documents: e.documents.clone(),
                intake_archive: e.documents.clone(),
                parked: e.parked.clone(),
                source: routes.source.clone(),
                _guard: Box::new((Arc::new(e), dir)),
            }
        }
    }

    pub mod aws {
        pub async fn fixture() -> super::super::Fixture {
            let aws = super::super::support::moto::aws().await;
            let ports = aws.ports();
            super::super::Fixture {
                events: ports.events,
                idempotency: ports.idempotency,
                read_model: ports.read_model,
                feed: ports.feed,
                publisher: ports.publisher,
                queues: ports.queues,
                documents: ports.documents,
                intake_archive: aws.documents.clone(),
                parked: ports.parked,
                source: aws.config.event_source.clone(),
                _guard: Box::new(()),
            }
        }
    }
}

/// The one list of contract tests, instantiated once per backend.
macro_rules! every_backend {
    ($($backend:ident),*) => {$(
        contract_suite!(
            $backend,
            append_then_head_and_history_return_what_was_written,
            events_are_read_a_page_at_a_time_each_once_in_version_order,
            the_state_at_a_version_or_a_time_is_the_one_stored_with_that_event,
            an_order_at_the_event_limit_refuses_revisions_and_can_still_finish,
            an_append_at_a_stale_version_is_a_conflict_and_writes_nothing,
            placing_an_existing_order_again_conflicts,
            of_many_concurrent_appends_at_one_version_exactly_one_wins,
            concurrent_appends_to_different_orders_all_commit,
            idempotency_keys_claim_replay_mismatch_and_release,
            an_abandoned_claim_is_taken_over_after_its_expiry_by_the_given_clock,
            a_response_saved_without_events_is_replayed,
            ledger_namespaces_and_caller_scopes_never_collide,
            the_change_feed_delivers_every_event_in_order_once_checkpointed,
            a_parked_record_is_listed_counted_read_back_from_the_feed_and_removed,
            the_read_model_never_moves_an_order_back_a_version,
            the_read_model_lists_by_status_in_creation_order_across_pages,
            the_read_model_lists_newest_first_across_pages_and_counts_by_status,
            publishing_routes_each_entry_to_its_status_queue_and_no_other,
            queues_hide_received_messages_until_deleted_or_their_visibility_ends,
            a_message_received_max_receive_count_times_is_dead_lettered_and_redriven,
            a_dead_letter_says_why_and_is_redriven_alone,
            the_intake_queue_takes_messages_and_dead_letters_at_once_with_the_reason,
            accepted_intake_messages_are_archived_apart_from_the_orders_documents,
            documents_are_kept_per_order_listed_by_name_and_read_back,
            a_document_link_names_the_document_and_its_expiry_or_there_is_none,
        );
    )*};
}

every_backend!(embedded, aws);
