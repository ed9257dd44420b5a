//! The embedded change feed: committed events handed over in memory by the writer, and the
//! `events` table read by position whenever memory does not continue from the checkpoint
//! (at start, after a failure, or when the projector fell so far behind that the hand-over
//! buffer overflowed). The checkpoint is durable, in the `checkpoints` table.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use events_schema::{Order, Recorded};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::{
    sqlite::{ReadPool, parse_json},
    writer::Writer,
};
use crate::ports::{Change, ChangeFeed, Checkpoint, FeedError, StoreError};

/// The projector's row in `checkpoints`.
const PROJECTOR: &str = "projector";
/// Committed events the hand-over keeps for the projector; past that the feed reads them
/// from the table instead.
const HANDOFF_CAPACITY: usize = 32_768;

/// An event the writer committed, at its global position.
pub(super) struct Committed {
    pub(super) position: u64,
    pub(super) recorded: Recorded,
}

/// A committed event in the hand-over, with the position of the event committed just
/// before it: the buffer continues from a checkpoint only if some entry follows it directly.
struct Handed {
    after: u64,
    position: u64,
    recorded: Recorded,
}

/// Where the writer leaves committed events for the feed.
pub(super) struct Handoff {
    capacity: usize,
    buffer: Mutex<VecDeque<Handed>>,
    /// The highest committed position.
    committed: AtomicU64,
    arrived: Notify,
}

impl Handoff {
    pub(super) fn new(committed: u64) -> Self {
        Self::with_capacity(committed, HANDOFF_CAPACITY)
    }

    fn with_capacity(committed: u64, capacity: usize) -> Self {
        Self {
            capacity,
            buffer: Mutex::new(VecDeque::new()),
            committed: AtomicU64::new(committed),
            arrived: Notify::new(),
        }
    }

    /// Called by the writer after each commit, with the group's events in position order.
    pub(super) fn committed(&self, events: Vec<Committed>) {
        let Some(last) = events.last().map(|e| e.position) else {
            return;
        };
        let mut after = self.committed.load(Ordering::Acquire);
        {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            // When the projector is this far behind, it reads the table: dropping here
            // loses nothing, it only moves the reading there.
            if buffer.len() + events.len() <= self.capacity {
                for e in events {
                    buffer.push_back(Handed {
                        after,
                        position: e.position,
                        recorded: e.recorded,
                    });
                    after = e.position;
                }
            }
        }
        self.committed.store(last, Ordering::Release);
        self.arrived.notify_waiters();
    }

    pub(super) fn committed_position(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Up to `max` events right after `checkpoint`, if memory has them; drops what is at or
    /// before it.
    fn take_after(&self, checkpoint: u64, max: usize) -> Option<Vec<Change>> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        while buffer.front().is_some_and(|h| h.position <= checkpoint) {
            buffer.pop_front();
        }
        if buffer.front()?.after > checkpoint {
            // A gap: what comes next is only in the table.
            return None;
        }
        // Only what follows on without a gap: events dropped while the buffer was full lie
        // between two entries, and are read from the table when their turn comes.
        let mut changes = Vec::with_capacity(max.min(buffer.len()));
        let mut last = checkpoint;
        while changes.len() < max {
            match buffer.front() {
                Some(h) if h.after <= last => {}
                _ => break,
            }
            let Some(h) = buffer.pop_front() else { break };
            last = h.position;
            changes.push(Change {
                at: at(h.position),
                recorded: h.recorded,
            });
        }
        Some(changes)
    }
}

fn at(position: u64) -> Checkpoint {
    Checkpoint(position.to_string())
}

fn position(at: &Checkpoint) -> Result<u64, StoreError> {
    at.0.parse().map_err(|e| {
        StoreError::new(
            "reading a checkpoint",
            format!("{:?} is not a position: {e}", at.0),
        )
    })
}

pub struct SqliteChangeFeed {
    handoff: std::sync::Arc<Handoff>,
    reads: ReadPool,
    writer: Writer,
    /// The durable checkpoint, as last saved.
    checkpoint: AtomicU64,
}

impl SqliteChangeFeed {
    pub(super) fn new(
        handoff: std::sync::Arc<Handoff>,
        reads: ReadPool,
        writer: Writer,
        checkpoint: u64,
    ) -> Self {
        Self {
            handoff,
            reads,
            writer,
            checkpoint: AtomicU64::new(checkpoint),
        }
    }

    /// The checkpoint of the event at `position` (tools that fill a store directly mark it
    /// projected).
    pub fn at(position: u64) -> Checkpoint {
        at(position)
    }

    /// Reads up to `max` events after `after` from the table.
    async fn read_log(&self, after: u64, max: usize) -> Result<Vec<Change>, FeedError> {
        let rows: Vec<(u64, String, String)> = self
            .reads
            .read("reading the change feed", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT position, envelope, order_state FROM events
                     WHERE position > ?1 ORDER BY position LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, max as u64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                rows.collect()
            })
            .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for (position, envelope, order) in rows {
            let recorded = parse_json(&envelope).and_then(|envelope| {
                parse_json::<Order>(&order).map(|order| Recorded { envelope, order })
            });
            match recorded {
                Ok(recorded) => changes.push(Change {
                    at: at(position),
                    recorded,
                }),
                Err(e) if changes.is_empty() => {
                    return Err(FeedError::Unreadable {
                        at: at(position),
                        reason: e.to_string(),
                    });
                }
                // The batch ends before it; it comes first in the next one.
                Err(_) => break,
            }
        }
        Ok(changes)
    }
}

/// The projector's durable checkpoint (0 before any).
pub(super) fn load_checkpoint(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(conn
        .query_row(
            "SELECT position FROM checkpoints WHERE name = ?1",
            [PROJECTOR],
            |r| r.get::<_, u64>(0),
        )
        .optional()?
        .unwrap_or(0))
}

fn save_checkpoint(conn: &Connection, position: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (name, position) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET position = MAX(position, excluded.position)",
    )?
    .execute(params![PROJECTOR, position])
    .map(|_| ())
}

#[async_trait]
impl ChangeFeed for SqliteChangeFeed {
    async fn next_batch(&self, max: usize, wait: Duration) -> Result<Vec<Change>, FeedError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register before looking, so that a commit in between is not missed.
            let arrived = self.handoff.arrived.notified();
            let checkpoint = self.checkpoint.load(Ordering::Acquire);
            if let Some(changes) = self.handoff.take_after(checkpoint, max) {
                return Ok(changes);
            }
            if self.handoff.committed_position() > checkpoint {
                return self.read_log(checkpoint, max).await;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn checkpoint(&self, at: &Checkpoint) -> Result<(), StoreError> {
        let position = position(at)?;
        self.writer
            .write_statement("saving the projector checkpoint", move |conn| {
                save_checkpoint(conn, position)
            })
            .await?;
        self.checkpoint.fetch_max(position, Ordering::AcqRel);
        Ok(())
    }

    async fn lag(&self) -> Result<u64, StoreError> {
        Ok(self
            .handoff
            .committed_position()
            .saturating_sub(self.checkpoint.load(Ordering::Acquire)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(n: u64) -> Recorded {
        let id = events_schema::OrderId::parse(&format!("O-{n}")).unwrap();
        let command = events_schema::Command::Place(events_schema::PlaceOrder {
            description: events_schema::Description::parse("x").unwrap(),
            register_date: chrono::Utc::now(),
            delivery_date: None,
            customer_id: None,
        });
        let events = events_schema::decide(&id, None, &command).unwrap();
        let ctx = events_schema::EventContext {
            occurred_at: chrono::Utc::now(),
            metadata: events_schema::Metadata::default(),
        };
        events_schema::record(&id, None, events, &ctx, uuid::Uuid::now_v7)
            .unwrap()
            .remove(0)
    }

    fn commit(handoff: &Handoff, positions: std::ops::RangeInclusive<u64>) {
        handoff.committed(
            positions
                .map(|position| Committed {
                    position,
                    recorded: recorded(position),
                })
                .collect(),
        );
    }

    fn positions(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| c.at.0.clone()).collect()
    }

    #[test]
    fn events_dropped_while_the_buffer_was_full_are_never_skipped() {
        let handoff = Handoff::with_capacity(0, 4);
        commit(&handoff, 1..=3);
        commit(&handoff, 4..=5); // does not fit: dropped, left to the table
        commit(&handoff, 6..=6); // fits again, after the gap
        let first = handoff.take_after(0, 10).expect("in memory");
        assert_eq!(positions(&first), ["1", "2", "3"], "stops at the gap");
        assert!(
            handoff.take_after(3, 10).is_none(),
            "4 and 5 are only in the table"
        );
        let after_gap = handoff.take_after(5, 10).expect("in memory");
        assert_eq!(positions(&after_gap), ["6"]);
        assert_eq!(handoff.committed_position(), 6);
    }

    #[test]
    fn memory_continues_only_from_the_checkpoint_it_follows() {
        let handoff = Handoff::with_capacity(10, 100);
        commit(&handoff, 11..=14);
        assert!(
            handoff.take_after(9, 10).is_none(),
            "10 is only in the table"
        );
        let two = handoff.take_after(10, 2).expect("in memory");
        assert_eq!(positions(&two), ["11", "12"]);
        // Handed out but not checkpointed: the next call starts after 12 only once 12 is
        // the checkpoint.
        assert!(handoff.take_after(10, 2).is_none());
        assert_eq!(
            positions(&handoff.take_after(12, 5).expect("in memory")),
            ["13", "14"]
        );
    }

    #[test]
    fn a_checkpoint_is_an_opaque_position_that_reads_back() {
        assert_eq!(position(&at(42)).unwrap(), 42);
        assert!(position(&Checkpoint("x".into())).is_err());
    }
}
