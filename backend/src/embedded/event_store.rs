//! The embedded event store: `events.db`, one row per event, a global position, unique
//! `(order_id, version)`, and one writer thread that commits concurrent appends together
//! so that they share one fsync (group commit).

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events_schema::{ChainHash, Envelope, Order, OrderId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::watch;

use super::sqlite::{self, Durability, GroupWriter, ReadPool, micros, parse_json};
use crate::ports::{
    Append, AppendError, Claim, EventStore, Head, IdempotencyRecord, IdempotencyStore, StoreError,
};

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
);
";

/// A claim that a running request holds; older ones are presumed abandoned.
const IN_PROGRESS_EXPIRY: Duration = Duration::from_secs(60);
/// How many queued appends one commit may take at most.
const MAX_GROUP: usize = 1024;

/// An event serialized by the caller, so that the writer thread only writes.
struct Row {
    version: u64,
    event_id: String,
    occurred_at: i64,
    envelope: String,
    order_state: String,
}

struct PreparedAppend {
    order_id: String,
    expected_version: u64,
    rows: Vec<Row>,
    idempotency: Option<SavedRow>,
}

/// A saved idempotent response: key, fingerprint, response JSON, expiry (µs).
type SavedRow = (String, String, String, i64);

/// What the writer thread commits: events (maybe with a response), or a response alone.
enum Write {
    Append(PreparedAppend),
    SaveResponse(SavedRow),
}

type InProgress = Arc<Mutex<HashMap<String, (String, Instant)>>>;

pub struct SqliteEventStore {
    writer: GroupWriter<Write, Result<(), AppendError>>,
    reads: ReadPool,
    /// The highest committed position, for the change feed to wait on.
    committed: watch::Receiver<u64>,
    in_progress: InProgress,
}

impl SqliteEventStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = sqlite::open_with_schema(path, Durability::Full, SCHEMA)
            .map_err(|e| StoreError::new("opening the event store", e))?;
        let last: u64 = conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(|e| StoreError::new("reading the event store", e))?;
        conn.execute(
            "DELETE FROM idempotency WHERE expires_at < ?1",
            [micros(Utc::now())],
        )
        .map_err(|e| StoreError::new("expiring idempotency records", e))?;
        let (notify, committed) = watch::channel(last);
        let writer =
            GroupWriter::spawn("event-store-writer", conn, MAX_GROUP, move |conn, group| {
                commit(conn, group, &notify)
            })
            .map_err(|e| StoreError::new("starting the event store writer", e))?;
        Ok(Self {
            writer,
            reads: ReadPool::new(path.to_path_buf()),
            committed,
            in_progress: Arc::default(),
        })
    }

    pub fn reads(&self) -> &ReadPool {
        &self.reads
    }

    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    fn forget_claim(&self, key: &str) {
        self.in_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    async fn submit(&self, write: Write) -> Result<(), AppendError> {
        self.writer.submit(write).await.unwrap_or_else(|| {
            Err(StoreError::new("appending events", "the writer thread has stopped").into())
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::new("serializing an event", e))
}

fn prepare(append: &Append) -> Result<PreparedAppend, StoreError> {
    let mut rows = Vec::with_capacity(append.events.len());
    for r in &append.events {
        rows.push(Row {
            version: r.envelope.version,
            event_id: r.envelope.event_id.to_string(),
            occurred_at: micros(r.envelope.occurred_at),
            envelope: to_json(&r.envelope)?,
            order_state: to_json(&r.order)?,
        });
    }
    let idempotency = match &append.idempotency {
        Some(rec) => Some(idempotency_row(rec)?),
        None => None,
    };
    Ok(PreparedAppend {
        order_id: append.order_id.to_string(),
        expected_version: append.expected_version,
        rows,
        idempotency,
    })
}

fn idempotency_row(rec: &IdempotencyRecord) -> Result<SavedRow, StoreError> {
    let response = serde_json::to_string(&rec.response)
        .map_err(|e| StoreError::new("serializing a saved response", e))?;
    Ok((
        rec.key.clone(),
        rec.fingerprint.clone(),
        response,
        micros(rec.expires_at),
    ))
}

/// Commits a group of writes in one transaction: an answer for each.
fn commit(
    conn: &mut Connection,
    group: &[Write],
    notify: &watch::Sender<u64>,
) -> Vec<Result<(), AppendError>> {
    match commit_group(conn, group) {
        Ok((outcomes, last_position)) => {
            notify.send_if_modified(|p| {
                let moved = last_position > *p;
                *p = (*p).max(last_position);
                moved
            });
            outcomes
        }
        Err(e) => {
            tracing::error!(error = %e, "event store commit failed");
            group
                .iter()
                .map(|_| Err(StoreError::new("committing events", &e).into()))
                .collect()
        }
    }
}

type GroupOutcome = (Vec<Result<(), AppendError>>, u64);

fn commit_group(conn: &mut Connection, group: &[Write]) -> rusqlite::Result<GroupOutcome> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    for write in group {
        let append = match write {
            Write::Append(append) => append,
            Write::SaveResponse((key, fingerprint, response, expires_at)) => {
                save_response(&tx, key, fingerprint, response, *expires_at)?;
                outcomes.push(Ok(()));
                continue;
            }
        };
        let sp = tx.savepoint()?;
        let outcome = match apply_one(&sp, append) {
            Ok(true) => {
                sp.commit()?;
                Ok(())
            }
            Ok(false) => Err(conflict(append)),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(conflict(append))
            }
            Err(e) => return Err(e),
        };
        outcomes.push(outcome);
    }
    let last: u64 = tx
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    tx.commit()?;
    Ok((outcomes, last))
}

fn conflict(append: &PreparedAppend) -> AppendError {
    match OrderId::parse(&append.order_id) {
        Ok(order_id) => AppendError::Conflict {
            order_id,
            expected: append.expected_version,
        },
        Err(e) => StoreError::new("appending events", e).into(),
    }
}

/// Writes one append if the order is still at its expected version; `false` if not.
fn apply_one(conn: &Connection, append: &PreparedAppend) -> rusqlite::Result<bool> {
    let current: u64 = conn
        .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE order_id = ?1")?
        .query_row([&append.order_id], |r| r.get(0))?;
    if current != append.expected_version {
        return Ok(false);
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (order_id, version, event_id, occurred_at, envelope, order_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for row in &append.rows {
        insert.execute(params![
            append.order_id,
            row.version,
            row.event_id,
            row.occurred_at,
            row.envelope,
            row.order_state
        ])?;
    }
    if let Some((key, fingerprint, response, expires_at)) = &append.idempotency {
        save_response(conn, key, fingerprint, response, *expires_at)?;
    }
    Ok(true)
}

fn save_response(
    conn: &Connection,
    key: &str,
    fingerprint: &str,
    response: &str,
    expires_at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO idempotency (key, fingerprint, response, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key, fingerprint, response, expires_at])?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn head(&self, order_id: &OrderId) -> Result<Option<Head>, StoreError> {
        let id = order_id.to_string();
        self.reads
            .read("reading an order's latest event", move |conn| {
                let row: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT order_state, envelope FROM events WHERE order_id = ?1
                         ORDER BY version DESC LIMIT 1",
                    )?
                    .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((order, envelope)) = row else {
                    return Ok(None);
                };
                let order: Order = parse_json(&order)?;
                let hash = envelope_hash(&envelope)?;
                Ok(Some(Head { order, hash }))
            })
            .await
    }

    async fn history(&self, order_id: &OrderId) -> Result<Vec<Envelope>, StoreError> {
        let id = order_id.to_string();
        self.reads
            .read("reading an order's history", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT envelope FROM events WHERE order_id = ?1 ORDER BY version",
                )?;
                let rows = stmt.query_map([&id], |r| r.get::<_, String>(0))?;
                rows.map(|raw| parse_json(&raw?)).collect()
            })
            .await
    }

    async fn append(&self, append: Append) -> Result<(), AppendError> {
        let prepared = prepare(&append)?;
        let result = self.submit(Write::Append(prepared)).await;
        if let Some(rec) = &append.idempotency {
            // Only now that the saved response is visible may others stop seeing "in progress".
            self.forget_claim(&rec.key);
        }
        result
    }
}

/// The `hash` member of a stored envelope, without parsing the rest.
fn envelope_hash(envelope: &str) -> rusqlite::Result<ChainHash> {
    #[derive(serde::Deserialize)]
    struct HashOnly {
        hash: ChainHash,
    }
    parse_json::<HashOnly>(envelope).map(|h| h.hash)
}

#[async_trait]
impl IdempotencyStore for SqliteEventStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let (in_progress, reads) = (self.in_progress.clone(), self.reads.clone());
        let (key, fingerprint) = (key.to_owned(), fingerprint.to_owned());
        sqlite::blocking("claiming an idempotency key", move || {
            claim(&in_progress, &reads, key, fingerprint, now)
        })
        .await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.forget_claim(key);
        Ok(())
    }

    async fn complete(&self, record: IdempotencyRecord) -> Result<(), StoreError> {
        // A response without events still goes through the writer, so it is as durable.
        let result = self
            .submit(Write::SaveResponse(idempotency_row(&record)?))
            .await;
        self.forget_claim(&record.key);
        result.map_err(|e| match e {
            AppendError::Store(s) => s,
            other => StoreError::new("saving an idempotent response", other),
        })
    }
}

/// The in-progress map is held while the saved record is read, and a claim leaves the map
/// only after its record is committed: so no request can miss both.
fn claim(
    in_progress: &InProgress,
    reads: &ReadPool,
    key: String,
    fingerprint: String,
    now: DateTime<Utc>,
) -> rusqlite::Result<Claim> {
    let mut held = in_progress.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((held_fp, since)) = held.get(&key)
        && since.elapsed() < IN_PROGRESS_EXPIRY
    {
        return Ok(if *held_fp == fingerprint {
            Claim::InProgress
        } else {
            Claim::Mismatch
        });
    }
    let saved: Option<(String, String)> = reads.with_conn(|conn| {
        conn.prepare_cached(
            "SELECT fingerprint, response FROM idempotency WHERE key = ?1 AND expires_at >= ?2",
        )?
        .query_row(params![key, micros(now)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
    })?;
    if let Some((saved_fp, response)) = saved {
        if saved_fp != fingerprint {
            return Ok(Claim::Mismatch);
        }
        return Ok(Claim::Replay(parse_json(&response)?));
    }
    held.insert(key, (fingerprint, Instant::now()));
    Ok(Claim::Acquired)
}
