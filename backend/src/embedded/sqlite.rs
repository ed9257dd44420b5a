//! SQLite plumbing shared by the embedded adapters: connections with the right pragmas, a
//! small pool of read connections, and running blocking work off the async threads.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
};

use rusqlite::{Connection, OpenFlags, config::DbConfig};
use tokio::sync::oneshot;

use crate::ports::StoreError;

/// How much a commit must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: for facts that were acknowledged to a client.
    Full,
    /// Survives a process crash; a power cut may lose the last commits. For derived data
    /// that is recomputed from a durable checkpoint.
    Normal,
}

impl Durability {
    fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Runs `f` with commits at `durability` on a connection opened at another (SQLite reads
/// the setting at each commit), then restores the connection's own. A later fsync'd
/// commit on the connection makes the relaxed ones durable too: they precede it in the WAL.
pub fn with_durability<T>(
    conn: &mut Connection,
    durability: Durability,
    restore: Durability,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.pragma_update(None, "synchronous", durability.synchronous())?;
    let result = f(conn);
    conn.pragma_update(None, "synchronous", restore.synchronous())?;
    result
}

/// Opens a connection for writing (creating the file if need be), in WAL mode.
pub fn open(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", durability.synchronous())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// [`open`], then creates what `schema` declares (`CREATE ... IF NOT EXISTS`).
pub fn open_with_schema(
    path: &Path,
    durability: Durability,
    schema: &str,
) -> rusqlite::Result<Connection> {
    let conn = open(path, durability)?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

/// Opens a read-only connection.
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Without the query planner stability guarantee, SQLite re-prepares a cached statement
    // such as `... WHERE order_id = ?1 ORDER BY version DESC LIMIT 1` on every run, in case
    // the bound value would change the plan (it cannot here: no ANALYZE statistics). That
    // was ~5 % of the server's CPU under load, in the event store's writer thread.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

/// Read connections, opened on demand and reused. WAL lets them read while a write commits.
#[derive(Clone)]
pub struct ReadPool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `f` on a pooled connection on the blocking thread pool.
    pub async fn read<T: Send + 'static>(
        &self,
        context: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.clone();
        blocking(context, move || pool.with_conn(f)).await
    }

    /// Runs `f` on a pooled connection, on this thread.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_read_only(&self.path)?,
        };
        let result = f(&conn);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }
}

/// Runs SQLite work on tokio's blocking pool and maps its errors to [`StoreError`].
pub async fn blocking<T: Send + 'static>(
    context: &'static str,
    f: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| StoreError::new(context, e)),
        Err(join) => Err(StoreError::new(context, join)),
    }
}

/// A connection that one writer at a time may use, from the blocking pool.
#[derive(Clone)]
pub struct Writer {
    conn: Arc<Mutex<Connection>>,
}

impl Writer {
    pub fn new(conn: Connection) -> Self {
        Self {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    pub async fn write<T: Send + 'static>(
        &self,
        context: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        blocking(context, move || {
            // A panic mid-write drops (and so rolls back) its transaction: the connection
            // behind a poisoned lock is still consistent.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
    }
}

/// A thread that owns a write connection and commits queued writes in groups: it blocks for
/// the first write, takes whatever else queued up meanwhile (at most `max_group`) and
/// commits them all at once, then answers each. Under load many writes share one
/// transaction and one fsync; alone, a write commits at once.
pub struct GroupWriter<W, R> {
    queue: mpsc::Sender<(W, oneshot::Sender<R>)>,
}

impl<W: Send + 'static, R: Send + 'static> GroupWriter<W, R> {
    /// `commit` gets a group of writes and returns one answer per write, in order.
    pub fn spawn(
        name: &str,
        mut conn: Connection,
        max_group: usize,
        mut commit: impl FnMut(&mut Connection, &[W]) -> Vec<R> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel::<(W, oneshot::Sender<R>)>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut group = vec![first];
                    while group.len() < max_group {
                        match receiver.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    let (writes, replies): (Vec<W>, Vec<_>) = group.into_iter().unzip();
                    for (reply, answer) in replies.into_iter().zip(commit(&mut conn, &writes)) {
                        let _ = reply.send(answer);
                    }
                }
            })?;
        Ok(Self { queue })
    }

    /// Queues `write` and waits for its answer; `None` if the writer thread has stopped.
    pub async fn submit(&self, write: W) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((write, reply)).ok()?;
        answer.await.ok()
    }
}

/// Microseconds since the epoch: a sortable integer form of a timestamp.
pub fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// Parses JSON stored in a text column, as a column conversion error if it is not valid.
pub fn parse_json<T: serde::de::DeserializeOwned>(raw: &str) -> rusqlite::Result<T> {
    serde_json::from_str(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::{OptionalExtension, StatementStatus};

    use super::*;

    /// The event store's hottest lookups: the latest version of one order.
    const LATEST: [&str; 2] = [
        "SELECT COALESCE(MAX(version), 0) FROM events WHERE order_id = ?1",
        "SELECT version FROM events WHERE order_id = ?1 ORDER BY version DESC LIMIT 1",
    ];

    /// Runs each lookup for several keys; (runs, re-prepares) of each cached statement.
    fn runs_and_reprepares(conn: &Connection) -> Vec<(i32, i32)> {
        LATEST
            .iter()
            .map(|sql| {
                for id in ["a", "b", "c", "a"] {
                    let _: Option<u64> = conn
                        .prepare_cached(sql)
                        .unwrap()
                        .query_row([id], |r| r.get(0))
                        .optional()
                        .unwrap();
                }
                let stmt = conn.prepare_cached(sql).unwrap();
                (
                    stmt.get_status(StatementStatus::Run),
                    stmt.get_status(StatementStatus::RePrepare),
                )
            })
            .collect()
    }

    #[test]
    fn cached_lookups_by_a_bound_key_are_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path, Durability::Full).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE events (order_id TEXT NOT NULL, version INTEGER NOT NULL,
                 UNIQUE (order_id, version));
                 INSERT INTO events VALUES ('a', 1), ('a', 2), ('b', 1);",
            )
            .unwrap();
        assert_eq!(runs_and_reprepares(&writer), vec![(4, 0), (4, 0)]);
        let reader = open_read_only(&path).unwrap();
        assert_eq!(runs_and_reprepares(&reader), vec![(4, 0), (4, 0)]);
    }
}
