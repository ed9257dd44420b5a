//! The embedded event store: the `events` table (one row per event, a global position,
//! unique `(order_id, version)`) and the `idempotency` table, written by the one writer.
//! Appends are checked against the order's head that the writer remembers (looked up once
//! per order it has not seen lately), so an append costs its inserts and nothing more.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events_schema::{ChainHash, Order, OrderId, Recorded};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    change_feed::Committed,
    sqlite::{ReadPool, micros, parse_json},
    writer::Writer,
};
use crate::LedgerKey;
use crate::ports::{
    Append, AppendError, Claim, EventPage, EventStore, Head, IdempotencyRecord, IdempotencyStore,
    StoreError, claim_holds,
};

/// An event serialized by the caller, so that the writer thread only writes.
struct Row {
    version: u64,
    event_id: String,
    occurred_at: i64,
    envelope: String,
    order_state: String,
}

/// An append as the writer takes it: serialized by the caller, so that the writer thread
/// only writes; the events themselves go on to the change feed once committed.
pub(super) struct PreparedAppend {
    order_id: String,
    expected_version: u64,
    rows: Vec<Row>,
    idempotency: Option<SavedRow>,
    events: Vec<Recorded>,
}

/// A saved idempotent response: key, fingerprint, response JSON, expiry (µs).
type SavedRow = (String, String, String, i64);

/// The claims that running requests hold: key → (fingerprint, the `now` of the claim). A
/// claim holds for `IN_PROGRESS_EXPIRY` by the `now` of later claims, as on DynamoDB; older
/// ones are presumed abandoned.
type InProgress = Arc<Mutex<HashMap<LedgerKey, (String, DateTime<Utc>)>>>;

pub struct SqliteEventStore {
    writer: Writer,
    reads: ReadPool,
    in_progress: InProgress,
}

impl SqliteEventStore {
    pub(super) fn new(writer: Writer, reads: ReadPool) -> Self {
        Self {
            writer,
            reads,
            in_progress: Arc::default(),
        }
    }

    fn forget_claim(&self, key: &LedgerKey) {
        self.in_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// The latest version of each order the writer has seen lately: what an append is checked
/// against. An order not in it is looked up once (or, when the append expects a new order,
/// not at all: the unique `(order_id, version)` refuses a second first event).
pub(super) struct Heads(quick_cache::unsync::Cache<String, u64>);

impl Heads {
    pub(super) fn new(capacity: usize) -> Self {
        Self(quick_cache::unsync::Cache::new(capacity))
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::new("serializing an event", e))
}

fn prepare(append: Append) -> Result<PreparedAppend, StoreError> {
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
        events: append.events,
    })
}

fn idempotency_row(rec: &IdempotencyRecord) -> Result<SavedRow, StoreError> {
    let response = serde_json::to_string(&rec.response)
        .map_err(|e| StoreError::new("serializing a saved response", e))?;
    Ok((
        rec.key.as_str().to_owned(),
        rec.fingerprint.clone(),
        response,
        micros(rec.expires_at),
    ))
}

/// Writes one append in the writer's transaction if the order is still at its expected
/// version: the committed events with their positions, or the conflict. An `Err` is a
/// failure of the database itself, which fails the whole group.
pub(super) fn apply_append(
    conn: &Connection,
    heads: &mut Heads,
    append: PreparedAppend,
) -> rusqlite::Result<Result<Vec<Committed>, AppendError>> {
    let current = match heads.0.get(&append.order_id) {
        Some(version) => Some(*version),
        None if append.expected_version == 0 => None,
        None => Some(
            conn.prepare_cached(
                "SELECT COALESCE(MAX(version), 0) FROM events WHERE order_id = ?1",
            )?
            .query_row([&append.order_id], |r| r.get(0))?,
        ),
    };
    if current.is_some_and(|v| v != append.expected_version) {
        return Ok(Err(conflict(&append)));
    }
    // Several events go in all or none; one insert is atomic on its own.
    let several = append.rows.len() > 1;
    if several {
        conn.prepare_cached("SAVEPOINT append")?.execute([])?;
    }
    let mut positions = Vec::with_capacity(append.rows.len());
    let inserted = (|| {
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
            positions.push(conn.last_insert_rowid() as u64);
        }
        Ok(())
    })();
    match inserted {
        Ok(()) => {
            if several {
                conn.prepare_cached("RELEASE append")?.execute([])?;
            }
        }
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            // Another writer got there first (a head this writer did not know).
            if several {
                conn.prepare_cached("ROLLBACK TO append")?.execute([])?;
                conn.prepare_cached("RELEASE append")?.execute([])?;
            }
            heads.0.remove(&append.order_id);
            return Ok(Err(conflict(&append)));
        }
        Err(e) => return Err(e),
    }
    if let Some((key, fingerprint, response, expires_at)) = &append.idempotency {
        save_response(conn, key, fingerprint, response, *expires_at)?;
    }
    if let Some(last) = append.rows.last() {
        heads.0.insert(append.order_id.clone(), last.version);
    }
    Ok(Ok(positions
        .into_iter()
        .zip(append.events)
        .map(|(position, recorded)| Committed { position, recorded })
        .collect()))
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
        // A point lookup: run here rather than hop to a blocking thread and back.
        self.reads
            .read_now("reading an order's latest event", move |conn| {
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
    }

    async fn events(
        &self,
        order_id: &OrderId,
        after: u64,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let id = order_id.to_string();
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let items = self
            .reads
            .read("reading an order's events", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT envelope FROM events WHERE order_id = ?1 AND version > ?2
                     ORDER BY version LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![id, after, fetch], |r| r.get::<_, String>(0))?;
                rows.map(|raw| parse_json(&raw?))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(EventPage::from_overfetch(items, limit))
    }

    async fn at_version(
        &self,
        order_id: &OrderId,
        version: u64,
    ) -> Result<Option<Order>, StoreError> {
        let id = order_id.to_string();
        let Ok(version) = i64::try_from(version) else {
            return Ok(None);
        };
        // A point lookup on the (order_id, version) index.
        self.reads
            .read_now("reading an order at a version", move |conn| {
                conn.prepare_cached(
                    "SELECT order_state FROM events WHERE order_id = ?1 AND version = ?2",
                )?
                .query_row(params![id, version], |r| r.get::<_, String>(0))
                .optional()?
                .map(|raw| parse_json(&raw))
                .transpose()
            })
    }

    async fn at_time(
        &self,
        order_id: &OrderId,
        at: DateTime<Utc>,
    ) -> Result<Option<Order>, StoreError> {
        let id = order_id.to_string();
        let at = micros(at);
        self.reads
            .read("reading an order at a time", move |conn| {
                conn.prepare_cached(
                    "SELECT order_state FROM events WHERE order_id = ?1 AND occurred_at <= ?2
                     ORDER BY version DESC LIMIT 1",
                )?
                .query_row(params![id, at], |r| r.get::<_, String>(0))
                .optional()?
                .map(|raw| parse_json(&raw))
                .transpose()
            })
            .await
    }

    async fn append(&self, append: Append) -> Result<(), AppendError> {
        let key = append.idempotency.as_ref().map(|rec| rec.key.clone());
        let prepared = prepare(append)?;
        let result = self.writer.append(prepared).await;
        if let Some(key) = key {
            // Only now that the saved response is visible may others stop seeing "in progress".
            self.forget_claim(&key);
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
        key: &LedgerKey,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // A point lookup: run here rather than hop to a blocking thread and back.
        claim(
            &self.in_progress,
            &self.reads,
            key.clone(),
            fingerprint.to_owned(),
            now,
        )
        .map_err(|e| StoreError::new("claiming an idempotency key", e))
    }

    async fn release(&self, key: &LedgerKey) -> Result<(), StoreError> {
        self.forget_claim(key);
        Ok(())
    }

    async fn complete(&self, record: IdempotencyRecord) -> Result<(), StoreError> {
        // A response without events still goes through the writer, so it is as durable.
        let (key, fingerprint, response, expires_at) = idempotency_row(&record)?;
        let result = self
            .writer
            .write_statement("saving an idempotent response", move |conn| {
                save_response(conn, &key, &fingerprint, &response, expires_at)
            })
            .await;
        self.forget_claim(&record.key);
        result
    }
}

/// The in-progress map is held while the saved record is read, and a claim leaves the map
/// only after its record is committed: so no request can miss both.
fn claim(
    in_progress: &InProgress,
    reads: &ReadPool,
    key: LedgerKey,
    fingerprint: String,
    now: DateTime<Utc>,
) -> rusqlite::Result<Claim> {
    let mut held = in_progress.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((held_fp, since)) = held.get(&key)
        && claim_holds(*since, now)
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
        .query_row(params![key.as_str(), micros(now)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    })?;
    if let Some((saved_fp, response)) = saved {
        if saved_fp != fingerprint {
            return Ok(Claim::Mismatch);
        }
        return Ok(Claim::Replay(parse_json(&response)?));
    }
    held.insert(key, (fingerprint, now));
    Ok(Claim::Acquired)
}
