//! Bulk, read-only access to a data directory's events and read model, for `orders replay`,
//! `audit verify` and `republish`: histories as stored, in pages of whole histories, and the
//! read model next to the projector's checkpoint. It opens the files by path and takes no
//! lock, so it works beside a running `orders dev` (SQLite's WAL lets it read while the
//! service writes); each page is read in one statement, so it is a consistent snapshot.

use std::path::Path;

use async_trait::async_trait;
use events_schema::OrderId;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    change_feed::load_checkpoint,
    data_dir::DataDir,
    sqlite::{ReadPool, micros},
};
use crate::ports::{
    ArchiveSize, Coverage, EventArchive, EventWindow, HistoryCursor, HistoryPage, Projected,
    ProjectedOrder, ProjectionScan, RawEvent, RawHistory, RowCursor, RowPage, States, StoreError,
    WindowCursor, WindowPage,
};

/// The events and the read model of one data directory, read-only.
pub struct SqliteArchive {
    db: ReadPool,
}

impl SqliteArchive {
    /// Opens the database of `dir`, which `orders dev` must have written.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let database = DataDir::new(dir).existing_database()?;
        Ok(Self {
            db: ReadPool::new(database),
        })
    }
}

/// A larger page cache for long scans (64 MiB). Memory-mapped I/O was measured too: a few
/// percent faster, at the price of the whole file in the resident set.
pub(super) fn tune_for_scans(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -65_536)
}

fn raw_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        order_id: r.get(0)?,
        version: r.get(1)?,
        envelope: r.get(2)?,
        order_state: r.get(3)?,
        position: Some(r.get(4)?),
    })
}

const COLUMNS: &str = "order_id, version, envelope, order_state, position";

fn columns(states: States) -> &'static str {
    match states {
        States::With => COLUMNS,
        States::Without => "order_id, version, envelope, '', position",
    }
}

/// Whole histories after `after` (bytewise order-id order), about `max_events` events, only
/// events at or before `upto` when given. See [`EventArchive::histories`].
pub(super) fn read_histories(
    conn: &Connection,
    after: Option<&str>,
    max_events: usize,
    upto: Option<u64>,
    states: States,
) -> rusqlite::Result<Vec<RawHistory>> {
    let limit = max_events.max(1) as u64;
    let upto = upto.unwrap_or(u64::MAX >> 1);
    // `order_id > ''` is every order: ids are never empty. The (order_id, version) index
    // gives the rows in key order.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM events WHERE order_id > ?1 AND position <= ?2
         ORDER BY order_id, version LIMIT ?3",
        columns(states)
    ))?;
    let rows = stmt
        .query_map(params![after.unwrap_or(""), upto, limit], raw_event)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let full = rows.len() as u64 == limit;
    let mut histories = group(rows);
    if full {
        // The last order may continue past the page: read it again whole, alone if needed.
        if histories.len() > 1 {
            histories.pop();
        } else if let Some(only) = histories.pop() {
            let events = read_history(conn, &only.order_id, upto, states)?;
            histories.push(RawHistory {
                order_id: only.order_id,
                events,
            });
        }
    }
    Ok(histories)
}

pub(super) fn read_history(
    conn: &Connection,
    order_id: &str,
    upto: u64,
    states: States,
) -> rusqlite::Result<Vec<RawEvent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM events WHERE order_id = ?1 AND position <= ?2 ORDER BY version",
        columns(states)
    ))?;
    stmt.query_map(params![order_id, upto], raw_event)?
        .collect()
}

fn group(rows: Vec<RawEvent>) -> Vec<RawHistory> {
    let mut histories: Vec<RawHistory> = Vec::new();
    for row in rows {
        match histories.last_mut() {
            Some(h) if h.order_id == row.order_id => h.events.push(row),
            _ => histories.push(RawHistory {
                order_id: row.order_id.clone(),
                events: vec![row],
            }),
        }
    }
    histories
}

/// The highest global position written so far (0 for an empty store).
pub(super) fn high_water(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
        r.get(0)
    })
}

#[async_trait]
impl EventArchive for SqliteArchive {
    /// Pages in order-id order: the cursor is the last order id handed out, and a page
    /// covers the ids from there through its last order (the last, empty page: to the end).
    async fn histories(
        &self,
        cursor: Option<&HistoryCursor>,
        max_events: usize,
    ) -> Result<HistoryPage, StoreError> {
        let after = cursor.map(|c| c.0.clone());
        let from = after.clone();
        let histories = self
            .db
            .read("reading histories", move |conn| {
                tune_for_scans(conn)?;
                read_histories(conn, from.as_deref(), max_events, None, States::With)
            })
            .await?;
        let through = histories.last().map(|h| h.order_id.clone());
        Ok(HistoryPage {
            next: through.clone().map(HistoryCursor),
            coverage: Coverage::Range { after, through },
            histories,
        })
    }

    async fn history_raw(&self, order_id: &OrderId) -> Result<Vec<RawEvent>, StoreError> {
        let id = order_id.to_string();
        self.db
            .read("reading an order's history", move |conn| {
                read_history(conn, &id, u64::MAX >> 1, States::With)
            })
            .await
    }

    async fn events_between(
        &self,
        window: &EventWindow,
        cursor: Option<&WindowCursor>,
        limit: usize,
    ) -> Result<WindowPage, StoreError> {
        let after: u64 = match cursor {
            Some(c) => c.0.parse().map_err(|e| {
                StoreError::new("reading a window cursor", format!("{:?}: {e}", c.0))
            })?,
            None => 0,
        };
        let (from, to) = (micros(window.from), micros(window.to));
        let order = window.order_id.as_ref().map(ToString::to_string);
        let status = window.status.map(|s| s.as_str());
        let limit = limit.max(1);
        let events = self
            .db
            .read("reading events in a time window", move |conn| {
                tune_for_scans(conn)?;
                // With an order, its (order_id, version) index narrows the scan; without,
                // the table is read in position order.
                let by_order = if order.is_some() {
                    "AND order_id = ?4"
                } else {
                    "AND ?4 IS NULL"
                };
                let sql = format!(
                    "SELECT {COLUMNS} FROM events
                     WHERE position > ?1 AND occurred_at >= ?2 AND occurred_at < ?3 {by_order}
                       AND (?5 IS NULL OR json_extract(envelope, '$.status') = ?5)
                     ORDER BY position LIMIT ?6"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                stmt.query_map(
                    params![after, from, to, order, status, limit as u64],
                    raw_event,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let next = (events.len() == limit)
            .then(|| events.last().and_then(|e| e.position))
            .flatten()
            .map(|p| WindowCursor(p.to_string()));
        Ok(WindowPage { events, next })
    }

    async fn size(&self) -> Result<ArchiveSize, StoreError> {
        self.db
            .read("counting events", |conn| {
                let (events, orders) = conn.query_row(
                    "SELECT COUNT(*), COUNT(DISTINCT order_id) FROM events",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok(ArchiveSize { events, orders })
            })
            .await
    }
}

fn projected_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectedOrder> {
    Ok(ProjectedOrder {
        order_id: r.get(0)?,
        body: r.get(1)?,
    })
}

#[async_trait]
impl ProjectionScan for SqliteArchive {
    async fn projected(&self) -> Result<Projected, StoreError> {
        self.db
            .read("reading the projector checkpoint", |conn| {
                load_checkpoint(conn).map(Projected::Through)
            })
            .await
    }

    async fn rows_for(&self, page: &HistoryPage) -> Result<Vec<ProjectedOrder>, StoreError> {
        match &page.coverage {
            Coverage::Range { after, through } => {
                let (after, through) = (after.clone(), through.clone());
                self.db
                    .read("reading the read model", move |conn| {
                        tune_for_scans(conn)?;
                        // Both bounds as plain comparisons, so that the primary key bounds
                        // the scan.
                        let upper = if through.is_some() {
                            "AND order_id <= ?2"
                        } else {
                            "AND ?2 IS NULL"
                        };
                        let mut stmt = conn.prepare_cached(&format!(
                            "SELECT order_id, body FROM orders WHERE order_id > ?1 {upper}
                             ORDER BY order_id"
                        ))?;
                        stmt.query_map(
                            params![after.unwrap_or_default(), through],
                            projected_order,
                        )?
                        .collect()
                    })
                    .await
            }
            Coverage::Orders => {
                let ids: Vec<String> = page.histories.iter().map(|h| h.order_id.clone()).collect();
                self.db
                    .read("reading the read model", move |conn| {
                        let mut stmt = conn.prepare_cached(
                            "SELECT order_id, body FROM orders WHERE order_id = ?1",
                        )?;
                        let mut rows = Vec::with_capacity(ids.len());
                        for id in ids {
                            if let Some(row) = stmt.query_row([id], projected_order).optional()? {
                                rows.push(row);
                            }
                        }
                        Ok(rows)
                    })
                    .await
            }
        }
    }

    async fn rows(&self, cursor: Option<&RowCursor>, limit: usize) -> Result<RowPage, StoreError> {
        let after = cursor.map(|c| c.0.clone()).unwrap_or_default();
        let limit = limit.max(1);
        let rows = self.db
            .read("reading the read model", move |conn| {
                tune_for_scans(conn)?;
                conn.prepare_cached(
                    "SELECT order_id, body FROM orders WHERE order_id > ?1 ORDER BY order_id LIMIT ?2",
                )?
                .query_map(params![after, limit as u64], projected_order)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|r| RowCursor(r.order_id.clone())))
            .flatten();
        Ok(RowPage { rows, next })
    }

    async fn get_projected(&self, order_id: &str) -> Result<Option<ProjectedOrder>, StoreError> {
        let id = order_id.to_owned();
        self.db
            .read("reading the read model", move |conn| {
                conn.prepare_cached("SELECT order_id, body FROM orders WHERE order_id = ?1")?
                    .query_row([id], projected_order)
                    .optional()
            })
            .await
    }
}
