//! The replay-and-audit ports on both backends: whole histories in pages, events in a time
//! window, the read model beside the events, and a rebuild that is swapped in atomically
//! without losing what a running projector wrote meanwhile.
//!
//! The checks are functions over [`Fixture`] (the ports as trait objects, plus what only a
//! test does: tamper with a stored event, hook into a rebuild between fold and swap), and
//! `every_backend!` runs each on the embedded backend (a temporary directory) and on the
//! AWS backend (a moto server started from `.venv`, fresh tables per test; without moto
//! the AWS tests fail and say how to get it). A few checks of one backend's own mechanics
//! (SQLite index names, the DynamoDB live-table pointer) follow the shared suite.

use crate::support;
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_sdk_dynamodb::types::AttributeValue;
use backend::{
    Append, BeforeSwap, EventArchive, EventStore, EventWindow, HistoryCursor, Projected,
    ProjectedOrder, ProjectionRebuild, ProjectionScan, RawEvent, ReadModel, RebuildReport,
    StoreError,
    aws::{Aws, AwsConfig, DynamoRebuild, live_table::POINTER_PK},
    embedded::{DataDir, Embedded, SqliteArchive, SqliteChangeFeed, SqliteRebuild},
    fold_raw,
};
use chrono::{DateTime, TimeZone, Utc};
use events_schema::{
    Command, Description, EventContext, Metadata, Order, OrderId, PlaceOrder, Reason, Recorded,
    Status, decide, record, route_table,
};

/// How long the AWS fixtures' processes cache the live-table pointer: short, so that a
/// rebuild's wait for it stays short too.
const POINTER_CACHE: Duration = Duration::from_millis(300);

pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub read_model: Arc<dyn ReadModel>,
    pub archive: Arc<dyn EventArchive>,
    pub scan: Arc<dyn ProjectionScan>,
    pub rebuild: Arc<dyn ProjectionRebuild>,
    backend: Backend,
}

enum Backend {
    Embedded {
        embedded: Arc<Embedded>,
        rebuilder: Arc<SqliteRebuild>,
        dir: tempfile::TempDir,
    },
    Aws {
        aws: Arc<Aws>,
        rebuilder: Arc<DynamoRebuild>,
    },
}

fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = Arc::new(Embedded::open(dir.path(), route_table()).expect("opens"));
    let archive = Arc::new(SqliteArchive::open(dir.path()).expect("opens the archive"));
    let rebuilder = Arc::new(SqliteRebuild::open(dir.path()).expect("opens the rebuild"));
    Fixture {
        events: embedded.events.clone(),
        read_model: embedded.read_model.clone(),
        archive: archive.clone(),
        scan: archive,
        rebuild: rebuilder.clone(),
        backend: Backend::Embedded {
            embedded,
            rebuilder,
            dir,
        },
    }
}

fn aws_config() -> AwsConfig {
    AwsConfig {
        read_model_cache: POINTER_CACHE,
        ..AwsConfig::prefixed(&support::moto::fresh_prefix())
    }
}

async fn aws() -> Fixture {
    aws_fixture(Arc::new(support::moto::aws_with(aws_config()).await))
}

fn aws_fixture(aws: Arc<Aws>) -> Fixture {
    let archive = aws.archive();
    let rebuilder = Arc::new(aws.rebuilder());
    Fixture {
        events: aws.events.clone(),
        read_model: aws.read_model.clone(),
        archive: archive.clone(),
        scan: archive,
        rebuild: rebuilder.clone(),
        backend: Backend::Aws { aws, rebuilder },
    }
}

impl Fixture {
    async fn rebuild_with_hook(&self, hook: BeforeSwap) -> Result<RebuildReport, StoreError> {
        match &self.backend {
            Backend::Embedded { rebuilder, .. } => {
                rebuilder.rebuild_with_hook(Arc::new(|_| {}), hook).await
            }
            Backend::Aws { rebuilder, .. } => {
                rebuilder.rebuild_with_hook(Arc::new(|_| {}), hook).await
            }
        }
    }

    /// Whether a rebuild folds in, at its swap, events the projector has not applied yet
    /// (embedded: every committed event; AWS: only what the projector wrote, the rest it
    /// writes to the new table later).
    fn folds_unprojected_events_at_swap(&self) -> bool {
        matches!(self.backend, Backend::Embedded { .. })
    }

    /// Changes one stored event behind the event store's back: the string member at `path`
    /// (e.g. `["data", "description"]`) becomes `value`.
    async fn tamper(&self, order_id: &str, version: u64, path: &[&str], value: &str) {
        match &self.backend {
            Backend::Embedded { dir, .. } => {
                let conn = sqlite(&DataDir::new(dir.path()).database());
                let json_path = format!("$.{}", path.join("."));
                let rows = conn
                    .execute(
                        "UPDATE events SET envelope = json_set(envelope, ?3, ?4)
                         WHERE order_id = ?1 AND version = ?2",
                        rusqlite::params![order_id, version, json_path, value],
                    )
                    .expect("changes the event");
                assert_eq!(rows, 1);
            }
            Backend::Aws { aws, .. } => {
                let names: HashMap<String, String> = path
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (format!("#p{i}"), (*p).to_owned()))
                    .collect();
                let target = (0..path.len())
                    .map(|i| format!("#p{i}"))
                    .collect::<Vec<_>>()
                    .join(".");
                aws.clients
                    .dynamodb
                    .update_item()
                    .table_name(&aws.config.events_table)
                    .key("orderId", AttributeValue::S(order_id.into()))
                    .key("version", AttributeValue::N(version.to_string()))
                    .update_expression(format!("SET {target} = :v"))
                    .condition_expression("attribute_exists(orderId)")
                    .set_expression_attribute_names(Some(names))
                    .expression_attribute_values(":v", AttributeValue::S(value.into()))
                    .send()
                    .await
                    .expect("changes the event");
            }
        }
    }

    /// Marks events through global position `through` as projected, where the backend keeps
    /// such a checkpoint (embedded); a no-op on AWS, whose stream positions are not event
    /// positions.
    async fn checkpoint(&self, through: u64) {
        if let Backend::Embedded { embedded, .. } = &self.backend {
            backend::ChangeFeed::checkpoint(embedded.feed.as_ref(), &SqliteChangeFeed::at(through))
                .await
                .expect("checkpoints");
        }
    }
}

fn oid(s: &str) -> OrderId {
    OrderId::parse(s).expect("valid id")
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0)
        .single()
        .expect("date")
        + chrono::Duration::minutes(minute.into())
}

fn place(description: &str) -> Command {
    Command::Place(PlaceOrder {
        description: Description::parse(description).expect("valid"),
        register_date: at(0),
        delivery_date: None,
        customer_id: None,
    })
}

/// Decides `command` on the order's head, records it at `minute` and appends it; returns
/// what was recorded.
async fn run(store: &dyn EventStore, id: &OrderId, command: Command, minute: u32) -> Vec<Recorded> {
    let head = store.head(id).await.expect("head");
    let events = decide(id, head.as_ref().map(|h| &h.order), &command).expect("accepted");
    let ctx = EventContext {
        occurred_at: at(minute),
        metadata: Metadata {
            correlation_id: "audit-test".into(),
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
    store
        .append(Append {
            order_id: id.clone(),
            expected_version: head.map_or(0, |h| h.order.version),
            events: recorded.clone(),
            idempotency: None,
        })
        .await
        .expect("appends");
    recorded
}

/// `count` orders `ORD-00`, `ORD-01`, ..., order `i` taken `i % 4` steps into a lifecycle
/// (placed; started; completed or canceled). Returns every order's latest state.
async fn fill(f: &Fixture, count: usize) -> Vec<Order> {
    let mut latest = Vec::new();
    for i in 0..count {
        let id = oid(&format!("ORD-{i:02}"));
        let minute = i as u32 * 10;
        let mut last = run(f.events.as_ref(), &id, place(&format!("order {i}")), minute).await;
        if i % 4 >= 1 {
            last = run(f.events.as_ref(), &id, Command::Start, minute + 1).await;
        }
        if i % 4 == 2 {
            last = run(f.events.as_ref(), &id, Command::Complete, minute + 2).await;
        }
        if i % 4 == 3 {
            let reason = Reason::parse("no longer needed").expect("valid");
            last = run(
                f.events.as_ref(),
                &id,
                Command::Cancel { reason },
                minute + 2,
            )
            .await;
        }
        latest.push(last.last().expect("an event").order.clone());
    }
    latest
}

/// What the projector does: upsert each state (embedded: then checkpoint the feed).
async fn project(f: &Fixture, states: &[Order], through: u64) {
    f.read_model.apply(states).await.expect("applies");
    f.checkpoint(through).await;
}

fn versions(events: &[RawEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

fn ids(rows: &[ProjectedOrder]) -> Vec<String> {
    let mut ids: Vec<String> = rows.iter().map(|r| r.order_id.clone()).collect();
    ids.sort();
    ids
}

/// Every read model row, through the whole-pass port, by order id.
async fn all_rows(f: &Fixture) -> Vec<ProjectedOrder> {
    let mut rows = Vec::new();
    let mut cursor = None;
    loop {
        let page = f.scan.rows(cursor.as_ref(), 2).await.expect("rows");
        assert!(page.rows.len() <= 2);
        rows.extend(page.rows);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    rows.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    rows
}

/// Every row, each as the order it holds (comparable across backends' JSON layouts).
async fn all_orders(f: &Fixture) -> Vec<Order> {
    all_rows(f)
        .await
        .iter()
        .map(|r| r.order().expect("a readable row"))
        .collect()
}

// ---- The suite, on both backends (trait objects only, plus the fixture's test seams) ----

pub async fn histories_come_whole_in_pages_each_order_once(f: &Fixture) {
    let states = fill(f, 6).await; // 1, 2, 3, 3, 1, 2 events
    project(f, &states, 12).await;
    let mut cursor: Option<HistoryCursor> = None;
    let mut seen = Vec::new();
    loop {
        let page = f
            .archive
            .histories(cursor.as_ref(), 3)
            .await
            .expect("a page");
        let events: usize = page.histories.iter().map(|h| h.events.len()).sum();
        assert!(
            events <= 3 || page.histories.len() == 1,
            "a page over its size holds one order: {page:?}"
        );
        if let backend::Coverage::Range { .. } = page.coverage {
            let ids: Vec<&str> = page.histories.iter().map(|h| h.order_id.as_str()).collect();
            assert!(ids.is_sorted(), "a page that covers a range is in id order");
        }
        for h in page.histories {
            assert_eq!(
                versions(&h.events),
                (1..=h.events.len() as u64).collect::<Vec<_>>(),
                "{} comes whole, in version order",
                h.order_id
            );
            assert!(h.events.iter().all(|e| e.order_id == h.order_id));
            seen.push((h.order_id, h.events.len()));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort();
    let expected: Vec<(String, usize)> = (0..6)
        .map(|i| (format!("ORD-{i:02}"), [1, 2, 3, 3][i % 4]))
        .collect();
    assert_eq!(seen, expected, "every order once");
    let size = f.archive.size().await.expect("size");
    assert_eq!((size.events, size.orders), (12, 6));
}

pub async fn a_page_longer_than_its_size_comes_whole_and_the_next_skips_it(f: &Fixture) {
    // One order of 3 events between two of 1: pages of 2 events cut inside it.
    let a = oid("ORD-A");
    run(f.events.as_ref(), &a, place("a"), 0).await;
    let b = oid("ORD-B");
    run(f.events.as_ref(), &b, place("b"), 1).await;
    run(f.events.as_ref(), &b, Command::Start, 2).await;
    run(f.events.as_ref(), &b, Command::Complete, 3).await;
    run(f.events.as_ref(), &oid("ORD-C"), place("c"), 4).await;
    let mut cursor: Option<HistoryCursor> = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = f
            .archive
            .histories(cursor.as_ref(), 2)
            .await
            .expect("a page");
        for h in &page.histories {
            seen.push((h.order_id.clone(), versions(&h.events)));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("ORD-A".into(), vec![1]),
            ("ORD-B".into(), vec![1, 2, 3]),
            ("ORD-C".into(), vec![1]),
        ]
    );
}

pub async fn a_raw_history_is_the_stored_json_of_the_envelopes(f: &Fixture) {
    let id = oid("ORD-RAW");
    let placed = run(f.events.as_ref(), &id, place("raw"), 0).await;
    let started = run(f.events.as_ref(), &id, Command::Start, 1).await;
    let raw = f.archive.history_raw(&id).await.expect("history");
    assert_eq!(versions(&raw), vec![1, 2]);
    for (stored, recorded) in raw.iter().zip(placed.iter().chain(&started)) {
        let envelope: serde_json::Value = serde_json::from_str(&stored.envelope).expect("JSON");
        assert_eq!(
            envelope,
            serde_json::to_value(&recorded.envelope).expect("JSON")
        );
        let state: Order = serde_json::from_str(&stored.order_state).expect("an order");
        assert_eq!(state, recorded.order);
        // As stored, the hash recomputes.
        assert!(events_schema::verify_chain(raw.iter().map(|e| e.envelope.as_str())).is_empty());
    }
    assert_eq!(fold_raw(&raw).expect("folds"), started[0].order);
    assert!(
        f.archive
            .history_raw(&oid("nobody"))
            .await
            .expect("history")
            .is_empty()
    );
}

pub async fn events_between_filter_by_time_order_and_status_and_page(f: &Fixture) {
    fill(f, 8).await; // order i's events at minutes 10i, 10i+1, 10i+2
    let window = |from, to, order: Option<&str>, status| EventWindow {
        from: at(from),
        to: at(to),
        order_id: order.map(oid),
        status,
    };
    // Storage order is the backend's own; each order's events must come in version order.
    let all = |w: EventWindow| async move {
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut cursor = None;
        loop {
            let page = f
                .archive
                .events_between(&w, cursor.as_ref(), 2)
                .await
                .expect("a page");
            assert!(page.events.len() <= 2);
            out.extend(page.events.into_iter().map(|e| (e.order_id, e.version)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for (i, (id, v)) in out.iter().enumerate() {
            assert!(
                !out[..i].iter().any(|(o, w)| o == id && w >= v),
                "{id} version {v} after a later one: {out:?}"
            );
        }
        out.sort();
        out
    };
    // [20, 32): orders 2 (3 events) and 3 (3 events); the end is exclusive.
    assert_eq!(
        all(window(20, 32, None, None)).await,
        vec![
            ("ORD-02".into(), 1),
            ("ORD-02".into(), 2),
            ("ORD-02".into(), 3),
            ("ORD-03".into(), 1),
            ("ORD-03".into(), 2),
        ]
    );
    assert_eq!(
        all(window(0, 1000, Some("ORD-03"), None)).await,
        vec![
            ("ORD-03".into(), 1),
            ("ORD-03".into(), 2),
            ("ORD-03".into(), 3)
        ]
    );
    assert_eq!(
        all(window(0, 1000, None, Some(Status::Canceled))).await,
        vec![("ORD-03".into(), 3), ("ORD-07".into(), 3)]
    );
    assert!(all(window(1000, 2000, None, None)).await.is_empty());
    // Within one second: times are compared exactly, whatever their text.
    let second = EventWindow {
        from: at(30),
        to: at(30) + chrono::Duration::milliseconds(1),
        order_id: None,
        status: None,
    };
    assert_eq!(all(second).await, vec![("ORD-03".into(), 1)]);
}

pub async fn read_model_rows_come_for_a_page_and_in_a_whole_pass(f: &Fixture) {
    let states = fill(f, 5).await;
    project(f, &states[..4], 0).await;
    let mut ghost = states[0].clone();
    // Between two orders with events, so that a range of ids can cover it.
    ghost.order_id = oid("ORD-01-GHOST");
    project(f, &[ghost], 0).await;
    let page = f.archive.histories(None, 1000).await.expect("a page");
    assert_eq!(page.histories.len(), 5);
    let rows = f.scan.rows_for(&page).await.expect("rows");
    let expected = match page.coverage {
        // A page that covers a range of ids also has the rows in it without events.
        backend::Coverage::Range { .. } => {
            vec!["ORD-00", "ORD-01", "ORD-01-GHOST", "ORD-02", "ORD-03"]
        }
        backend::Coverage::Orders => vec!["ORD-00", "ORD-01", "ORD-02", "ORD-03"],
    };
    assert_eq!(ids(&rows), expected);
    assert_eq!(
        ids(&all_rows(f).await),
        vec!["ORD-00", "ORD-01", "ORD-01-GHOST", "ORD-02", "ORD-03"]
    );
    let row = f
        .scan
        .get_projected("ORD-02")
        .await
        .expect("get")
        .expect("a row");
    assert_eq!(row.order(), Ok(states[2].clone()));
    assert!(f.scan.get_projected("nobody").await.expect("get").is_none());
}

pub async fn a_rebuild_equals_the_live_projection(f: &Fixture) {
    let states = fill(f, 12).await;
    project(f, &states, 0).await;
    let before = all_orders(f).await;
    let report = f.rebuild.rebuild(Arc::new(|_| {})).await.expect("rebuilds");
    assert_eq!((report.orders, report.events, report.changed), (12, 27, 0));
    assert!(report.unfoldable.is_empty());
    assert_eq!(all_orders(f).await, before);
    let listed = f
        .read_model
        .list(&backend::ListQuery {
            status: Some(Status::Completed),
            limit: 100,
            after: None,
            newest_first: false,
        })
        .await
        .expect("lists by status");
    assert_eq!(
        listed.items.len(),
        3,
        "the status index of the new projection"
    );
}

pub async fn a_rebuild_repairs_missing_stale_and_extra_rows(f: &Fixture) {
    let states = fill(f, 8).await;
    // The projector saw only some states, and one of them at an old version.
    let mut partial: Vec<Order> = states[..5].to_vec();
    partial[1].version = 1;
    partial[1].status = Status::Received;
    // And a row for an order that has no events.
    let mut ghost = states[0].clone();
    ghost.order_id = oid("ORD-GHOST");
    partial.push(ghost);
    project(f, &partial, 0).await;
    let report = f.rebuild.rebuild(Arc::new(|_| {})).await.expect("rebuilds");
    assert_eq!(
        report.changed, 5,
        "one stale row, three missing ones, one without events"
    );
    assert_eq!(report.orders, 8);
    assert!(
        f.scan
            .get_projected("ORD-GHOST")
            .await
            .expect("get")
            .is_none()
    );
    for s in &states {
        let row = f
            .scan
            .get_projected(s.order_id.as_str())
            .await
            .expect("get")
            .expect("a row");
        assert_eq!(row.order().as_ref(), Ok(s));
    }
}

pub async fn a_rebuild_beside_a_running_projector_keeps_every_version_written_meanwhile(
    f: &Fixture,
) {
    let states = fill(f, 10).await;
    project(f, &states, 20).await;
    let checkpoint = f.scan.projected().await.expect("projected");

    // Between the fold and the swap: the projector applies one new event (ORD-00 starts),
    // and another one (ORD-01 completes, a new ORD-NEW) is committed but not yet applied.
    let meanwhile: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let (events, read_model) = (f.events.clone(), f.read_model.clone());
    let written = meanwhile.clone();
    let handle = tokio::runtime::Handle::current();
    let hook = Box::new(move || {
        handle.block_on(async {
            let store = events.as_ref();
            let started = run(store, &oid("ORD-00"), Command::Start, 500).await;
            read_model
                .apply(&[started[0].order.clone()])
                .await
                .expect("applies");
            let completed = run(store, &oid("ORD-01"), Command::Complete, 501).await;
            let placed = run(
                store,
                &oid("ORD-NEW"),
                place("placed during the rebuild"),
                502,
            )
            .await;
            written
                .lock()
                .expect("not poisoned")
                .extend([started, completed, placed].concat());
        });
    });
    let report = f.rebuild_with_hook(hook).await.expect("rebuilds");
    let meanwhile = meanwhile.lock().expect("not poisoned").clone();
    let newest = |id: &str| {
        meanwhile
            .iter()
            .rfind(|r| r.order.order_id.as_str() == id)
            .map(|r| r.order.clone())
            .expect("written meanwhile")
    };
    let row = |id: &'static str| async move {
        f.scan
            .get_projected(id)
            .await
            .expect("get")
            .map(|r| r.order().expect("a readable row"))
    };
    // What the projector had written meanwhile is in the new projection.
    assert_eq!(row("ORD-00").await, Some(newest("ORD-00")));
    if f.folds_unprojected_events_at_swap() {
        assert_eq!(report.caught_up, 3, "{report:?}");
        assert_eq!(report.orders, 11);
        assert_eq!(row("ORD-01").await, Some(newest("ORD-01")));
        assert_eq!(row("ORD-NEW").await, Some(newest("ORD-NEW")));
    } else {
        assert_eq!(report.caught_up, 1, "{report:?}");
        assert_eq!(report.orders, 10);
    }
    // The projector then delivers what it had not checkpointed (older states change
    // nothing) and what it had not applied yet.
    f.read_model.apply(&states).await.expect("applies");
    let pending: Vec<Order> = meanwhile.iter().map(|r| r.order.clone()).collect();
    f.read_model.apply(&pending).await.expect("applies");
    for id in ["ORD-00", "ORD-01", "ORD-NEW"] {
        assert_eq!(row(id).await, Some(newest(id)), "the newest state of {id}");
    }
    assert_eq!(
        f.scan.projected().await.expect("projected"),
        checkpoint,
        "the checkpoint is left alone"
    );
}

pub async fn a_history_that_cannot_be_folded_keeps_its_row_and_is_reported(f: &Fixture) {
    let states = fill(f, 3).await;
    project(f, &states, 0).await;
    f.tamper("ORD-01", 1, &["type"], "OrderMisplaced").await;
    let report = f.rebuild.rebuild(Arc::new(|_| {})).await.expect("rebuilds");
    assert_eq!(report.unfoldable.len(), 1, "{report:?}");
    assert_eq!(report.unfoldable[0].0, "ORD-01");
    let row = f
        .scan
        .get_projected("ORD-01")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(row.order(), Ok(states[1].clone()));
}

pub async fn the_archive_hands_out_a_changed_byte_as_stored(f: &Fixture) {
    fill(f, 2).await;
    f.tamper("ORD-01", 1, &["data", "description"], "order 7")
        .await;
    let raw = f
        .archive
        .history_raw(&oid("ORD-01"))
        .await
        .expect("history");
    assert!(
        raw[0].envelope.contains("\"order 7\""),
        "{}",
        raw[0].envelope
    );
    let breaks = events_schema::verify_chain(raw.iter().map(|r| r.envelope.as_str()));
    assert!(
        matches!(
            breaks.as_slice(),
            [events_schema::ChainBreak::HashMismatch { version: 1, .. }]
        ),
        "{breaks:?}"
    );
}

pub async fn a_second_rebuild_at_the_same_time_is_refused(f: &Fixture) {
    fill(f, 2).await;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let hook = Box::new(move || {
        let _ = started_tx.send(());
        let _ = rx.recv();
    });
    let (first, second) = tokio::join!(f.rebuild_with_hook(hook), async {
        started_rx
            .await
            .expect("the first rebuild reaches its swap");
        let second = f.rebuild.rebuild(Arc::new(|_| {})).await;
        tx.send(()).expect("releases the first");
        second
    });
    let err = second.expect_err("refused while the first runs");
    assert!(err.to_string().contains("another rebuild"), "{err}");
    first.expect("the first completes");
    f.rebuild
        .rebuild(Arc::new(|_| {}))
        .await
        .expect("then another one runs");
}

/// The one list of shared checks, instantiated once per backend.
macro_rules! every_backend {
    ($($backend:ident: $fixture:expr),* $(,)?) => {$(
        mod $backend {
            use super::*;
            audit_tests!(
                $fixture;
                histories_come_whole_in_pages_each_order_once,
                a_page_longer_than_its_size_comes_whole_and_the_next_skips_it,
                a_raw_history_is_the_stored_json_of_the_envelopes,
                events_between_filter_by_time_order_and_status_and_page,
                read_model_rows_come_for_a_page_and_in_a_whole_pass,
                a_rebuild_equals_the_live_projection,
                a_rebuild_repairs_missing_stale_and_extra_rows,
                a_rebuild_beside_a_running_projector_keeps_every_version_written_meanwhile,
                a_history_that_cannot_be_folded_keeps_its_row_and_is_reported,
                the_archive_hands_out_a_changed_byte_as_stored,
                a_second_rebuild_at_the_same_time_is_refused,
            );
        }
    )*};
}

macro_rules! audit_tests {
    ($fixture:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let f = $fixture;
            super::$name(&f).await;
        }
    )*};
}

every_backend!(on_embedded: embedded(), on_aws: aws().await);

// ---- The embedded backend's own mechanics ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_checkpoint_shows_how_far_the_read_model_got() {
    let f = embedded();
    let states = fill(&f, 3).await;
    assert_eq!(
        f.scan.projected().await.expect("projected"),
        Projected::Through(0)
    );
    project(&f, &states[..1], 1).await;
    assert_eq!(
        f.scan.projected().await.expect("projected"),
        Projected::Through(1)
    );
}

fn sqlite(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("opens")
}

/// The `CREATE` statements of the `orders` table and its indexes, sorted
/// (SQLite quotes a renamed table's name: `"orders"` is `orders`; a rebuild names its
/// indexes `orders_by_*` or `orders_rebuild_by_*`, whichever is free).
fn orders_schema(dir: &Path) -> Vec<String> {
    let conn = sqlite(&DataDir::new(dir).database());
    let mut stmt = conn
        .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'orders' AND sql IS NOT NULL ORDER BY name")
        .expect("prepares");
    let mut schema: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("queries")
        .map(|sql| {
            sql.expect("reads")
                .replace("\"orders\"", "orders")
                .replace("orders_rebuild_by_", "orders_by_")
        })
        .collect();
    schema.sort();
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_projection_has_the_live_schema_and_reopens_without_new_indexes() {
    let f = embedded();
    let states = fill(&f, 4).await;
    project(&f, &states, 0).await;
    let Backend::Embedded { embedded, dir, .. } = f.backend else {
        unreachable!("an embedded fixture")
    };
    let before = orders_schema(dir.path());
    assert_eq!(before.len(), 3, "the table and two indexes: {before:?}");
    f.rebuild.rebuild(Arc::new(|_| {})).await.expect("rebuilds");
    assert_eq!(orders_schema(dir.path()), before);
    // Reopened after an odd number of rebuilds (its indexes under their other names), the
    // read model adds no index.
    drop(embedded);
    let embedded = Embedded::open(dir.path(), route_table()).expect("reopens");
    assert_eq!(orders_schema(dir.path()), before);
    f.rebuild
        .rebuild(Arc::new(|_| {}))
        .await
        .expect("rebuilds again");
    drop(embedded);
    let reopened = Embedded::open(dir.path(), route_table()).expect("reopens");
    assert_eq!(orders_schema(dir.path()), before);
    let page = reopened
        .read_model
        .list(&backend::ListQuery {
            status: Some(Status::Inprocess),
            limit: 10,
            after: None,
            newest_first: false,
        })
        .await
        .expect("lists by status");
    assert_eq!(page.items.len(), 1);
}

// ---- The AWS backend's own mechanics: the live-table pointer ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_projection_cannot_say_how_far_the_projector_got() {
    let f = aws().await;
    assert_eq!(
        f.scan.projected().await.expect("projected"),
        Projected::Unknown
    );
}

/// The table the live-table pointer names (`None` without a pointer).
async fn pointer(aws: &Aws) -> Option<String> {
    aws.clients
        .dynamodb
        .get_item()
        .table_name(&aws.config.ledger_table)
        .key("pk", AttributeValue::S(POINTER_PK.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("reads the pointer")
        .item
        .and_then(|item| item.get("table").and_then(|t| t.as_s().ok()).cloned())
}

async fn table_exists(aws: &Aws, table: &str) -> bool {
    match aws
        .clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
    {
        Ok(out) => out
            .table
            .and_then(|t| t.table_status)
            .is_some_and(|s| s.as_str() != "DELETING"),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(err) => panic!("describing {table}: {err:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_rebuild_flips_the_pointer_and_every_process_follows_it() {
    let config = aws_config();
    let a = Arc::new(support::moto::aws_with(config.clone()).await);
    let f = aws_fixture(a.clone());
    // Another process of the same deployment (a projector Lambda, say).
    let b = support::moto::connect(config.clone()).await;
    let states = fill(&f, 4).await;
    project(&f, &states, 0).await;
    assert_eq!(
        pointer(&a).await,
        None,
        "no pointer until the first rebuild"
    );

    // A write to the old table after the swap, from a process whose cached pointer still
    // names it, must reach the new table: B reads the pointer right before the swap, and
    // writes the moment it sees the pointer move. (B then writes the old table, and the
    // catch-up carries the write over; on a machine slow enough for B's cache to run out
    // first, B writes the new table itself: both must end the same.)
    let writer = {
        let (events, b_read_model, a) = (f.events.clone(), b.read_model.clone(), a.clone());
        let handle = tokio::runtime::Handle::current();
        move || {
            let started = handle.block_on(async {
                b_read_model
                    .get(&oid("ORD-00"))
                    .await
                    .expect("B reads the live table");
                run(events.as_ref(), &oid("ORD-00"), Command::Start, 100).await
            });
            handle.spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while pointer(&a).await.is_none() {
                    assert!(tokio::time::Instant::now() < deadline, "no swap");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                b_read_model
                    .apply(&[started[0].order.clone()])
                    .await
                    .expect("B applies");
                started[0].order.clone()
            })
        }
    };
    let (hook_tx, hook_rx) = tokio::sync::oneshot::channel();
    let report = f
        .rebuild_with_hook(Box::new(move || {
            let _ = hook_tx.send(writer());
        }))
        .await
        .expect("rebuilds");
    let started = hook_rx
        .await
        .expect("the hook ran")
        .await
        .expect("B's write");
    let first = report.swapped_in.clone().expect("a new table");
    assert!(
        first.starts_with(&format!("{}-rebuild-", config.read_model_table)),
        "{first}"
    );
    assert_eq!(pointer(&a).await.as_deref(), Some(first.as_str()));
    assert_eq!(
        f.scan
            .get_projected("ORD-00")
            .await
            .expect("get")
            .map(|r| r.order().expect("readable")),
        Some(started),
        "B's late write reached the new table"
    );
    assert!(
        table_exists(&a, &config.read_model_table).await,
        "the deployment's own table is kept"
    );

    // B's cache has run out by now: its writes and reads go to the new table.
    let completed = run(f.events.as_ref(), &oid("ORD-01"), Command::Complete, 200).await;
    b.read_model
        .apply(&[completed[0].order.clone()])
        .await
        .expect("B applies");
    let row = f
        .scan
        .get_projected("ORD-01")
        .await
        .expect("get")
        .expect("a row");
    assert_eq!(row.order(), Ok(completed[0].order.clone()));
    let listed = b
        .read_model
        .list(&backend::ListQuery {
            status: Some(Status::Completed),
            limit: 10,
            after: None,
            newest_first: false,
        })
        .await
        .expect("lists");
    assert!(listed.items.iter().any(|o| o.order_id.as_str() == "ORD-01"));

    // A second rebuild replaces the first rebuilt table, which goes.
    let second = f
        .rebuild
        .rebuild(Arc::new(|_| {}))
        .await
        .expect("rebuilds again");
    let second = second.swapped_in.expect("a new table");
    assert_ne!(second, first);
    assert_eq!(pointer(&a).await.as_deref(), Some(second.as_str()));
    assert!(!table_exists(&a, &first).await, "{first} is deleted");
    assert!(table_exists(&a, &config.read_model_table).await);
    assert_eq!(all_rows(&f).await.len(), 4);
}
