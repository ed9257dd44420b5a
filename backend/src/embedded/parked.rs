//! The embedded parked records: the `parked` table of `orders.db`, one row per change feed
//! position the projector gave up on, written through the one writer. A row points into
//! the `events` table (the record itself is never copied): a replay reads it back from
//! there.
//!
//! The operator's `orders parked replay` runs beside a running `orders dev`: it opens
//! [`DetachedProjection`], a writer of its own on the same database (SQLite serializes the
//! two writers; each holds the lock for one short transaction), so that the replayed
//! record goes through the same read model and parked-table code as the service's.

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events_schema::{Order, Recorded};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    change_feed::Handoff,
    data_dir::DataDir,
    read_model::SqliteReadModel,
    sqlite::{self, Durability, ReadPool, micros, parse_json},
    writer::{Writer, WriterThreads},
};
use crate::ports::{Checkpoint, ParkedRecord, ParkedRecords, StoreError};

/// The table, created with the rest of the schema (and by tools that open a database
/// written before it existed).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS parked (
    position  INTEGER PRIMARY KEY,
    order_id  TEXT,
    version   INTEGER,
    event_id  TEXT,
    attempts  INTEGER NOT NULL,
    error     TEXT    NOT NULL,
    parked_at INTEGER NOT NULL
);
";

pub struct SqliteParked {
    writer: Writer,
    reads: ReadPool,
}

impl SqliteParked {
    pub(super) fn new(writer: Writer, reads: ReadPool) -> Self {
        Self { writer, reads }
    }
}

fn position(at: &Checkpoint) -> Result<u64, StoreError> {
    at.0.parse().map_err(|e| {
        StoreError::new(
            "parking a record",
            format!("{:?} is not a position: {e}", at.0),
        )
    })
}

fn parked_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ParkedRecord> {
    let position: u64 = r.get(0)?;
    let parked_at: i64 = r.get(6)?;
    Ok(ParkedRecord {
        id: position.to_string(),
        position: position.to_string(),
        order_id: r.get(1)?,
        version: r.get(2)?,
        event_id: r.get(3)?,
        attempts: r.get(4)?,
        error: r.get(5)?,
        parked_at: DateTime::<Utc>::from_timestamp_micros(parked_at).unwrap_or_default(),
    })
}

#[async_trait]
impl ParkedRecords for SqliteParked {
    async fn park(
        &self,
        at: &Checkpoint,
        recorded: Option<&Recorded>,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        let position = position(at)?;
        let order_id = recorded.map(|r| r.envelope.order_id.to_string());
        let version = recorded.map(|r| r.envelope.version);
        let event_id = recorded.map(|r| r.envelope.event_id.to_string());
        let error = error.to_owned();
        let now = micros(Utc::now());
        self.writer
            .write_statement("parking a record", move |conn| {
                conn.prepare_cached(
                    "INSERT INTO parked (position, order_id, version, event_id, attempts, error, parked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (position) DO UPDATE SET attempts = parked.attempts + excluded.attempts,
                         error = excluded.error, parked_at = excluded.parked_at",
                )?
                .execute(params![position, order_id, version, event_id, attempts, error, now])
                .map(|_| ())
            })
            .await
    }

    async fn list(&self) -> Result<Vec<ParkedRecord>, StoreError> {
        self.reads
            .read("listing parked records", |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT position, order_id, version, event_id, attempts, error, parked_at
                     FROM parked ORDER BY position",
                )?;
                stmt.query_map([], parked_row)?.collect()
            })
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.reads
            .read("counting parked records", |conn| {
                conn.prepare_cached("SELECT COUNT(*) FROM parked")?
                    .query_row([], |r| r.get(0))
            })
            .await
    }

    async fn records(&self, parked: &ParkedRecord) -> Result<Vec<Recorded>, StoreError> {
        let position = position(&Checkpoint(parked.position.clone()))?;
        let row: Option<(String, String)> = self
            .reads
            .read("reading a parked record", move |conn| {
                conn.prepare_cached("SELECT envelope, order_state FROM events WHERE position = ?1")?
                    .query_row([position], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .await?;
        let Some((envelope, order)) = row else {
            return Err(StoreError::new(
                "reading a parked record",
                format!("no event at position {position}"),
            ));
        };
        let recorded = parse_json(&envelope)
            .and_then(|envelope| {
                parse_json::<Order>(&order).map(|order| Recorded { envelope, order })
            })
            .map_err(|e| {
                StoreError::new(
                    "reading a parked record",
                    format!("the event at position {position} is not readable: {e}"),
                )
            })?;
        Ok(vec![recorded])
    }

    async fn remove(&self, parked: &ParkedRecord) -> Result<bool, StoreError> {
        let position = position(&Checkpoint(parked.position.clone()))?;
        self.writer
            .write_statement("removing a parked record", move |conn| {
                conn.prepare_cached("DELETE FROM parked WHERE position = ?1")?
                    .execute([position])
                    .map(|n| n > 0)
            })
            .await
    }
}

/// The read model and the parked records of a data directory that another process (`orders
/// dev`) may be running, written through a writer of this process's own: what `orders
/// parked replay` projects with.
pub struct DetachedProjection {
    pub read_model: Arc<SqliteReadModel>,
    pub parked: Arc<SqliteParked>,
    // Dropped last: the writer finishes what is queued.
    _threads: WriterThreads,
}

impl DetachedProjection {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let database = DataDir::new(dir).existing_database()?;
        let conn = sqlite::open(&database, Durability::Full)
            .and_then(|conn| create_table(&conn).map(|()| conn))
            .map_err(|e| StoreError::new("opening the database", e))?;
        let reads = ReadPool::new(database.clone());
        // Nothing is appended here: the hand-over to a change feed stays unused.
        let (writer, threads) = Writer::spawn(&database, conn, Arc::new(Handoff::new(0)))?;
        Ok(Self {
            read_model: Arc::new(SqliteReadModel::new(writer.clone(), reads.clone())),
            parked: Arc::new(SqliteParked::new(writer, reads)),
            _threads: threads,
        })
    }
}

pub(super) fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}
