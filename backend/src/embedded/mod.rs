//! The embedded backend: every port on SQLite files in one data directory, for `orders dev`
//! and for tests. `events.db` holds the facts (fsync on every commit); `projection.db`
//! holds what is derived from them.

mod archive;
mod bus;
mod change_feed;
mod documents;
mod event_store;
mod queues;
mod read_model;
mod rebuild;
mod sqlite;

use std::{
    fs::{File, TryLockError},
    path::{Path, PathBuf},
    sync::Arc,
};

pub use archive::SqliteArchive;
pub use bus::{EmbeddedBus, LOCAL_ACCOUNT, LOCAL_REGION, bus_event};
pub use change_feed::{STREAM_ARN, SqliteChangeFeed, sequence_number};
pub use documents::SqliteDocuments;
pub use event_store::SqliteEventStore;
pub use queues::{QueueConfig, SqliteQueues};
pub use read_model::SqliteReadModel;
pub use rebuild::{BeforeSwap, SqliteRebuild, fold_raw};

use events_schema::RouteTable;

use crate::ports::StoreError;

/// All embedded adapters over one data directory, which this value holds locked.
pub struct Embedded {
    pub events: Arc<SqliteEventStore>,
    pub read_model: Arc<SqliteReadModel>,
    pub feed: Arc<SqliteChangeFeed>,
    pub queues: Arc<SqliteQueues>,
    pub bus: Arc<EmbeddedBus>,
    pub documents: Arc<SqliteDocuments>,
    dir: PathBuf,
    _lock: File,
}

impl Embedded {
    /// Opens (creating if needed) the data directory, with queues for `routes`. Only one
    /// process may hold it.
    pub fn open(dir: &Path, routes: &RouteTable) -> Result<Self, StoreError> {
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
        let queues = Arc::new(SqliteQueues::open(
            &dir.join("queues.db"),
            queue_configs(routes),
        )?);
        let bus = Arc::new(EmbeddedBus::new(routes, queues.clone())?);
        let documents = Arc::new(SqliteDocuments::open(&dir.join("documents.db"))?);
        Ok(Self {
            events,
            read_model,
            feed,
            queues,
            bus,
            documents,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ports(&self) -> crate::ports::Ports {
        crate::ports::Ports {
            events: self.events.clone(),
            idempotency: self.events.clone(),
            read_model: self.read_model.clone(),
            feed: self.feed.clone(),
            publisher: self.bus.clone(),
            queues: self.queues.clone(),
            documents: self.documents.clone(),
            telemetry: std::sync::Arc::new(crate::ports::NoTelemetry),
        }
    }
}

/// Every route's queue with its redrive policy.
pub fn queue_configs(routes: &RouteTable) -> Vec<QueueConfig> {
    routes
        .routes
        .iter()
        .map(|r| QueueConfig {
            name: r.queue.clone(),
            dead_letter_queue: r.dead_letter_queue.clone(),
            max_receive_count: r.max_receive_count,
        })
        .collect()
}
