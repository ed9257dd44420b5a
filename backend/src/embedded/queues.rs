//! Durable embedded queues in `queues.db`, with SQS's semantics: at-least-once delivery, a
//! visibility timeout, a receive count, and redrive to the queue's dead-letter queue once a
//! message has been received `max_receive_count` times.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use super::sqlite::{self, Durability, Writer, micros};
use crate::ports::{QueueMessage, QueueStats, Queues, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY,
    queue         TEXT    NOT NULL,
    message_id    TEXT    NOT NULL UNIQUE,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at, seq);
";

/// Receives and deletes skip the fsync that sends pay. A send acknowledges a message to
/// its sender, so it must survive a power cut; a receive only hides a message and counts
/// it, and a delete removes one that was handled: losing either to a power cut delivers
/// the message again (earlier, or once more), which at-least-once delivery allows and the
/// idempotent handlers absorb. Every later send fsyncs them along with itself.
fn relaxed<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    sqlite::with_durability(conn, Durability::Normal, Durability::Full, f)
}

/// A queue's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub name: String,
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

pub struct SqliteQueues {
    writer: Writer,
    configs: HashMap<String, QueueConfig>,
    /// Per queue (dead-letter queues included): wakes its long-polling receivers when a
    /// message is sent to it, and only them.
    sent: HashMap<String, Arc<Notify>>,
}

impl SqliteQueues {
    pub fn open(path: &Path, configs: Vec<QueueConfig>) -> Result<Self, StoreError> {
        // A message is acknowledged to its sender (the projector, which then checkpoints):
        // it must survive a power cut, so every commit is fsync'd.
        let conn = sqlite::open_with_schema(path, Durability::Full, SCHEMA)
            .map_err(|e| StoreError::new("opening the queues", e))?;
        let sent = configs
            .iter()
            .flat_map(|c| [c.name.clone(), c.dead_letter_queue.clone()])
            .map(|q| (q, Arc::new(Notify::new())))
            .collect();
        Ok(Self {
            writer: Writer::new(conn),
            configs: configs.into_iter().map(|c| (c.name.clone(), c)).collect(),
            sent,
        })
    }

    fn config(&self, queue: &str) -> Result<&QueueConfig, StoreError> {
        self.configs
            .get(queue)
            .ok_or_else(|| StoreError::new("finding a queue", format!("no queue named {queue:?}")))
    }

    /// Sends to several queues in one durable step.
    pub async fn send_many(&self, sends: Vec<(String, String)>) -> Result<(), StoreError> {
        let mut woken = Vec::new();
        for (queue, _) in &sends {
            let sent = self.wakeup(queue, "sending a message")?;
            if !woken.iter().any(|w| Arc::ptr_eq(w, sent)) {
                woken.push(sent.clone());
            }
        }
        let now = micros(Utc::now());
        self.writer
            .write("sending messages", move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO messages (queue, message_id, body, sent_at, visible_at)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )?;
                    for (queue, body) in &sends {
                        insert.execute(params![
                            queue,
                            uuid::Uuid::now_v7().to_string(),
                            body,
                            now
                        ])?;
                    }
                }
                tx.commit()
            })
            .await?;
        for sent in woken {
            sent.notify_waiters();
        }
        Ok(())
    }

    /// What wakes the receivers of `queue` (a route queue or a dead-letter queue).
    fn wakeup(&self, queue: &str, context: &'static str) -> Result<&Arc<Notify>, StoreError> {
        self.sent
            .get(queue)
            .ok_or_else(|| StoreError::new(context, format!("no queue named {queue:?}")))
    }

    async fn try_receive(
        &self,
        config: &QueueConfig,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let config = config.clone();
        let visibility = i64::try_from(visibility.as_micros()).unwrap_or(i64::MAX);
        self.writer
            .write("receiving messages", move |conn| relaxed(conn, |conn| {
                let now = micros(Utc::now());
                let tx = conn.transaction()?;
                let mut received = Vec::new();
                {
                    let mut ready = tx.prepare_cached(
                        "SELECT seq, message_id, body, sent_at, receive_count FROM messages
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
                    )?;
                    let rows = ready
                        .query_map(params![config.name, now, max as i64], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, u32>(4)?,
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    let mut to_dlq = tx.prepare_cached(
                        "UPDATE messages SET queue = ?2, receive_count = 0, visible_at = ?3, receipt = NULL
                         WHERE seq = ?1",
                    )?;
                    let mut take = tx.prepare_cached(
                        "UPDATE messages SET receive_count = ?2, visible_at = ?3, receipt = ?4
                         WHERE seq = ?1",
                    )?;
                    for (seq, message_id, body, sent_at, count) in rows {
                        // SQS moves a message once a receive would exceed the limit.
                        if count >= config.max_receive_count {
                            to_dlq.execute(params![seq, config.dead_letter_queue, now])?;
                            continue;
                        }
                        // The receipt names the row, so deleting by it is a key lookup.
                        let receipt = format!("{seq}:{}", uuid::Uuid::now_v7().simple());
                        take.execute(params![seq, count + 1, now + visibility, receipt])?;
                        received.push(QueueMessage {
                            message_id,
                            receipt_handle: receipt,
                            body,
                            receive_count: count + 1,
                            sent_at: DateTime::from_timestamp_micros(sent_at).unwrap_or_default(),
                        });
                    }
                }
                tx.commit()?;
                Ok(received)
            }))
            .await
    }
}

#[async_trait]
impl Queues for SqliteQueues {
    async fn send(&self, queue: &str, bodies: &[String]) -> Result<(), StoreError> {
        self.send_many(
            bodies
                .iter()
                .map(|b| (queue.to_owned(), b.clone()))
                .collect(),
        )
        .await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let config = self.config(queue)?.clone();
        let sent = self.wakeup(queue, "receiving messages")?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a send in between is not missed.
            let notified = sent.notified();
            let messages = self.try_receive(&config, max, visibility).await?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            // Sends wake us; invisible messages reappear on their own, so look again at
            // least every 100 ms.
            let nap = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_millis(100));
            if nap.is_zero() {
                return Ok(messages);
            }
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn delete(&self, queue: &str, receipt_handles: &[String]) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        let handles = receipt_handles.to_vec();
        self.writer
            .write("deleting messages", move |conn| {
                relaxed(conn, |conn| {
                    let tx = conn.transaction()?;
                    {
                        let mut delete = tx.prepare_cached(
                            "DELETE FROM messages WHERE seq = ?1 AND queue = ?2 AND receipt = ?3",
                        )?;
                        for h in &handles {
                            // A receipt this queue did not issue matches no row.
                            let Some(seq) = h
                                .split_once(':')
                                .and_then(|(seq, _)| seq.parse::<i64>().ok())
                            else {
                                continue;
                            };
                            delete.execute(params![seq, queue, h])?;
                        }
                    }
                    tx.commit()
                })
            })
            .await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        let config = self.config(queue)?.clone();
        self.writer
            .write("reading queue depth", move |conn| {
                let now = micros(Utc::now());
                let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<u64> {
                    conn.prepare_cached(sql)?.query_row(p, |r| r.get(0))
                };
                Ok(QueueStats {
                    queue: config.name.clone(),
                    visible: count(
                        "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND visible_at <= ?2",
                        &[&config.name, &now],
                    )?,
                    in_flight: count(
                        "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND visible_at > ?2",
                        &[&config.name, &now],
                    )?,
                    dead_letters: count(
                        "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                        &[&config.dead_letter_queue],
                    )?,
                })
            })
            .await
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<QueueMessage>, StoreError> {
        let dlq = self.config(queue)?.dead_letter_queue.clone();
        self.writer
            .write("listing dead letters", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT message_id, body, sent_at FROM messages WHERE queue = ?1 ORDER BY seq",
                )?;
                let rows = stmt.query_map([&dlq], |r| {
                    Ok(QueueMessage {
                        message_id: r.get(0)?,
                        receipt_handle: String::new(),
                        body: r.get(1)?,
                        receive_count: 0,
                        sent_at: DateTime::from_timestamp_micros(r.get(2)?).unwrap_or_default(),
                    })
                })?;
                rows.collect()
            })
            .await
    }

    async fn redrive(&self, queue: &str) -> Result<u64, StoreError> {
        let config = self.config(queue)?.clone();
        let moved = self
            .writer
            .write("redriving dead letters", move |conn| {
                let now = micros(Utc::now());
                conn.prepare_cached(
                    "UPDATE messages SET queue = ?1, receive_count = 0, visible_at = ?3, receipt = NULL
                     WHERE queue = ?2",
                )?
                .execute(params![config.name, config.dead_letter_queue, now])
            })
            .await?;
        if let Some(sent) = self.sent.get(queue) {
            sent.notify_waiters();
        }
        Ok(moved as u64)
    }
}
