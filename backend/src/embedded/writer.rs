//! The one writer: a thread that owns the database's write connection and commits every
//! embedded write in groups, one transaction and one fsync per group.
//!
//! Appends (with their idempotency records) and pipeline work (read model updates, the
//! checkpoint, bus sends, handler ledger records, documents, message deletes) queue
//! separately. A group takes every waiting append first, then pipeline work up to a budget,
//! so commands never wait behind a backlog of pipeline work; under load many writes share
//! one commit. Each pipeline job runs in its own savepoint, so one that fails fails alone.
//! After a commit the writer hands the committed events to the change feed in memory and
//! runs each job's after-commit step (in commit order, on this thread), then answers.
//!
//! WAL checkpoints run on a thread of their own, so the writer never copies pages back
//! into the database file between commits.

use std::{
    collections::VecDeque,
    path::Path,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{
    change_feed::Handoff,
    event_store::{self, Heads, PreparedAppend},
    sqlite,
};
use crate::{
    ports::{AppendError, Metric, MetricKind, StoreError},
    telemetry::{stage_cpu, thread_cpu_nanos},
};

/// Appends one group may take at most.
const MAX_APPENDS: usize = 4096;
/// Pipeline jobs one group may take at most: bounds how long appends wait behind them.
const MAX_JOBS: usize = 256;
/// How often an idle writer looks for writes by other processes (`orders dlq redrive`,
/// `orders republish`), and the WAL checkpointer for work.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How often the checkpointer copies the WAL back into the database. Often, so that each
/// checkpoint is small: its fsync of the database file shares the disk with the writer's
/// fsyncs of the WAL, and a large one stalls commits (at 5,000 commands/s, command p99 was
/// 12 ms checkpointing every 100 ms, 94 ms every 5 s, 6 ms every 20 ms).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// The writer's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 256 * 1024;
/// Heads (latest versions) the writer remembers; others are looked up once.
const HEADS: usize = 200_000;

/// What a job does once its group is committed (or failed): its after-commit step and its
/// answer. Runs on the writer thread.
type Finish = Box<dyn FnOnce(Result<(), &rusqlite::Error>) + Send>;
/// A pipeline job: runs in the group's transaction (`None` if none could begin).
type Job = Box<dyn FnOnce(Option<&Connection>) -> Finish + Send>;

struct AppendJob {
    append: PreparedAppend,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

#[derive(Default)]
struct Pending {
    appends: Vec<AppendJob>,
    jobs: VecDeque<Job>,
    closed: bool,
}

/// Counters of the writer and the WAL checkpointer, for `/metrics`.
#[derive(Default)]
pub(super) struct WriterStats {
    transactions: AtomicU64,
    failed_commits: AtomicU64,
    appends: AtomicU64,
    jobs: AtomicU64,
    writer_cpu_nanos: AtomicU64,
    wal_checkpoints: AtomicU64,
    checkpointer_cpu_nanos: AtomicU64,
    /// Bumped whenever another process has committed to the database.
    external_changes: AtomicU64,
}

impl WriterStats {
    pub(super) fn external_changes(&self) -> u64 {
        self.external_changes.load(Ordering::Acquire)
    }

    pub(super) fn metrics(&self, out: &mut Vec<Metric>) {
        let counter = |name, help, value: &AtomicU64| Metric {
            name,
            help,
            kind: MetricKind::Counter,
            labels: Vec::new(),
            value: value.load(Ordering::Relaxed) as f64,
        };
        out.push(counter(
            "orders_writer_transactions_total",
            "Transactions committed by the one writer.",
            &self.transactions,
        ));
        out.push(counter(
            "orders_writer_fsyncs_total",
            "fsyncs of the write-ahead log by the writer (one per committed transaction).",
            &self.transactions,
        ));
        out.push(counter(
            "orders_writer_failed_commits_total",
            "Groups whose commit failed (every write in them was answered with an error).",
            &self.failed_commits,
        ));
        out.push(counter(
            "orders_writer_appends_total",
            "Appends the writer handled (conflicts included).",
            &self.appends,
        ));
        out.push(counter(
            "orders_writer_jobs_total",
            "Pipeline jobs the writer ran.",
            &self.jobs,
        ));
        out.push(counter(
            "orders_wal_checkpoints_total",
            "WAL checkpoints run off the writer thread.",
            &self.wal_checkpoints,
        ));
        for (stage, nanos) in [
            ("writer", &self.writer_cpu_nanos),
            ("wal_checkpointer", &self.checkpointer_cpu_nanos),
        ] {
            out.push(stage_cpu(stage, nanos.load(Ordering::Relaxed)));
        }
    }
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: a write is queued, or the threads are to stop.
    wake: Condvar,
    /// Wakes the checkpointer to stop.
    stop: Condvar,
    stats: WriterStats,
}

/// A handle on the writer thread, to queue writes.
#[derive(Clone)]
pub(super) struct Writer {
    shared: Arc<Shared>,
}

/// Owns the writer and checkpointer threads: dropping it lets them finish what is queued
/// and waits for them, so that the data directory can be opened again at once.
pub(super) struct WriterThreads {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for WriterThreads {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.wake.notify_all();
        self.shared.stop.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Writer {
    /// Starts the writer on `conn` (the database at `path`) and the WAL checkpointer beside it.
    pub(super) fn spawn(
        path: &Path,
        conn: Connection,
        handoff: Arc<Handoff>,
    ) -> Result<(Self, WriterThreads), StoreError> {
        let err = |e: std::io::Error| StoreError::new("starting the writer", e);
        // Checkpoints are the checkpointer's job, not the committing connection's.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| StoreError::new("starting the writer", e))?;
        // The pages every group touches (index leaves all over the read model, the ledger
        // and the documents) stay in memory instead of being read back through the kernel
        // (SQLite's default cache is 2 MiB).
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(|e| StoreError::new("starting the writer", e))?;
        let checkpointer = sqlite::open(path, sqlite::Durability::Full)
            .map_err(|e| StoreError::new("starting the WAL checkpointer", e))?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            stop: Condvar::new(),
            stats: WriterStats::default(),
        });
        let writer = std::thread::Builder::new()
            .name("orders-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_loop(&shared, conn, &handoff)
            })
            .map_err(err)?;
        let checkpoints = std::thread::Builder::new()
            .name("orders-wal-checkpointer".into())
            .spawn({
                let shared = shared.clone();
                move || checkpoint_loop(&shared, &checkpointer)
            })
            .map_err(err)?;
        Ok((
            Self {
                shared: shared.clone(),
            },
            WriterThreads {
                shared,
                threads: vec![writer, checkpoints],
            },
        ))
    }

    pub(super) fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// Puts a write in the queue (unless the writer has stopped) and wakes the writer.
    fn enqueue(
        &self,
        context: &'static str,
        put: impl FnOnce(&mut Pending),
    ) -> Result<(), StoreError> {
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if pending.closed {
                return Err(stopped(context));
            }
            put(&mut pending);
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Queues an append; answered once committed (durably) or refused.
    pub(super) async fn append(&self, append: PreparedAppend) -> Result<(), AppendError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue("appending events", |pending| {
            pending.appends.push(AppendJob { append, reply })
        })?;
        answer
            .await
            .unwrap_or_else(|_| Err(stopped("appending events").into()))
    }

    /// Runs `work` in the next group's transaction; once it is committed, `after` runs on
    /// the writer thread (in commit order) and the result comes back.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        after: impl FnOnce(&T) + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue(context, Isolation::Savepoint, work, after).await
    }

    /// [`Writer::write`] for work that runs exactly one statement: atomic on its own, so
    /// it needs no savepoint around it.
    pub(super) async fn write_statement<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue(context, Isolation::Statement, work, |_| {})
            .await
    }

    async fn queue<T: Send + 'static>(
        &self,
        context: &'static str,
        isolation: Isolation,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        after: impl FnOnce(&T) + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => match isolation {
                    Isolation::Savepoint => in_savepoint(conn, work),
                    Isolation::Statement => work(conn),
                }
                .map_err(|e| StoreError::sqlite(context, e)),
                None => Err(StoreError::new(
                    context,
                    "the writer could not begin a transaction",
                )),
            };
            Box::new(move |committed| {
                let outcome = match (result, committed) {
                    (Ok(value), Ok(())) => {
                        after(&value);
                        Ok(value)
                    }
                    (Ok(_), Err(e)) => Err(StoreError::new(context, e)),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(outcome);
            })
        });
        self.enqueue(context, |pending| pending.jobs.push_back(job))?;
        answer.await.unwrap_or_else(|_| Err(stopped(context)))
    }

    /// [`Writer::run`] with nothing to do after the commit.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        context: &'static str,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(context, work, |_| {}).await
    }
}

/// How a job's writes are kept apart from the rest of its group if it fails.
#[derive(Clone, Copy)]
enum Isolation {
    Savepoint,
    /// One statement: SQLite undoes a failed statement by itself.
    Statement,
}

fn stopped(context: &'static str) -> StoreError {
    StoreError::new(context, "the writer has stopped")
}

/// Runs `work` so that, if it fails, nothing it wrote stays in the transaction.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match work(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Err(e)
        }
    }
}

fn write_loop(shared: &Shared, mut conn: Connection, handoff: &Handoff) {
    let mut heads = Heads::new(HEADS);
    let mut seen_version = data_version(&conn).unwrap_or_default();
    let mut looked = Instant::now();
    loop {
        let (appends, jobs) = {
            let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            while pending.appends.is_empty() && pending.jobs.is_empty() && !pending.closed {
                pending = shared
                    .wake
                    .wait_timeout(pending, IDLE_TICK)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                if looked.elapsed() >= IDLE_TICK {
                    break;
                }
            }
            if pending.closed && pending.appends.is_empty() && pending.jobs.is_empty() {
                break;
            }
            let take = pending.appends.len().min(MAX_APPENDS);
            let appends: Vec<AppendJob> = pending.appends.drain(..take).collect();
            let take = pending.jobs.len().min(MAX_JOBS);
            let jobs: Vec<Job> = pending.jobs.drain(..take).collect();
            (appends, jobs)
        };
        if looked.elapsed() >= IDLE_TICK {
            looked = Instant::now();
            // `data_version` changes only when another connection (another process: a
            // dead-letter redrive, a republish) has committed.
            if let Ok(now) = data_version(&conn)
                && now != seen_version
            {
                seen_version = now;
                shared.stats.external_changes.fetch_add(1, Ordering::AcqRel);
            }
        }
        if appends.is_empty() && jobs.is_empty() {
            continue;
        }
        commit_group(shared, &mut conn, &mut heads, handoff, appends, jobs);
        shared
            .stats
            .writer_cpu_nanos
            .store(thread_cpu_nanos(), Ordering::Relaxed);
    }
}

fn commit_group(
    shared: &Shared,
    conn: &mut Connection,
    heads: &mut Heads,
    handoff: &Handoff,
    appends: Vec<AppendJob>,
    jobs: Vec<Job>,
) {
    let stats = &shared.stats;
    stats
        .appends
        .fetch_add(appends.len() as u64, Ordering::Relaxed);
    stats.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "the writer cannot begin a transaction");
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            for a in appends {
                let _ = a
                    .reply
                    .send(Err(StoreError::new("appending events", &e).into()));
            }
            for job in jobs {
                job(None)(Err(&e));
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(appends.len());
    let mut committed_events = Vec::new();
    let mut failed: Option<rusqlite::Error> = None;
    let mut replies = Vec::with_capacity(appends.len());
    for AppendJob { append, reply } in appends {
        replies.push(reply);
        if failed.is_some() {
            outcomes.push(None);
            continue;
        }
        match event_store::apply_append(&tx, heads, append) {
            Ok(outcome) => outcomes.push(Some(outcome)),
            Err(e) => {
                failed = Some(e);
                outcomes.push(None);
            }
        }
    }
    let mut finishes = Vec::with_capacity(jobs.len());
    for job in jobs {
        finishes.push(job(Some(&tx)));
    }
    let committed = match failed {
        Some(e) => {
            drop(tx);
            Err(e)
        }
        None => tx.commit(),
    };
    match &committed {
        Ok(()) => {
            stats.transactions.fetch_add(1, Ordering::Relaxed);
            for outcome in &mut outcomes {
                if let Some(Ok(changes)) = outcome {
                    committed_events.append(changes);
                }
            }
            handoff.committed(committed_events);
        }
        Err(e) => {
            tracing::error!(error = %e, "the writer's commit failed; every write of the group is refused");
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            // Heads were advanced for appends that are now rolled back.
            heads.clear();
        }
    }
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let answer = match (&committed, outcome) {
            (Ok(()), Some(Ok(_))) => Ok(()),
            (Ok(()), Some(Err(refused))) => Err(refused),
            (Err(e), _) => Err(StoreError::new("committing events", e).into()),
            (Ok(()), None) => Err(StoreError::new("committing events", "not committed").into()),
        };
        let _ = reply.send(answer);
    }
    for finish in finishes {
        finish(committed.as_ref().map(|_| ()));
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "data_version", |r| r.get(0))
}

fn checkpoint_loop(shared: &Shared, conn: &Connection) {
    loop {
        {
            let pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.closed {
                break;
            }
            let _ = shared.stop.wait_timeout(pending, CHECKPOINT_EVERY);
        }
        // PASSIVE: copy what no reader still needs, without waiting on anyone; the writer
        // goes on committing meanwhile.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, done)) if log > 0 => {
                if done > 0 {
                    shared.stats.wal_checkpoints.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will try again"),
        }
        shared
            .stats
            .checkpointer_cpu_nanos
            .store(thread_cpu_nanos(), Ordering::Relaxed);
    }
    // A last full checkpoint, so that a stopped directory is one file.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}
