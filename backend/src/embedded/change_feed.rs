//! The embedded change feed: a tail of `events.db` by global position, delivered as
//! DynamoDB stream batches, with a durable checkpoint in `projection.db`.

use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::dynamodb;
use events_schema::{Order, Recorded};
use tokio::sync::watch;

use super::{
    read_model::{load_checkpoint, save_checkpoint},
    sqlite::{ReadPool, Writer, parse_json},
};
use crate::{
    item,
    ports::{ChangeFeed, StoreError},
};

/// The embedded stand-in for the event table's stream ARN.
pub const STREAM_ARN: &str =
    "arn:ordersource:embedded:local:000000000000:table/events/stream/local";
pub(super) const CHECKPOINT: &str = "projector";

pub struct SqliteChangeFeed {
    events: ReadPool,
    checkpoints: Writer,
    committed: watch::Receiver<u64>,
}

impl SqliteChangeFeed {
    pub(super) fn new(
        events: ReadPool,
        checkpoints: Writer,
        committed: watch::Receiver<u64>,
    ) -> Self {
        Self {
            events,
            checkpoints,
            committed,
        }
    }

    async fn position(&self) -> Result<u64, StoreError> {
        self.checkpoints
            .write("reading the projector checkpoint", |conn| {
                load_checkpoint(conn, CHECKPOINT)
            })
            .await
    }
}

/// Stream sequence numbers are the global position, zero-padded so that they also sort
/// as strings, like DynamoDB's.
pub fn sequence_number(position: u64) -> String {
    format!("{position:021}")
}

fn parse_sequence_number(seq: &str) -> Result<u64, StoreError> {
    seq.parse()
        .map_err(|e| StoreError::new("reading a sequence number", format!("{seq:?}: {e}")))
}

#[async_trait]
impl ChangeFeed for SqliteChangeFeed {
    async fn next_batch(&self, max: usize, wait: Duration) -> Result<dynamodb::Event, StoreError> {
        let after = self.position().await?;
        let mut committed = self.committed.clone();
        if *committed.borrow_and_update() <= after {
            // Nothing new yet: wake on the next commit, or give up after `wait`.
            let _ = tokio::time::timeout(wait, committed.changed()).await;
        }
        let rows: Vec<(u64, String, String)> = self
            .events
            .read("reading the change feed", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT position, envelope, order_state FROM events
                     WHERE position > ?1 ORDER BY position LIMIT ?2",
                )?;
                let rows = stmt.query_map([after, max as u64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                rows.collect()
            })
            .await?;
        let mut event = dynamodb::Event::default();
        for (position, envelope, order) in rows {
            let recorded = Recorded {
                envelope: parse_json(&envelope)
                    .map_err(|e| StoreError::new("reading an event", e))?,
                order: parse_json::<Order>(&order)
                    .map_err(|e| StoreError::new("reading an event", e))?,
            };
            let record = item::stream_record(&recorded, sequence_number(position), STREAM_ARN)
                .map_err(|e| StoreError::new("building a stream record", e))?;
            event.records.push(record);
        }
        Ok(event)
    }

    async fn checkpoint(&self, sequence_number: &str) -> Result<(), StoreError> {
        let position = parse_sequence_number(sequence_number)?;
        self.checkpoints
            .write("saving the projector checkpoint", move |conn| {
                save_checkpoint(conn, CHECKPOINT, position)
            })
            .await
    }

    async fn lag(&self) -> Result<u64, StoreError> {
        let done = self.position().await?;
        Ok(self.committed.borrow().saturating_sub(done))
    }
}
