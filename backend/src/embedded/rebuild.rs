//! `orders rebuild` on the embedded backend: the read model recomputed from the events
//! alone, into a fresh table beside the live one, then swapped in atomically.
//!
//! 1. Note the event store's high-water mark `P` (its highest position).
//! 2. Fold every order's events at or before `P` into `orders_rebuild` in `projection.db`
//!    (histories read in pages, folded on every core, written in short transactions, so a
//!    running projector keeps writing the live table meanwhile).
//! 3. In one `IMMEDIATE` transaction on `projection.db` (the projector's writes wait;
//!    readers keep reading the old table): fold in the events appended after `P`, count the
//!    orders whose live row differs, drop the live table, rename the fresh one, recreate the
//!    indexes. Readers see the old projection or the new one, never a half-built one.
//!
//! No version is lost beside a running projector: it can only write a state whose event
//! was committed, and while the swap holds the lock every committed event is folded in.
//! The change feed's checkpoint is left alone: the projector re-applies what it had not
//! yet checkpointed (a no-op: the read model only accepts newer versions) and publishes it.

use std::{
    fs::{File, TryLockError},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
};

use async_trait::async_trait;
use events_schema::{Envelope, Order, evolve};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{
    archive::{States, high_water, read_histories, read_history, tune_for_scans},
    read_model::SCHEMA,
    sqlite::{self, Durability, micros},
};
use crate::ports::{
    ProgressFn, ProjectionRebuild, RawEvent, RawHistory, RebuildReport, StoreError,
};

/// Events per page read from the event store.
const PAGE_EVENTS: usize = 20_000;
const FRESH: &str = "orders_rebuild";

/// Rebuilds the read model of one data directory (beside a running service or not).
pub struct SqliteRebuild {
    dir: PathBuf,
}

/// Called after the fold and before the swap (tests use it to write meanwhile).
pub type BeforeSwap = Box<dyn FnOnce() + Send>;

impl SqliteRebuild {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.join("events.db").is_file() {
            return Err(StoreError::new(
                "opening the event store",
                format!(
                    "{} has no events.db (is it a data directory of orders dev?)",
                    dir.display()
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
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

/// The state after an order's stored events, folded from the envelopes alone.
pub fn fold_raw(events: &[RawEvent]) -> Result<Order, String> {
    let mut state: Option<Order> = None;
    for e in events {
        let envelope: Envelope = serde_json::from_str(&e.envelope)
            .map_err(|err| format!("version {}: not a readable envelope: {err}", e.version))?;
        state = Some(evolve(state.as_ref(), &envelope).map_err(|err| err.to_string())?);
    }
    state.ok_or_else(|| "no events".to_owned())
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
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    tune_for_scans(&conn)?;
    Ok(conn)
}

/// Holds `rebuild.lock` in the data directory: one rebuild at a time.
fn lock(dir: &Path) -> Result<File, StoreError> {
    let file = File::create(dir.join("rebuild.lock"))
        .map_err(|e| StoreError::new("locking the rebuild", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::new(
            "locking the rebuild",
            format!("another rebuild of {} is running", dir.display()),
        )),
        Err(TryLockError::Error(e)) => Err(StoreError::new("locking the rebuild", e)),
    }
}

fn rebuild(
    dir: &Path,
    progress: &ProgressFn,
    before_swap: BeforeSwap,
) -> Result<RebuildReport, StoreError> {
    let _lock = lock(dir)?;
    let events_path = dir.join("events.db");
    let events = open_events(&events_path).map_err(store_err("opening the event store"))?;
    let mut projection = sqlite::open(&dir.join("projection.db"), Durability::Normal)
        .and_then(|c| c.execute_batch(SCHEMA).map(|()| c))
        .map_err(store_err("opening the read model"))?;
    let live_ddl: String = projection
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'",
            [],
            |r| r.get(0),
        )
        .map_err(store_err("reading the read model's schema"))?;
    let fresh_ddl = live_ddl.replacen("orders", FRESH, 1);
    projection
        .execute_batch(&format!("DROP TABLE IF EXISTS {FRESH}; {fresh_ddl};"))
        .map_err(store_err("creating the fresh projection"))?;

    let mark = high_water(&events).map_err(store_err("reading the event store"))?;
    let mut report = fold_into_fresh(&events_path, &mut projection, mark, progress)?;
    before_swap();
    swap(&events, &mut projection, mark, &mut report)?;
    progress(report.events);
    Ok(report)
}

/// Step 2: every history at or before `mark`, folded on all cores into the fresh table.
fn fold_into_fresh(
    events_path: &Path,
    projection: &mut Connection,
    mark: u64,
    progress: &ProgressFn,
) -> Result<RebuildReport, StoreError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (page_tx, page_rx) = mpsc::sync_channel::<Vec<RawHistory>>(workers * 2);
    let page_rx = Arc::new(Mutex::new(page_rx));
    let (folded_tx, folded_rx) = mpsc::sync_channel::<Folded>(workers * 2);
    let mut report = RebuildReport::default();
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
                write_rows(projection, &folded.rows)
                    .map_err(store_err("writing the fresh projection"))?;
                report.orders += folded.rows.len() as u64;
                report.events += folded.events;
                report.unfoldable.extend(folded.unfoldable);
                progress(report.events);
            }
            Ok(())
        })();
        // On a write error, dropping the receiver stops the workers and then the reader.
        drop(folded_rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(StoreError::new("reading histories", "the reader panicked")));
        written.and(read)
    })?;
    Ok(report)
}

fn write_rows(conn: &mut Connection, rows: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    write_rows_in(&tx, rows)?;
    tx.commit()
}

/// Step 3: catch up, compare, swap; all in one transaction that the projector waits for.
fn swap(
    events: &Connection,
    projection: &mut Connection,
    mark: u64,
    report: &mut RebuildReport,
) -> Result<(), StoreError> {
    let err = store_err("swapping in the rebuilt projection");
    let tx = projection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    // Every event committed from here on can reach the read model only after this commit.
    let now = high_water(events).map_err(&err)?;
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
            let history = RawHistory {
                events: read_history(events, &id, now, States::Without).map_err(&err)?,
                order_id: id,
            };
            report.unfoldable.retain(|(o, _)| *o != history.order_id);
            match fold_raw(&history.events).and_then(|o| row(&o)) {
                Ok(r) => rows.push(r),
                Err(reason) => report.unfoldable.push((history.order_id, reason)),
            }
        }
        write_rows_in(&tx, &rows).map_err(&err)?;
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
        }
    }
    report.changed = tx
        .query_row(
            &format!(
                "SELECT (SELECT COUNT(*) FROM {FRESH} n LEFT JOIN orders o ON o.order_id = n.order_id
                         WHERE o.body IS NOT n.body)
                      + (SELECT COUNT(*) FROM orders o
                         WHERE NOT EXISTS (SELECT 1 FROM {FRESH} n WHERE n.order_id = o.order_id))"
            ),
            [],
            |r| r.get(0),
        )
        .map_err(&err)?;
    let indexes: Vec<String> = tx
        .prepare(
            "SELECT sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'orders' AND sql IS NOT NULL",
        )
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(&err)?;
    tx.execute_batch(&format!(
        "DROP TABLE orders; ALTER TABLE {FRESH} RENAME TO orders; {};",
        indexes.join("; ")
    ))
    .map_err(&err)?;
    tx.commit().map_err(&err)?;
    report.orders = count_orders(projection).map_err(store_err("counting orders"))?;
    Ok(())
}

fn count_orders(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
}

fn write_rows_in(conn: &Connection, rows: &[Row]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {FRESH} (order_id, status, version, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?;
    for (id, status, version, created, body) in rows {
        insert.execute(params![id, status, version, created, body])?;
    }
    Ok(())
}
