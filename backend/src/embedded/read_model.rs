//! The embedded read model: `projection.db`, one row per order, indexed by status and
//! creation time; the change feed's checkpoint lives in the same file.

use std::path::Path;

use async_trait::async_trait;
use events_schema::{Order, OrderId, Status};
use rusqlite::{OptionalExtension, params};

use super::sqlite::{self, Durability, ReadPool, Writer, micros, parse_json};
use crate::ports::{ListQuery, Page, ReadModel, StoreError};

const SCHEMA: &str = "
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
);
";

/// The secondary indexes of `orders`: a name, the other name, the columns. `orders
/// rebuild` builds them on its fresh table under whichever name is free and then renames
/// the table, so the live table has one or the other (see `rebuild`).
pub(super) const INDEXES: [(&str, &str, &str); 2] = [
    (
        "orders_by_status",
        "orders_rebuild_by_status",
        "(status, created_at, order_id)",
    ),
    (
        "orders_by_created",
        "orders_rebuild_by_created",
        "(created_at, order_id)",
    ),
];

/// Creates the tables and, under either of their names, the indexes that are missing.
pub(super) fn ensure_schema(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    for (name, other, columns) in INDEXES {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'orders' AND name IN (?1, ?2))",
            [name, other],
            |r| r.get(0),
        )?;
        if !exists {
            conn.execute_batch(&format!("CREATE INDEX {name} ON orders {columns}"))?;
        }
    }
    Ok(())
}

pub struct SqliteReadModel {
    writer: Writer,
    reads: ReadPool,
}

impl SqliteReadModel {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Derived data: a power cut may lose the last commits, and the durable checkpoint
        // then replays them; version-guarded upserts make that harmless.
        let conn = sqlite::open(path, Durability::Normal)
            .and_then(|c| ensure_schema(&c).map(|()| c))
            .map_err(|e| StoreError::new("opening the read model", e))?;
        Ok(Self {
            writer: Writer::new(conn),
            reads: ReadPool::new(path.to_path_buf()),
        })
    }

    pub(super) fn writer(&self) -> &Writer {
        &self.writer
    }
}

#[async_trait]
impl ReadModel for SqliteReadModel {
    async fn apply(&self, orders: &[Order]) -> Result<(), StoreError> {
        let rows = orders
            .iter()
            .map(|o| {
                serde_json::to_string(o).map(|body| {
                    (
                        o.order_id.to_string(),
                        o.status.as_str(),
                        o.version,
                        micros(o.created_at),
                        body,
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::new("serializing the read model", e))?;
        self.writer
            .write("updating the read model", move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut upsert = tx.prepare_cached(
                        "INSERT INTO orders (order_id, status, version, created_at, body)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (order_id) DO UPDATE SET
                             status = excluded.status, version = excluded.version,
                             created_at = excluded.created_at, body = excluded.body
                         WHERE excluded.version > orders.version",
                    )?;
                    for (id, status, version, created, body) in &rows {
                        upsert.execute(params![id, status, version, created, body])?;
                    }
                }
                tx.commit()
            })
            .await
    }

    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, StoreError> {
        let id = order_id.to_string();
        self.reads
            .read("reading the read model", move |conn| {
                let body: Option<String> = conn
                    .prepare_cached("SELECT body FROM orders WHERE order_id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?;
                body.as_deref().map(parse_json::<Order>).transpose()
            })
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let status = query.status.map(Status::as_str);
        let (after_created, after_id) = match &query.after {
            Some(c) => (micros(c.created_at), c.order_id.to_string()),
            None => (i64::MIN, String::new()),
        };
        let limit = query.limit;
        let items = self
            .reads
            .read("listing orders", move |conn| {
                // One more than asked tells whether another page follows.
                let fetch = (limit + 1) as i64;
                let mut stmt = conn.prepare_cached(
                    "SELECT body FROM orders
                     WHERE (?1 IS NULL OR status = ?1) AND (created_at, order_id) > (?2, ?3)
                     ORDER BY created_at, order_id LIMIT ?4",
                )?;
                let rows = stmt
                    .query_map(params![status, after_created, after_id, fetch], |r| {
                        r.get::<_, String>(0)
                    })?;
                rows.map(|b| parse_json::<Order>(&b?))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(Page::from_overfetch(items, limit))
    }
}

/// The change feed's checkpoint: the last global position handled.
pub(super) fn load_checkpoint(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<u64> {
    Ok(conn
        .query_row(
            "SELECT position FROM checkpoints WHERE name = ?1",
            [name],
            |r| r.get::<_, u64>(0),
        )
        .optional()?
        .unwrap_or(0))
}

pub(super) fn save_checkpoint(
    conn: &rusqlite::Connection,
    name: &str,
    position: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (name, position) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET position = MAX(position, excluded.position)",
    )?
    .execute(params![name, position])
    .map(|_| ())
}
