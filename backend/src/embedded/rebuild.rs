//! `orders rebuild` on the embedded backend: the read model recomputed from the events
//! alone, into a fresh table beside the live one, then swapped in atomically.
//!
//! 1. Note the event store's high-water mark `P` (its highest position).
//! 2. Fold every order's events at or before `P` into `orders_rebuild` in `orders.db`,
//!    indexes included (histories read in pages, folded on every core, written in short
//!    transactions, so a running projector keeps writing the live table meanwhile).
//! 3. In one `IMMEDIATE` transaction on `orders.db` (the service's writer waits;
//!    readers keep reading the old table): fold in the events appended after `P`, rename
//!    the live table to `orders_retired` and the fresh one to `orders`. Only the catch-up
//!    costs time there: renames are O(1). Readers see the old projection or the new one,
//!    never a half-built one.
//! 4. Drop `orders_retired`.
//!
//! No version is lost beside a running projector: it can only write a state whose event
//! was committed, and while the swap holds the lock every committed event is folded in.
//! The change feed's checkpoint is left alone: the projector re-applies what it had not
//! yet checkpointed (a no-op: the read model only accepts newer versions) and publishes it.
//!
//! Index names are per database, so the fresh table's indexes take whichever of the two
//! names in `read_model::INDEXES` the live table does not use.

use std::{
    collections::HashSet,
    fs::{File, TryLockError},
    path::Path,
    sync::{Arc, Mutex, mpsc},
    time::Instant,
};

use async_trait::async_trait;
use events_schema::Order;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    archive::{high_water, read_histories, read_history, tune_for_scans},
    data_dir::DataDir,
    read_model::INDEXES,
    sqlite::{self, Durability, micros},
};
pub use crate::ports::{BeforeSwap, fold_raw};
use crate::ports::{ProgressFn, ProjectionRebuild, RawHistory, RebuildReport, States, StoreError};

/// Events per page read from the event store.
const PAGE_EVENTS: usize = 20_000;
const FRESH: &str = "orders_rebuild";
const RETIRED: &str = "orders_retired";

/// Rebuilds the read model of one data directory (beside a running service or not).
pub struct SqliteRebuild {
    dir: DataDir,
}

impl SqliteRebuild {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        DataDir::new(dir).existing_database()?;
        Ok(Self {
            dir: DataDir::new(dir),
        })
    }

    /// [`ProjectionRebuild::rebuild`], calling `before_swap` between the fold and the swap.
    pub async fn rebuild_with_hook(
        &self,
        progress: Arc<ProgressFn>,
        before_swap: BeforeSwap,
    ) -> Result<RebuildReport, StoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || rebuild(&dir, progress.as_ref(), before_swap))
            .await
            .unwrap_or_else(|e| Err(StoreError::new("rebuilding the read model", e)))
    }
}

#[async_trait]
impl ProjectionRebuild for SqliteRebuild {
    async fn rebuild(&self, progress: Arc<ProgressFn>) -> Result<RebuildReport, StoreError> {
        self.rebuild_with_hook(progress, Box::new(|| {})).await
    }
}

/// A read model row: id, status, version, created (µs), body.
type Row = (String, &'static str, u64, i64, String);

fn row(order: &Order) -> Result<Row, String> {
    let body = serde_json::to_string(order).map_err(|e| e.to_string())?;
    Ok((
        order.order_id.to_string(),
        order.status.as_str(),
        order.version,
        micros(order.created_at),
        body,
    ))
}

/// What a worker made of one page.
struct Folded {
    rows: Vec<Row>,
    events: u64,
    unfoldable: Vec<(String, String)>,
}

fn fold_page(page: &[RawHistory]) -> Folded {
    let mut out = Folded {
        rows: Vec::with_capacity(page.len()),
        events: 0,
        unfoldable: Vec::new(),
    };
    for history in page {
        out.events += history.events.len() as u64;
        match fold_raw(&history.events).and_then(|o| row(&o)) {
            Ok(r) => out.rows.push(r),
            Err(reason) => out.unfoldable.push((history.order_id.clone(), reason)),
        }
    }
    out
}

fn store_err(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::new(context, e)
}

fn open_events(path: &Path) -> rusqlite::Result<Connection> {
    let conn = sqlite::open_read_only(path)?;
    tune_for_scans(&conn)?;
    Ok(conn)
}

/// Holds the data directory's rebuild lock: one rebuild at a time.
fn lock(dir: &DataDir) -> Result<File, StoreError> {
    let file =
        File::create(dir.rebuild_lock()).map_err(|e| StoreError::new("locking the rebuild", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::new(
            "locking the rebuild",
            format!("another rebuild of {} is running", dir.root().display()),
        )),
        Err(TryLockError::Error(e)) => Err(StoreError::new("locking the rebuild", e)),
    }
}

fn rebuild(
    dir: &DataDir,
    progress: &ProgressFn,
    before_swap: BeforeSwap,
) -> Result<RebuildReport, StoreError> {
    let _lock = lock(dir)?;
    let events_path = dir.existing_database()?;
    let events = open_events(&events_path).map_err(store_err("opening the event store"))?;
    let mut projection = sqlite::open(&events_path, Durability::Normal)
        .map_err(store_err("opening the read model"))?;
    create_fresh(&projection).map_err(store_err("creating the fresh projection"))?;

    let mark = high_water(&events).map_err(store_err("reading the event store"))?;
    let mut rebuild = Rebuild::default();
    fold_into_fresh(&events_path, &mut projection, mark, progress, &mut rebuild)?;
    before_swap();
    swap(&events, &mut projection, mark, &mut rebuild)?;
    retire(&projection, &mut rebuild).map_err(store_err("dropping the replaced projection"))?;
    progress(rebuild.report.events);
    let mut report = rebuild.report;
    report.changed = rebuild.changed.len() as u64;
    Ok(report)
}

/// A rebuild in progress: the report so far and the orders whose live row differed.
#[derive(Default)]
struct Rebuild {
    report: RebuildReport,
    changed: HashSet<String>,
}

/// The fresh table, with the live table's columns and its indexes under their free names;
/// leftovers of an interrupted rebuild are dropped first.
fn create_fresh(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS {RETIRED}; DROP TABLE IF EXISTS {FRESH};"
    ))?;
    let live_ddl: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'",
        [],
        |r| r.get(0),
    )?;
    // `CREATE TABLE orders (` or, after a rename, `CREATE TABLE "orders" (`.
    let columns = &live_ddl[live_ddl.find('(').unwrap_or(0)..];
    let mut ddl = format!("CREATE TABLE {FRESH} {columns};");
    for (name, other, index_columns) in INDEXES {
        let used: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        let free = if used { other } else { name };
        ddl.push_str(&format!("CREATE INDEX {free} ON {FRESH} {index_columns};"));
    }
    conn.execute_batch(&ddl)
}

/// Step 2: every history at or before `mark`, folded on all cores into the fresh table.
fn fold_into_fresh(
    events_path: &Path,
    projection: &mut Connection,
    mark: u64,
    progress: &ProgressFn,
    rebuild: &mut Rebuild,
) -> Result<(), StoreError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (page_tx, page_rx) = mpsc::sync_channel::<Vec<RawHistory>>(workers * 2);
    let page_rx = Arc::new(Mutex::new(page_rx));
    let (folded_tx, folded_rx) = mpsc::sync_channel::<Folded>(workers * 2);
    std::thread::scope(|scope| -> Result<(), StoreError> {
        let reader = scope.spawn(move || -> Result<(), StoreError> {
            let conn = open_events(events_path).map_err(store_err("opening the event store"))?;
            let mut after: Option<String> = None;
            loop {
                let page = read_histories(
                    &conn,
                    after.as_deref(),
                    PAGE_EVENTS,
                    Some(mark),
                    States::Without,
                )
                .map_err(store_err("reading histories"))?;
                let Some(last) = page.last() else {
                    return Ok(());
                };
                after = Some(last.order_id.clone());
                if page_tx.send(page).is_err() {
                    return Ok(()); // the writer stopped on an error
                }
            }
        });
        for _ in 0..workers {
            let (page_rx, folded_tx) = (page_rx.clone(), folded_tx.clone());
            scope.spawn(move || {
                loop {
                    let page = match page_rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(page) => page,
                        Err(_) => return,
                    };
                    if folded_tx.send(fold_page(&page)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(folded_tx);
        let written = (|| -> Result<(), StoreError> {
            for folded in folded_rx.iter() {
                let tx = projection
                    .transaction()
                    .map_err(store_err("writing the fresh projection"))?;
                write_rows(&tx, &folded.rows, &mut rebuild.changed)
                    .and_then(|()| tx.commit())
                    .map_err(store_err("writing the fresh projection"))?;
                rebuild.report.events += folded.events;
                rebuild.report.unfoldable.extend(folded.unfoldable);
                progress(rebuild.report.events);
            }
            Ok(())
        })();
        // On a write error, dropping the receiver stops the workers and then the reader.
        drop(folded_rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(StoreError::new("reading histories", "the reader panicked")));
        written.and(read)
    })
}

/// Writes rows into the fresh table, noting the orders whose live row differs.
fn write_rows(
    conn: &Connection,
    rows: &[Row],
    changed: &mut HashSet<String>,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {FRESH} (order_id, status, version, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?;
    let mut live = conn.prepare_cached("SELECT body FROM orders WHERE order_id = ?1")?;
    for (id, status, version, created, body) in rows {
        insert.execute(params![id, status, version, created, body])?;
        let same = live
            .query_row([id], |r| {
                r.get_ref(0).map(|v| v.as_str() == Ok(body.as_str()))
            })
            .optional()?
            .unwrap_or(false);
        if same {
            changed.remove(id);
        } else {
            changed.insert(id.clone());
        }
    }
    Ok(())
}

/// Step 3: catch up and swap, in one transaction that the projector waits for.
fn swap(
    events: &Connection,
    projection: &mut Connection,
    mark: u64,
    rebuild: &mut Rebuild,
) -> Result<(), StoreError> {
    let err = store_err("swapping in the rebuilt projection");
    let tx = projection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let locked = Instant::now();
    // Every event committed from here on can reach the read model only after this commit.
    let now = high_water(events).map_err(&err)?;
    let report = &mut rebuild.report;
    if now > mark {
        let touched: Vec<String> = events
            .prepare("SELECT DISTINCT order_id FROM events WHERE position > ?1 AND position <= ?2")
            .and_then(|mut s| {
                s.query_map([mark, now], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(&err)?;
        report.caught_up = events
            .query_row(
                "SELECT COUNT(*) FROM events WHERE position > ?1 AND position <= ?2",
                [mark, now],
                |r| r.get(0),
            )
            .map_err(&err)?;
        report.events += report.caught_up;
        let mut rows = Vec::with_capacity(touched.len());
        for id in touched {
            let history = read_history(events, &id, now, States::Without).map_err(&err)?;
            report.unfoldable.retain(|(o, _)| *o != id);
            match fold_raw(&history).and_then(|o| row(&o)) {
                Ok(r) => rows.push(r),
                Err(reason) => report.unfoldable.push((id, reason)),
            }
        }
        write_rows(&tx, &rows, &mut rebuild.changed).map_err(&err)?;
    }
    // Histories that cannot be folded keep their live row: a rebuild repairs, never erases.
    {
        let mut keep = tx
            .prepare(&format!(
                "INSERT OR REPLACE INTO {FRESH} SELECT * FROM orders WHERE order_id = ?1"
            ))
            .map_err(&err)?;
        for (id, _) in &report.unfoldable {
            keep.execute([id]).map_err(&err)?;
            rebuild.changed.remove(id);
        }
    }
    report.orders = tx
        .query_row(&format!("SELECT COUNT(*) FROM {FRESH}"), [], |r| r.get(0))
        .map_err(&err)?;
    tx.execute_batch(&format!(
        "ALTER TABLE orders RENAME TO {RETIRED}; ALTER TABLE {FRESH} RENAME TO orders;"
    ))
    .map_err(&err)?;
    tx.commit().map_err(&err)?;
    tracing::debug!(
        held_ms = locked.elapsed().as_millis() as u64,
        caught_up = report.caught_up,
        "swapped in the rebuilt read model (the projector's writes waited meanwhile)"
    );
    Ok(())
}

/// Step 4: rows of the replaced projection without events count as changed; then it goes.
fn retire(conn: &Connection, rebuild: &mut Rebuild) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT r.order_id FROM {RETIRED} r
         WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = r.order_id)"
    ))?;
    let gone = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rebuild.changed.extend(gone);
    drop(stmt);
    conn.execute_batch(&format!("DROP TABLE {RETIRED};"))
}
