//! The embedded data directory: what its files are called, who may hold it, the schema of
//! its one database, and bringing a directory of the earlier four-file layout into it.

use std::{
    fs::{File, TryLockError},
    path::{Path, PathBuf},
};

use rusqlite::Connection;

use super::sqlite::{self, Durability};
use crate::ports::StoreError;

/// What `PRAGMA user_version` says of a database in this layout. Layout 3 keeps each
/// queue message's last error; a database of an earlier layout is brought up to it on the
/// first start of this release, one step per layout, each with its own version.
const LAYOUT_VERSION: i64 = 3;
/// Layout 2 keeps the idempotency keys in namespaces (`api/...`, `handler/...`); a database
/// of layout 1 has its keys moved once.
const NAMESPACED_KEYS: i64 = 2;

/// Every table of `orders.db`. The read model's indexes are made by
/// `read_model::ensure_indexes` (a rebuild may have renamed them). Small tables keyed by
/// text are `WITHOUT ROWID`: one B-tree to write instead of a table and its key's index
/// (not `orders`, whose large rows would crowd the key's pages). The
/// messages have no index by queue: the service keeps them in memory, and only the
/// operator's rare dead-letter listings and redrives scan the (small) table.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    order_id    TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT    NOT NULL UNIQUE,
    occurred_at INTEGER NOT NULL,
    envelope    TEXT    NOT NULL,
    order_state TEXT    NOT NULL,
    UNIQUE (order_id, version)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key         TEXT    PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders (
    order_id   TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY,
    queue         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL UNIQUE,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE TABLE IF NOT EXISTS documents (
    order_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body         BLOB NOT NULL,
    PRIMARY KEY (order_id, name)
) WITHOUT ROWID;
";

/// The files of the earlier layout (one SQLite database per store), in the order they are
/// migrated, with the tables each held and the columns copied.
const LEGACY: [(&str, &[(&str, &str)]); 4] = [
    (
        "events.db",
        &[
            (
                "events",
                "position, order_id, version, event_id, occurred_at, envelope, order_state",
            ),
            ("idempotency", "key, fingerprint, response, expires_at"),
        ],
    ),
    (
        "projection.db",
        &[
            ("orders", "order_id, status, version, created_at, body"),
            ("checkpoints", "name, position"),
        ],
    ),
    (
        "queues.db",
        &[(
            "messages",
            "seq, queue, message_id, body, sent_at, receive_count",
        )],
    ),
    (
        "documents.db",
        &[("documents", "order_id, name, content_type, body")],
    ),
];

/// Where the legacy files go once migrated: kept, not deleted, until an operator does.
const MIGRATED: &str = "migrated-from-four-files";

/// The names of one data directory's files: the one place that spells them.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The database: events, idempotency records, read model, checkpoint, queues, documents.
    pub fn database(&self) -> PathBuf {
        self.root.join("orders.db")
    }

    /// Held by the one `orders dev` process that writes the directory.
    fn lock_file(&self) -> PathBuf {
        self.root.join("orders.lock")
    }

    /// Held by the one rebuild that may run at a time.
    pub(super) fn rebuild_lock(&self) -> PathBuf {
        self.root.join("rebuild.lock")
    }

    fn legacy_files(&self) -> Vec<PathBuf> {
        LEGACY
            .iter()
            .map(|(name, _)| self.root.join(name))
            .filter(|p| p.is_file())
            .collect()
    }

    /// The database of a directory `orders dev` has written, for tools that work beside it
    /// (audit, rebuild, dead letters): refused, with what to do, if there is none.
    pub fn existing_database(&self) -> Result<PathBuf, StoreError> {
        let db = self.database();
        if db.is_file() {
            return Ok(db);
        }
        let message = if self.legacy_files().is_empty() {
            format!(
                "{} has no orders.db (is it a data directory of orders dev?)",
                self.root.display()
            )
        } else {
            format!(
                "{} was written by an earlier release (events.db, projection.db, ...): run \
                 `orders dev --data {}` once to migrate it into orders.db, then try again",
                self.root.display(),
                self.root.display()
            )
        };
        Err(StoreError::new("opening the data directory", message))
    }

    /// Creates the directory if need be and takes its lock: one writing process at a time.
    pub(super) fn lock(&self) -> Result<File, StoreError> {
        std::fs::create_dir_all(&self.root).map_err(|e| {
            StoreError::new(
                "creating the data directory",
                format!("{}: {e}", self.root.display()),
            )
        })?;
        let lock = File::create(self.lock_file())
            .map_err(|e| StoreError::new("locking the data directory", e))?;
        match lock.try_lock() {
            Ok(()) => Ok(lock),
            Err(TryLockError::WouldBlock) => Err(StoreError::new(
                "locking the data directory",
                format!(
                    "{} is in use by another orders process",
                    self.root.display()
                ),
            )),
            Err(TryLockError::Error(e)) => Err(StoreError::new("locking the data directory", e)),
        }
    }

    /// Opens the database for writing (the caller holds the lock), creating it, or
    /// migrating a directory of the earlier layout into it first.
    pub(super) fn open_for_writing(&self) -> Result<Connection, StoreError> {
        let db = self.database();
        if !db.is_file() && !self.legacy_files().is_empty() {
            self.migrate()?;
        } else if db.is_file() && !self.legacy_files().is_empty() {
            // Migrated, then stopped before the old files were moved aside.
            self.move_legacy_aside()?;
        }
        let conn = sqlite::open(&db, Durability::Full)
            .map_err(|e| StoreError::new("opening the database", e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| StoreError::new("opening the database", e))?;
        if version > LAYOUT_VERSION {
            return Err(StoreError::new(
                "opening the database",
                format!(
                    "{} was written by a newer release (layout {version}; this one reads {LAYOUT_VERSION}): \
                     use that release, or a fresh --data directory",
                    db.display()
                ),
            ));
        }
        if version == 1 {
            namespace_idempotency_keys(&conn)
                .map_err(|e| StoreError::new("moving idempotency keys into namespaces", e))?;
        }
        if (1..LAYOUT_VERSION).contains(&version) {
            keep_message_errors(&conn)
                .map_err(|e| StoreError::new("adding the messages' last error", e))?;
        }
        create_schema(&conn).map_err(|e| StoreError::new("creating the database", e))?;
        Ok(conn)
    }

    /// Copies every table of the legacy files into a new database beside them, which only
    /// becomes `orders.db` (by a rename) once complete: a crash midway leaves the old files
    /// as they were, and the next start migrates again.
    fn migrate(&self) -> Result<(), StoreError> {
        let err = |e: rusqlite::Error| StoreError::new("migrating the data directory", e);
        let started = std::time::Instant::now();
        let partial = self.root.join("orders.db.migrating");
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
        }
        let conn = sqlite::open(&partial, Durability::Full).map_err(err)?;
        create_schema(&conn).map_err(err)?;
        let mut copied = Vec::new();
        for (file, tables) in LEGACY {
            let path = self.root.join(file);
            if !path.is_file() {
                continue;
            }
            conn.execute("ATTACH DATABASE ?1 AS legacy", [path.display().to_string()])
                .map_err(err)?;
            let result = (|| {
                for (table, columns) in tables {
                    let exists: bool = conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM legacy.sqlite_master WHERE type = 'table' AND name = ?1)",
                        [table],
                        |r| r.get(0),
                    )?;
                    if exists {
                        let n = conn.execute(
                            &format!("INSERT INTO main.{table} ({columns}) SELECT {columns} FROM legacy.{table}"),
                            [],
                        )?;
                        copied.push(format!("{n} {table}"));
                    }
                }
                Ok(())
            })();
            conn.execute("DETACH DATABASE legacy", []).map_err(err)?;
            result.map_err(err)?;
        }
        namespace_idempotency_keys(&conn).map_err(err)?;
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .map_err(err)?;
        drop(conn);
        std::fs::rename(&partial, self.database())
            .and_then(|()| File::open(&self.root)?.sync_all())
            .map_err(|e| StoreError::new("migrating the data directory", e))?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
        }
        self.move_legacy_aside()?;
        tracing::warn!(
            dir = %self.root.display(),
            copied = %copied.join(", "),
            took = ?started.elapsed(),
            "migrated a data directory of the earlier four-file layout into orders.db; the old files are in {MIGRATED}/"
        );
        Ok(())
    }

    fn move_legacy_aside(&self) -> Result<(), StoreError> {
        let aside = self.root.join(MIGRATED);
        std::fs::create_dir_all(&aside)
            .map_err(|e| StoreError::new("moving the migrated files aside", e))?;
        for (file, _) in LEGACY {
            for suffix in ["", "-wal", "-shm"] {
                let name = format!("{file}{suffix}");
                let from = self.root.join(&name);
                if from.exists() {
                    std::fs::rename(&from, aside.join(&name))
                        .map_err(|e| StoreError::new("moving the migrated files aside", e))?;
                }
            }
        }
        Ok(())
    }
}

/// Moves the idempotency keys of an earlier layout into their namespaces and marks the
/// database as of this layout, in one transaction: keys already moved are never moved again.
fn namespace_idempotency_keys(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let done = super::idempotency::namespace_legacy_keys(&tx)?;
    tx.pragma_update(None, "user_version", NAMESPACED_KEYS)?;
    tx.commit()?;
    tracing::info!(
        moved = done.moved,
        dropped = done.dropped,
        "moved the idempotency keys of an earlier layout into their namespaces"
    );
    Ok(())
}

/// Adds the messages' `last_error` column (layout 3), unless a database created with it
/// (a migration from the four-file layout) has it already.
fn keep_message_errors(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let has_column: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('messages') WHERE name = 'last_error')",
        [],
        |r| r.get(0),
    )?;
    if !has_column {
        tx.execute_batch("ALTER TABLE messages ADD COLUMN last_error TEXT")?;
    }
    tx.pragma_update(None, "user_version", LAYOUT_VERSION)?;
    tx.commit()
}

fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    super::parked::create_table(conn)?;
    super::read_model::ensure_indexes(conn)?;
    conn.pragma_update(None, "user_version", LAYOUT_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let events = Connection::open(dir.path().join("events.db")).unwrap();
        events
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE events (position INTEGER PRIMARY KEY, order_id TEXT NOT NULL,
                   version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, occurred_at INTEGER NOT NULL,
                   envelope TEXT NOT NULL, order_state TEXT NOT NULL, UNIQUE (order_id, version));
                 CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                   response TEXT NOT NULL, expires_at INTEGER NOT NULL);
                 INSERT INTO events VALUES (1, 'A', 1, 'e1', 0, '{}', '{}'), (2, 'A', 2, 'e2', 0, '{}', '{}');",
            )
            .unwrap();
        let queues = Connection::open(dir.path().join("queues.db")).unwrap();
        queues
            .execute_batch(
                "CREATE TABLE messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL,
                   message_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, sent_at INTEGER NOT NULL,
                   visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT);
                 INSERT INTO messages VALUES (7, 'order-received', 'm7', '{}', 0, 0, 2, 'r');",
            )
            .unwrap();
        dir
    }

    #[test]
    fn a_directory_of_the_four_file_layout_is_migrated_whole_and_its_files_moved_aside() {
        let dir = legacy_dir();
        let data = DataDir::new(dir.path());
        let conn = data.open_for_writing().unwrap();
        let events: i64 = conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        let message: (String, i64) = conn
            .query_row(
                "SELECT queue, receive_count FROM messages WHERE seq = 7",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(events, 2);
        assert_eq!(message, ("order-received".into(), 2));
        assert!(!dir.path().join("events.db").exists());
        assert!(dir.path().join(MIGRATED).join("events.db").is_file());
        assert!(dir.path().join(MIGRATED).join("queues.db").is_file());
        assert!(!dir.path().join("orders.db.migrating").exists());
    }

    #[test]
    fn tools_refuse_an_unmigrated_directory_and_say_how_to_migrate_it() {
        let dir = legacy_dir();
        let err = DataDir::new(dir.path()).existing_database().unwrap_err();
        assert!(err.to_string().contains("orders dev --data"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = DataDir::new(empty.path()).existing_database().unwrap_err();
        assert!(err.to_string().contains("no orders.db"), "{err}");
    }

    #[test]
    fn a_database_of_layout_1_has_its_idempotency_keys_moved_into_namespaces_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let event = "0193a0b4-7c5e-7d2a-9f1e-3b4c5d6e7f80";
        let conn = data.open_for_writing().unwrap();
        conn.execute_batch(&format!(
            "PRAGMA user_version = 1;
             INSERT INTO idempotency VALUES ('handled:received:{event}', '{event}', '{{}}', 0),
                                            ('key-1', 'fp', '{{}}', 0);"
        ))
        .unwrap();
        drop(conn);
        let keys = |conn: &Connection| -> Vec<String> {
            conn.prepare("SELECT key FROM idempotency ORDER BY key")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let moved = vec![
            "api/anonymous/key-1".to_owned(),
            format!("handler/received/{event}"),
        ];
        let conn = data.open_for_writing().unwrap();
        assert_eq!(keys(&conn), moved);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, LAYOUT_VERSION);
        drop(conn);
        // Moved keys are not taken for keys of layout 1 again (a `/` would drop them).
        assert_eq!(keys(&data.open_for_writing().unwrap()), moved);
    }

    #[test]
    fn a_database_of_layout_2_keeps_its_messages_and_gains_their_last_error() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(dir.path()).unwrap();
        Connection::open(data.database())
            .unwrap()
            .execute_batch(
                "PRAGMA user_version = 2;
                 CREATE TABLE messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL,
                   message_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, sent_at INTEGER NOT NULL,
                   receive_count INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO messages VALUES (3, 'order-received-dlq', 'm3', '{}', 0, 5);",
            )
            .unwrap();
        for _ in 0..2 {
            let conn = data.open_for_writing().unwrap();
            let row: (i64, Option<String>) = conn
                .query_row(
                    "SELECT receive_count, last_error FROM messages WHERE seq = 3",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(row, (5, None));
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, LAYOUT_VERSION);
        }
    }

    #[test]
    fn a_database_of_a_newer_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        drop(data.open_for_writing().unwrap());
        Connection::open(data.database())
            .unwrap()
            .pragma_update(None, "user_version", LAYOUT_VERSION + 1)
            .unwrap();
        let err = data.open_for_writing().unwrap_err();
        assert!(err.to_string().contains("newer release"), "{err}");
    }
}
