//! The embedded read model: the `orders` table, one row per order, indexed by status and
//! creation time, upserted by the one writer with newer versions only.

use async_trait::async_trait;
use events_schema::{Order, OrderId, Status};
use rusqlite::{OptionalExtension, params};

use super::{
    sqlite::{ReadPool, micros, parse_json},
    writer::Writer,
};
use crate::ports::{ListQuery, Page, ReadModel, StoreError};

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

/// Creates, under either of their names, the indexes of `orders` that are missing.
pub(super) fn ensure_indexes(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
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
    pub(super) fn new(writer: Writer, reads: ReadPool) -> Self {
        Self { writer, reads }
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
                {
                    let mut upsert = conn.prepare_cached(
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
                Ok(())
            })
            .await
    }

    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, StoreError> {
        let id = order_id.to_string();
        self.reads.read_now("reading the read model", move |conn| {
            let body: Option<String> = conn
                .prepare_cached("SELECT body FROM orders WHERE order_id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            body.as_deref().map(parse_json::<Order>).transpose()
        })
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let status = query.status.map(Status::as_str);
        let (after_created, after_id) = match &query.after {
            Some(c) => (micros(c.created_at), c.order_id.to_string()),
            None => (i64::MIN, String::new()),
        };
        let (after_created, after_id) = match (&query.after, query.newest_first) {
            (None, true) => (i64::MAX, String::new()),
            _ => (after_created, after_id),
        };
        let limit = query.limit;
        let newest_first = query.newest_first;
        let items = self
            .reads
            .read("listing orders", move |conn| {
                // One more than asked tells whether another page follows.
                let fetch = (limit + 1) as i64;
                // Two fixed statements rather than one assembled per call: both stay in the
                // statement cache, and each walks its index in one direction.
                let mut stmt = conn.prepare_cached(if newest_first {
                    "SELECT body FROM orders
                     WHERE (?1 IS NULL OR status = ?1) AND (created_at, order_id) < (?2, ?3)
                     ORDER BY created_at DESC, order_id DESC LIMIT ?4"
                } else {
                    "SELECT body FROM orders
                     WHERE (?1 IS NULL OR status = ?1) AND (created_at, order_id) > (?2, ?3)
                     ORDER BY created_at, order_id LIMIT ?4"
                })?;
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

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let counted = self
            .reads
            .read("counting orders by status", |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT status, COUNT(*) FROM orders GROUP BY status")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(Status::ALL
            .iter()
            .map(|status| {
                let n = counted
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map_or(0, |(_, n)| *n);
                (*status, n)
            })
            .collect())
    }
}
