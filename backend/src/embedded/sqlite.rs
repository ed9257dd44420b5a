//! SQLite plumbing shared by the embedded adapters: connections with the right pragmas, a
//! small pool of read connections, and running blocking work off the async threads.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rusqlite::{Connection, OpenFlags, config::DbConfig};

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

/// Opens a connection for writing (creating the file if need be), in WAL mode.
pub fn open(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", durability.synchronous())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A WAL that grew under load is cut back to this once checkpointed.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection. Reads go through a memory map (no system call per page
/// once mapped) and a larger page cache than SQLite's 2 MiB default.
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    conn.pragma_update(None, "cache_size", -16_384)?;
    Ok(conn)
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

    /// Runs `f` on a pooled connection on this (async) thread: for point lookups, which take
    /// less time than a hop to the blocking pool and back.
    pub fn read_now<T>(
        &self,
        context: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_conn(f)
            .map_err(|e| StoreError::sqlite(context, e))
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
        Ok(result) => result.map_err(|e| StoreError::sqlite(context, e)),
        Err(join) => Err(StoreError::new(context, join)),
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
