//! The embedded backend: every port on one SQLite database (`orders.db`) in one data
//! directory, for `orders dev` and for tests. One writer thread commits every write in
//! groups (appends first, then pipeline work), one transaction and one fsync per group;
//! committed events go to the projector in memory.

mod archive;
mod bus;
mod change_feed;
mod data_dir;
mod documents;
mod event_store;
mod idempotency;
mod parked;
mod queues;
mod read_model;
mod rebuild;
mod sqlite;
mod writer;

use std::{path::Path, sync::Arc};

pub use archive::SqliteArchive;
pub use bus::{EmbeddedBus, LOCAL_ACCOUNT, LOCAL_REGION, bus_event};
pub use change_feed::SqliteChangeFeed;
pub use data_dir::DataDir;
pub use documents::SqliteDocuments;
pub use event_store::SqliteEventStore;
pub use parked::{DetachedProjection, SqliteParked};
pub use queues::{DetachedQueues, MessageSink, QueueConfig, SqliteQueues};
pub use read_model::SqliteReadModel;
pub use rebuild::{BeforeSwap, SqliteRebuild, fold_raw};

use events_schema::RouteTable;
use rusqlite::Connection;

use crate::ports::{Metric, StoreError, Telemetry};

/// All embedded adapters over one data directory, which this value holds locked.
pub struct Embedded {
    pub events: Arc<SqliteEventStore>,
    pub read_model: Arc<SqliteReadModel>,
    pub feed: Arc<SqliteChangeFeed>,
    pub queues: Arc<SqliteQueues>,
    pub bus: Arc<EmbeddedBus>,
    pub documents: Arc<SqliteDocuments>,
    pub parked: Arc<SqliteParked>,
    telemetry: Arc<EmbeddedTelemetry>,
    handoff: Arc<change_feed::Handoff>,
    dir: DataDir,
    // Dropped in this order: the writer finishes what is queued, then the lock goes.
    _threads: writer::WriterThreads,
    _lock: std::fs::File,
}

impl Embedded {
    /// Opens (creating if needed, migrating a directory of the earlier layout) the data
    /// directory, with queues for `routes`. Only one process may hold it.
    pub fn open(dir: &Path, routes: &RouteTable) -> Result<Self, StoreError> {
        let data = DataDir::new(dir);
        let lock = data.lock()?;
        let conn = data.open_for_writing()?;
        let start = |e: rusqlite::Error| StoreError::new("opening the database", e);
        idempotency::expire(&conn).map_err(start)?;
        let committed = last_position(&conn).map_err(start)?;
        let checkpoint = change_feed::load_checkpoint(&conn).map_err(start)?;
        let path = data.database();
        let reads = sqlite::ReadPool::new(path.clone());
        let handoff = Arc::new(change_feed::Handoff::new(committed));
        let messages = queues::stored_messages(&conn).map_err(start)?;
        let (writer, threads) = writer::Writer::spawn(&path, conn, handoff.clone())?;
        let queues = Arc::new(SqliteQueues::open(
            messages,
            writer.clone(),
            reads.clone(),
            queue_configs(routes),
        ));
        let bus = Arc::new(EmbeddedBus::new(routes, queues.clone())?);
        Ok(Self {
            events: Arc::new(SqliteEventStore::new(writer.clone(), reads.clone())),
            read_model: Arc::new(SqliteReadModel::new(writer.clone(), reads.clone())),
            feed: Arc::new(SqliteChangeFeed::new(
                handoff.clone(),
                reads.clone(),
                writer.clone(),
                checkpoint,
            )),
            documents: Arc::new(SqliteDocuments::new(writer.clone(), reads.clone())),
            parked: Arc::new(SqliteParked::new(writer.clone(), reads)),
            telemetry: Arc::new(EmbeddedTelemetry { writer }),
            queues,
            bus,
            handoff,
            dir: data,
            _threads: threads,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.root()
    }

    /// The highest position committed so far (0 for an empty store).
    pub fn committed(&self) -> u64 {
        self.handoff.committed_position()
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
            telemetry: self.telemetry.clone(),
            parked: self.parked.clone(),
        }
    }
}

fn last_position(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
        r.get(0)
    })
}

/// The embedded backend's own counters: the writer's and the WAL checkpointer's, and the
/// CPU each pipeline stage reports.
struct EmbeddedTelemetry {
    writer: writer::Writer,
}

impl Telemetry for EmbeddedTelemetry {
    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        self.writer.stats().metrics(&mut out);
        crate::telemetry::stage_metrics(&mut out);
        out
    }
}

/// Every queue the route table declares (each route's and the intake queue) with its
/// redrive policy.
pub fn queue_configs(routes: &RouteTable) -> Vec<QueueConfig> {
    routes
        .queues()
        .map(|q| QueueConfig {
            name: q.queue.to_owned(),
            dead_letter_queue: q.dead_letter_queue.to_owned(),
            max_receive_count: q.max_receive_count,
        })
        .collect()
}
