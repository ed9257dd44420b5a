//! The embedded backend: every port on SQLite files in one data directory, for `orders dev`
//! and for tests. `events.db` holds the facts (fsync on every commit); `projection.db`
//! holds what is derived from them.

mod change_feed;
mod event_store;
mod read_model;
mod sqlite;

use std::{
    fs::{File, TryLockError},
    path::{Path, PathBuf},
    sync::Arc,
};

pub use change_feed::{STREAM_ARN, SqliteChangeFeed, sequence_number};
pub use event_store::SqliteEventStore;
pub use read_model::SqliteReadModel;

use crate::ports::StoreError;

/// All embedded adapters over one data directory, which this value holds locked.
pub struct Embedded {
    pub events: Arc<SqliteEventStore>,
    pub read_model: Arc<SqliteReadModel>,
    pub feed: Arc<SqliteChangeFeed>,
    dir: PathBuf,
    _lock: File,
}

impl Embedded {
    /// Opens (creating if needed) the data directory. Only one process may hold it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::new(
                "creating the data directory",
                format!("{}: {e}", dir.display()),
            )
        })?;
        let lock = File::create(dir.join("orders.lock"))
            .map_err(|e| StoreError::new("locking the data directory", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::new(
                    "locking the data directory",
                    format!("{} is in use by another orders process", dir.display()),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::new("locking the data directory", e));
            }
        }
        let events = Arc::new(SqliteEventStore::open(&dir.join("events.db"))?);
        let read_model = Arc::new(SqliteReadModel::open(&dir.join("projection.db"))?);
        let feed = Arc::new(SqliteChangeFeed::new(
            events.reads().clone(),
            read_model.writer().clone(),
            events.committed(),
        ));
        Ok(Self {
            events,
            read_model,
            feed,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
