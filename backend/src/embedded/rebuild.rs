//! `orders rebuild` on the embedded backend: the read model recomputed from the events
//! alone, into a fresh table beside the live one, then swapped in atomically.
//!
//! 1. Note the event store's high-water mark `P` (its highest position).
//! 2. Fold every order's events at or before `P` into `orders_rebuild` in `orders.db`,
//!    indexes included (histories read in pages, folded on every core, written in short
//!    transactions, so a running projector keeps writing the live table meanwhile).
//! 3. Catch up in bounded steps, without holding the database's write lock for longer than
//!    one step's short transaction: fold the histories of the orders that events after `P`
//!    touched into the fresh table, at most `catch_up_step` events at a time, moving `P`
//!    on, while more than one step's worth remains (at most `MAX_CATCH_UP_STEPS` times, so
//!    that a rebuild racing a faster writer still ends).
//! 4. In one `IMMEDIATE` transaction on `orders.db` (the service's writer waits;
//!    readers keep reading the old table): fold in what remains after `P` (at most one
//!    step, unless the writer outran every step), rename the live table to
//!    `orders_retired` and the fresh one to `orders`. Renames are O(1). Readers see the old
//!    projection or the new one, never a half-built one.
//! 5. Drop `orders_retired`.
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
/// Events folded per catch-up step, by default: the most the swap's transaction, which
/// holds the write lock, folds in (unless the writer outran every step).
const CATCH_UP_STEP: u64 = 2_000;
/// Catch-up steps before the swap takes whatever remains under the lock.
const MAX_CATCH_UP_STEPS: u32 = 64;
const FRESH: &str = "orders_rebuild";
const RETIRED: &str = "orders_retired";

/// Called after each catch-up step (with the position caught up to), outside the write
/// lock; it runs on a blocking thread, so it may block on async work (tests write then).
pub type AfterCatchUpStep = Box<dyn FnMut(u64) + Send>;

/// Rebuilds the read model of one data directory (beside a running service or not).
pub struct SqliteRebuild {
    dir: DataDir,
    catch_up_step: u64,
}

impl SqliteRebuild {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        DataDir::new(dir).existing_database()?;
        Ok(Self {
            dir: DataDir::new(dir),
            catch_up_step: CATCH_UP_STEP,
        })
    }

    /// Folds at most `events` (at least 1) per catch-up step, and so under the write lock.
    pub fn with_catch_up_step(self, events: u64) -> Self {
        Self {
            catch_up_step: events.max(1),
            ..self
        }
    }

    /// [`ProjectionRebuild::rebuild`], calling `before_swap` between the fold and the swap.
    pub async fn rebuild_with_hook(
        &self,
        progress: Arc<ProgressFn>,
        before_swap: BeforeSwap,
    ) -> Result<RebuildReport, StoreError> {
        self.rebuild_with_hooks(progress, before_swap, Box::new(|_| {}))
            .await
    }

    /// [`SqliteRebuild::rebuild_with_hook`], also calling `after_step` after each catch-up
    /// step.
    pub async fn rebuild_with_hooks(
        &self,
        progress: Arc<ProgressFn>,
        before_swap: BeforeSwap,
        after_step: AfterCatchUpStep,
    ) -> Result<RebuildReport, StoreError> {
        let dir = self.dir.clone();
        let step = self.catch_up_step;
        let hooks = Hooks {
            before_swap,
            after_step,
        };
        tokio::task::spawn_blocking(move || rebuild(&dir, progress.as_ref(), step, hooks))
            .await
            .unwrap_or_else(|e| Err(StoreError::new("rebuilding the read model", e)))
    }
}

struct Hooks {
    before_swap: BeforeSwap,
    after_step: AfterCatchUpStep,
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
    step: u64,
    mut hooks: Hooks,
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
    (hooks.before_swap)();
    let mut mark = mark;
    for _ in 0..MAX_CATCH_UP_STEPS {
        let now = high_water(&events).map_err(store_err("reading the event store"))?;
        if now.saturating_sub(mark) <= step {
            break;
        }
        let upto = mark + step;
        let tx = projection
            .transaction()
            .map_err(store_err("catching up the fresh projection"))?;
        catch_up(&events, &tx, mark, upto, &mut rebuild)
            .and_then(|()| tx.commit())
            .map_err(store_err("catching up the fresh projection"))?;
        mark = upto;
        progress(rebuild.report.events);
        (hooks.after_step)(mark);
    }
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

/// Folds into the fresh table every order that an event in `(from, to]` touched, its
/// history read up to `to`.
fn catch_up(
    events: &Connection,
    fresh: &Connection,
    from: u64,
    to: u64,
    rebuild: &mut Rebuild,
) -> rusqlite::Result<()> {
    let touched: Vec<String> = events
        .prepare_cached(
            "SELECT DISTINCT order_id FROM events WHERE position > ?1 AND position <= ?2",
        )?
        .query_map([from, to], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let count: u64 = events.query_row(
        "SELECT COUNT(*) FROM events WHERE position > ?1 AND position <= ?2",
        [from, to],
        |r| r.get(0),
    )?;
    let report = &mut rebuild.report;
    report.caught_up += count;
    report.events += count;
    let mut rows = Vec::with_capacity(touched.len());
    for id in touched {
        let history = read_history(events, &id, to, States::Without)?;
        report.unfoldable.retain(|(o, _)| *o != id);
        match fold_raw(&history).and_then(|o| row(&o)) {
            Ok(r) => rows.push(r),
            Err(reason) => report.unfoldable.push((id, reason)),
        }
    }
    write_rows(fresh, &rows, &mut rebuild.changed)
}

/// Step 4: catch up what remains and swap, in one transaction that the projector waits for.
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
    let before = rebuild.report.caught_up;
    if now > mark {
        catch_up(events, &tx, mark, now, rebuild).map_err(&err)?;
    }
    let report = &mut rebuild.report;
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
        caught_up_under_lock = report.caught_up - before,
        "swapped in the rebuilt read model (the projector's writes waited meanwhile)"
    );
    Ok(())
}

/// Step 5: rows of the replaced projection without events count as changed; then it goes.
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

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicBool, AtomicU32, Ordering},
        time::Duration,
    };

    use events_schema::{
        Command, Description, EventContext, Metadata, OrderId, PlaceOrder, decide, record,
    };

    use super::*;
    use crate::{
        embedded::Embedded,
        ports::{Append, EventStore},
    };

    /// How long the test waits for an append that the catch-up must not hold up.
    const ACK_DEADLINE: Duration = Duration::from_secs(10);

    fn placement(id: &str) -> Append {
        let order_id = OrderId::parse(id).expect("an order id");
        let command = Command::Place(PlaceOrder {
            description: Description::parse("placed during a rebuild").expect("a description"),
            register_date: chrono::Utc::now(),
            delivery_date: None,
            customer_id: None,
        });
        let events = decide(&order_id, None, &command).expect("decides");
        let ctx = EventContext {
            occurred_at: chrono::Utc::now(),
            metadata: Metadata::default(),
        };
        Append {
            events: record(&order_id, None, events, &ctx, uuid::Uuid::now_v7).expect("records"),
            order_id,
            expected_version: 0,
            idempotency: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_command_appended_during_a_long_catch_up_is_acknowledged_before_it_ends() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let embedded =
            Embedded::open(dir.path(), events_schema::route_table()).expect("opens the service");
        let events = embedded.events.clone();
        events.append(placement("BEFORE")).await.expect("appends");
        let rebuilder = SqliteRebuild::open(dir.path())
            .expect("opens the rebuild")
            .with_catch_up_step(2);

        // Six events after the fold: three catch-up steps of two, none left for the swap.
        let handle = tokio::runtime::Handle::current();
        let before_swap: BeforeSwap = Box::new({
            let (events, handle) = (events.clone(), handle.clone());
            move || {
                handle.block_on(async {
                    for i in 0..6 {
                        events
                            .append(placement(&format!("DURING-{i}")))
                            .await
                            .expect("appends");
                    }
                })
            }
        });
        let steps = Arc::new(AtomicU32::new(0));
        let acknowledged = Arc::new(AtomicBool::new(false));
        let after_step: AfterCatchUpStep = Box::new({
            let (steps, acknowledged) = (steps.clone(), acknowledged.clone());
            move |_| {
                if steps.fetch_add(1, Ordering::SeqCst) > 0 {
                    return;
                }
                // The rebuild waits here, its catch-up unfinished: a command must go through.
                let appended = handle.block_on(tokio::time::timeout(
                    ACK_DEADLINE,
                    events.append(placement("MID-CATCH-UP")),
                ));
                acknowledged.store(matches!(appended, Ok(Ok(()))), Ordering::SeqCst);
            }
        });
        let report = rebuilder
            .rebuild_with_hooks(Arc::new(|_| {}), before_swap, after_step)
            .await
            .expect("rebuilds");

        assert!(
            acknowledged.load(Ordering::SeqCst),
            "the append during the catch-up was not acknowledged"
        );
        assert!(steps.load(Ordering::SeqCst) >= 3, "{report:?}");
        assert_eq!(report.caught_up, 7, "{report:?}");
        assert_eq!(report.orders, 8, "{report:?}");
    }
}
