//! The replay-and-audit ports on the embedded backend: whole histories in pages, events in
//! a time window, the read model next to the projector's checkpoint, and a rebuild that is
//! swapped in atomically without losing what a running projector wrote meanwhile.
//!
//! The port-level checks are functions over [`Fixture`] (trait objects only), so that the
//! AWS adapters can run the same ones once they implement the ports.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use backend::{
    Append, ChangeFeed, EventArchive, EventStore, EventWindow, Projected, ProjectionRebuild,
    ProjectionScan, RawEvent, ReadModel,
    embedded::{Embedded, SqliteArchive, SqliteRebuild, fold_raw, sequence_number},
};
use chrono::{DateTime, TimeZone, Utc};
use events_schema::{
    Command, Description, EventContext, Metadata, Order, OrderId, PlaceOrder, Reason, Recorded,
    Status, decide, record, route_table,
};

pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub read_model: Arc<dyn ReadModel>,
    pub feed: Arc<dyn ChangeFeed>,
    pub archive: Arc<dyn EventArchive>,
    pub scan: Arc<dyn ProjectionScan>,
    pub rebuild: Arc<dyn ProjectionRebuild>,
    pub _guard: Box<dyn std::any::Any + Send + Sync>,
}

struct EmbeddedFixture {
    fixture: Fixture,
    embedded: Arc<Embedded>,
    rebuilder: Arc<SqliteRebuild>,
    dir: tempfile::TempDir,
}

fn embedded() -> EmbeddedFixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = Arc::new(Embedded::open(dir.path(), route_table()).expect("opens"));
    let archive = Arc::new(SqliteArchive::open(dir.path()).expect("opens the archive"));
    let rebuilder = Arc::new(SqliteRebuild::open(dir.path()).expect("opens the rebuild"));
    EmbeddedFixture {
        fixture: Fixture {
            events: embedded.events.clone(),
            read_model: embedded.read_model.clone(),
            feed: embedded.feed.clone(),
            archive: archive.clone(),
            scan: archive,
            rebuild: rebuilder.clone(),
            _guard: Box::new(()),
        },
        embedded,
        rebuilder,
        dir,
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

/// What the projector does: upsert each state, then checkpoint the feed's position.
async fn project(f: &Fixture, states: &[Order], through: u64) {
    f.read_model.apply(states).await.expect("applies");
    f.feed
        .checkpoint(&sequence_number(through))
        .await
        .expect("checkpoints");
}

fn versions(events: &[RawEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

// ---- Port-level checks (trait objects only) ----

pub async fn histories_come_whole_in_id_order_in_pages(f: &Fixture) {
    fill(f, 6).await; // 1, 2, 3, 3, 1, 2 events
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let page = f
            .archive
            .histories(after.as_deref(), 3)
            .await
            .expect("a page");
        let Some(last) = page.last() else { break };
        after = Some(last.order_id.clone());
        let events: usize = page.iter().map(|h| h.events.len()).sum();
        assert!(
            events <= 3 || page.len() == 1,
            "a page over its size holds one order: {page:?}"
        );
        for h in page {
            assert_eq!(
                versions(&h.events),
                (1..=h.events.len() as u64).collect::<Vec<_>>(),
                "{} comes whole, in version order",
                h.order_id
            );
            assert!(h.events.iter().all(|e| e.order_id == h.order_id));
            seen.push((h.order_id, h.events.len()));
        }
    }
    let expected: Vec<(String, usize)> = (0..6)
        .map(|i| (format!("ORD-{i:02}"), [1, 2, 3, 3][i % 4]))
        .collect();
    assert_eq!(seen, expected);
    let size = f.archive.size().await.expect("size");
    assert_eq!((size.events, size.orders), (12, 6));
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
    let all = |w: EventWindow| async move {
        let mut out = Vec::new();
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
                None => return out,
            }
        }
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
}

pub async fn the_read_model_scan_sees_rows_by_id_range(f: &Fixture) {
    let states = fill(f, 5).await;
    project(f, &states, 0).await;
    let ids = |rows: Vec<backend::ProjectedOrder>| {
        rows.into_iter().map(|r| r.order_id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(f.scan.scan(None, None, 100).await.expect("scan")),
        vec!["ORD-00", "ORD-01", "ORD-02", "ORD-03", "ORD-04"]
    );
    assert_eq!(
        ids(f
            .scan
            .scan(Some("ORD-01"), Some("ORD-03"), 100)
            .await
            .expect("scan")),
        vec!["ORD-02", "ORD-03"]
    );
    assert_eq!(
        ids(f.scan.scan(Some("ORD-01"), None, 2).await.expect("scan")),
        vec!["ORD-02", "ORD-03"]
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
    let before = f.scan.scan(None, None, 1000).await.expect("scan");
    let report = f.rebuild.rebuild(Arc::new(|_| {})).await.expect("rebuilds");
    assert_eq!((report.orders, report.events, report.changed), (12, 27, 0));
    assert!(report.unfoldable.is_empty());
    assert_eq!(f.scan.scan(None, None, 1000).await.expect("scan"), before);
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

pub async fn the_projector_checkpoint_shows_how_far_the_read_model_got(f: &Fixture) {
    let states = fill(f, 3).await;
    assert_eq!(
        f.scan.projected().await.expect("projected"),
        Projected::Through(0)
    );
    project(f, &states[..1], 1).await;
    assert_eq!(
        f.scan.projected().await.expect("projected"),
        Projected::Through(1)
    );
}

// ---- The embedded backend ----

macro_rules! embedded_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let e = embedded();
            super::$name(&e.fixture).await;
        }
    )*};
}

mod on_embedded {
    embedded_tests!(
        histories_come_whole_in_id_order_in_pages,
        a_raw_history_is_the_stored_json_of_the_envelopes,
        events_between_filter_by_time_order_and_status_and_page,
        the_read_model_scan_sees_rows_by_id_range,
        a_rebuild_equals_the_live_projection,
        a_rebuild_repairs_missing_stale_and_extra_rows,
        the_projector_checkpoint_shows_how_far_the_read_model_got,
    );
    use super::embedded;
}

fn sqlite(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("opens")
}

/// The `CREATE` statements of `projection.db`'s `orders` table and its indexes, sorted
/// (SQLite quotes a renamed table's name: `"orders"` is `orders`; a rebuild names its
/// indexes `orders_by_*` or `orders_rebuild_by_*`, whichever is free).
fn orders_schema(dir: &Path) -> Vec<String> {
    let conn = sqlite(&dir.join("projection.db"));
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
async fn a_rebuild_beside_a_running_projector_keeps_every_version_written_meanwhile() {
    let e = embedded();
    let f = &e.fixture;
    let states = fill(f, 10).await;
    project(f, &states, 20).await;
    let checkpoint = f.scan.projected().await.expect("projected");

    // Between the fold and the swap: the projector applies one new event (ORD-00 starts),
    // and another one (ORD-01 completes, a new ORD-NEW) is committed but not yet applied.
    let meanwhile: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let (events, read_model) = (e.embedded.events.clone(), e.embedded.read_model.clone());
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
                .unwrap()
                .extend([started, completed, placed].concat());
        });
    });
    let report = e
        .rebuilder
        .rebuild_with_hook(Arc::new(|_| {}), hook)
        .await
        .expect("rebuilds");
    assert_eq!(report.caught_up, 3, "{report:?}");
    assert_eq!(report.orders, 11);
    let meanwhile = meanwhile.lock().unwrap().clone();
    for r in &meanwhile {
        let row = f
            .scan
            .get_projected(r.order.order_id.as_str())
            .await
            .expect("get")
            .expect("a row");
        assert_eq!(
            row.order().as_ref(),
            Ok(&r.order),
            "the newest state of {}",
            r.order.order_id
        );
    }
    // The projector then delivers what it had not checkpointed: older states change nothing.
    f.read_model.apply(&states).await.expect("applies");
    for r in &meanwhile {
        let row = f
            .scan
            .get_projected(r.order.order_id.as_str())
            .await
            .expect("get")
            .expect("a row");
        assert_eq!(row.order().as_ref(), Ok(&r.order));
    }
    assert_eq!(
        f.scan.projected().await.expect("projected"),
        checkpoint,
        "the checkpoint is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_projection_has_the_live_schema_and_reopens_without_new_indexes() {
    let e = embedded();
    let states = fill(&e.fixture, 4).await;
    project(&e.fixture, &states, 0).await;
    let before = orders_schema(e.dir.path());
    assert_eq!(before.len(), 3, "the table and two indexes: {before:?}");
    e.fixture
        .rebuild
        .rebuild(Arc::new(|_| {}))
        .await
        .expect("rebuilds");
    assert_eq!(orders_schema(e.dir.path()), before);
    // Reopened after an odd number of rebuilds (its indexes under their other names), the
    // read model adds no index.
    backend::embedded::SqliteReadModel::open(&e.dir.path().join("projection.db"))
        .expect("reopens the read model");
    assert_eq!(orders_schema(e.dir.path()), before);
    e.fixture
        .rebuild
        .rebuild(Arc::new(|_| {}))
        .await
        .expect("rebuilds again");
    drop(e.fixture);
    drop(e.embedded);
    let reopened = Embedded::open(e.dir.path(), route_table()).expect("reopens");
    assert_eq!(orders_schema(e.dir.path()), before);
    let page = reopened
        .read_model
        .list(&backend::ListQuery {
            status: Some(Status::Inprocess),
            limit: 10,
            after: None,
        })
        .await
        .expect("lists by status");
    assert_eq!(page.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_cannot_be_folded_keeps_its_row_and_is_reported() {
    let e = embedded();
    let states = fill(&e.fixture, 3).await;
    project(&e.fixture, &states, 0).await;
    let conn = sqlite(&e.dir.path().join("events.db"));
    conn.execute(
        "UPDATE events SET envelope = replace(envelope, '\"type\":\"OrderPlaced\"', '\"type\":\"OrderMisplaced\"')
         WHERE order_id = 'ORD-01' AND version = 1",
        [],
    )
    .expect("damages one event");
    let report = e
        .fixture
        .rebuild
        .rebuild(Arc::new(|_| {}))
        .await
        .expect("rebuilds");
    assert_eq!(report.unfoldable.len(), 1);
    assert_eq!(report.unfoldable[0].0, "ORD-01");
    let row = e
        .fixture
        .scan
        .get_projected("ORD-01")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(row.order(), Ok(states[1].clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_hands_out_a_changed_byte_as_stored() {
    let e = embedded();
    fill(&e.fixture, 2).await;
    let conn = sqlite(&e.dir.path().join("events.db"));
    conn.execute(
        "UPDATE events SET envelope = replace(envelope, 'order 1', 'order 7') WHERE order_id = 'ORD-01' AND version = 1",
        [],
    )
    .expect("changes one byte");
    let raw = e
        .fixture
        .archive
        .history_raw(&oid("ORD-01"))
        .await
        .expect("history");
    assert!(raw[0].envelope.contains("\"order 7\""));
    let breaks = events_schema::verify_chain(raw.iter().map(|r| r.envelope.as_str()));
    assert!(
        matches!(
            breaks.as_slice(),
            [events_schema::ChainBreak::HashMismatch { version: 1, .. }]
        ),
        "{breaks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rebuild_at_the_same_time_is_refused() {
    let e = embedded();
    fill(&e.fixture, 2).await;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let rebuilder = e.rebuilder.clone();
    let first = tokio::spawn(async move {
        rebuilder
            .rebuild_with_hook(
                Arc::new(|_| {}),
                Box::new(move || {
                    let _ = started_tx.send(());
                    let _ = rx.recv();
                }),
            )
            .await
    });
    started_rx
        .await
        .expect("the first rebuild reaches its swap");
    let second = e.fixture.rebuild.rebuild(Arc::new(|_| {})).await;
    let err = second.expect_err("refused while the first runs");
    assert!(err.to_string().contains("another rebuild"), "{err}");
    tx.send(()).expect("releases the first");
    first.await.expect("task").expect("the first completes");
}
