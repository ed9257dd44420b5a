//! Durable embedded queues with SQS's semantics: at-least-once delivery, a visibility
//! timeout, a receive count, and redrive to the queue's dead-letter queue once a message
//! has been received `max_receive_count` times.
//!
//! Messages are rows of the `messages` table: a send inserts them (durably, through the
//! writer), a delete removes them, a move to the dead-letter queue updates their queue.
//! What changes on every receive (who holds a message until when, and how often it was
//! received) is kept in memory: a receive writes nothing. When a message comes back after
//! its visibility timeout (its handler failed), its receive count is written, so that a
//! message that keeps failing still reaches the dead-letter queue across restarts; a crash
//! otherwise only delivers in-flight messages again, which at-least-once delivery allows.
//!
//! Other processes (`orders dlq redrive`, `orders republish`) write the same table through
//! [`DetachedQueues`]; the running service notices their commits and picks the messages up.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use super::{
    sqlite::{self, Durability, ReadPool, micros},
    writer::Writer,
};
use crate::ports::{QueueMessage, QueueStats, Queues, StoreError, bounded_error};

/// A queue's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub name: String,
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

/// Where the bus sends the messages of its matching rules.
#[async_trait]
pub trait MessageSink: Send + Sync {
    /// Sends to several queues in one durable step: `(queue, body)` pairs.
    async fn send_many(&self, sends: Vec<(String, String)>) -> Result<(), StoreError>;
}

/// One message as a queue holds it.
#[derive(Debug, Clone)]
struct Message {
    seq: i64,
    message_id: String,
    body: Arc<str>,
    sent_at: i64,
    receive_count: u32,
    /// Why handling it failed last (kept in memory like the receive count, written with it).
    last_error: Option<Arc<str>>,
}

struct InFlight {
    message: Message,
    until: Instant,
}

#[derive(Default)]
struct MailboxState {
    ready: VecDeque<Message>,
    in_flight: HashMap<i64, InFlight>,
    dead_letters: u64,
}

struct Mailbox {
    config: QueueConfig,
    state: Mutex<MailboxState>,
    /// Wakes this queue's long-polling receivers when a message is sent to it.
    sent: Notify,
}

/// What a receive took, and what it found to write.
#[derive(Default)]
struct Taken {
    messages: Vec<QueueMessage>,
    /// Messages back from their visibility timeout: their receive counts and last errors.
    returned: Vec<(i64, u32, Option<Arc<str>>)>,
    /// Messages received `max_receive_count` times: to the dead-letter queue.
    exhausted: Vec<Message>,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, max: usize, visibility: Duration) -> Taken {
        let now = Instant::now();
        let mut taken = Taken::default();
        let mut state = self.lock();
        let state = &mut *state;
        let expired: Vec<i64> = state
            .in_flight
            .iter()
            .filter(|(_, f)| f.until <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            if let Some(f) = state.in_flight.remove(&seq) {
                taken
                    .returned
                    .push((seq, f.message.receive_count, f.message.last_error.clone()));
                state.ready.push_front(f.message);
            }
        }
        while taken.messages.len() < max {
            let Some(mut message) = state.ready.pop_front() else {
                break;
            };
            // SQS moves a message once a receive would exceed the limit.
            if message.receive_count >= self.config.max_receive_count {
                taken.exhausted.push(message);
                continue;
            }
            message.receive_count += 1;
            taken.messages.push(QueueMessage {
                message_id: message.message_id.clone(),
                receipt_handle: format!("{}:{}", message.seq, message.receive_count),
                body: message.body.to_string(),
                receive_count: message.receive_count,
                sent_at: DateTime::from_timestamp_micros(message.sent_at).unwrap_or_default(),
                last_error: message.last_error.as_deref().map(str::to_owned),
            });
            state.in_flight.insert(
                message.seq,
                InFlight {
                    message,
                    until: now + visibility,
                },
            );
        }
        taken
    }

    /// The message still in flight under `receipt_handle`, its latest receipt: an older
    /// receipt (the message was received again since) names nothing.
    fn held<'a>(state: &'a mut MailboxState, receipt_handle: &str) -> Option<&'a mut InFlight> {
        let (seq, count) = receipt_handle.split_once(':')?;
        let (seq, count) = (seq.parse::<i64>().ok()?, count.parse::<u32>().ok()?);
        let held = state.in_flight.get_mut(&seq)?;
        (held.message.receive_count == count).then_some(held)
    }

    fn push(&self, messages: impl IntoIterator<Item = Message>) {
        self.lock().ready.extend(messages);
        self.sent.notify_waiters();
    }
}

/// The queues of the running service.
pub struct SqliteQueues {
    writer: Writer,
    reads: ReadPool,
    /// Route queues by name.
    mailboxes: HashMap<String, Arc<Mailbox>>,
    /// Dead-letter queue name → its route queue.
    dead_letter_queues: HashMap<String, String>,
    /// The writer's count of other processes' commits that the mailboxes have caught up with.
    reloaded: AtomicU64,
}

impl SqliteQueues {
    /// The queues of `configs`, holding `messages` (read at start by [`stored_messages`]).
    pub(super) fn open(
        messages: StoredMessages,
        writer: Writer,
        reads: ReadPool,
        configs: Vec<QueueConfig>,
    ) -> Self {
        let queues = Self {
            reloaded: AtomicU64::new(writer.stats().external_changes()),
            writer,
            reads,
            dead_letter_queues: configs
                .iter()
                .map(|c| (c.dead_letter_queue.clone(), c.name.clone()))
                .collect(),
            mailboxes: configs
                .into_iter()
                .map(|config| {
                    (
                        config.name.clone(),
                        Arc::new(Mailbox {
                            config,
                            state: Mutex::default(),
                            sent: Notify::new(),
                        }),
                    )
                })
                .collect(),
        };
        queues.catch_up(messages.0);
        queues
    }

    fn mailbox(&self, queue: &str) -> Result<&Arc<Mailbox>, StoreError> {
        self.mailboxes
            .get(queue)
            .ok_or_else(|| StoreError::new("finding a queue", format!("no queue named {queue:?}")))
    }

    /// Adds the messages of `rows` that the mailboxes do not hold yet, and recounts the
    /// dead letters: how the service takes in what other processes wrote.
    fn catch_up(&self, rows: Vec<(String, Message)>) {
        let mut by_queue: HashMap<&str, Vec<Message>> = HashMap::new();
        let mut dead: HashMap<&str, u64> = HashMap::new();
        for (queue, message) in rows {
            if let Some(route) = self.dead_letter_queues.get(&queue) {
                *dead.entry(route.as_str()).or_default() += 1;
            } else if let Some((name, _)) = self.mailboxes.get_key_value(&queue) {
                by_queue.entry(name.as_str()).or_default().push(message);
            }
        }
        for (name, mailbox) in &self.mailboxes {
            let mut state = mailbox.lock();
            state.dead_letters = dead.get(name.as_str()).copied().unwrap_or(0);
            let Some(messages) = by_queue.remove(name.as_str()) else {
                continue;
            };
            let known: HashSet<i64> = state
                .ready
                .iter()
                .map(|m| m.seq)
                .chain(state.in_flight.keys().copied())
                .collect();
            let before = state.ready.len();
            state
                .ready
                .extend(messages.into_iter().filter(|m| !known.contains(&m.seq)));
            if state.ready.len() > before {
                drop(state);
                mailbox.sent.notify_waiters();
            }
        }
    }

    /// Catches up with other processes' commits, if there were any since the last look.
    async fn reload_if_changed(&self) -> Result<(), StoreError> {
        let seen = self.writer.stats().external_changes();
        if self.reloaded.swap(seen, Ordering::AcqRel) == seen {
            return Ok(());
        }
        tracing::info!("another process wrote to the queues; taking its messages in");
        // Read by the writer, and taken in after its commit: sends committed before it are
        // in the mailboxes by then, so nothing is added twice.
        let rows = self
            .writer
            .write("reloading the queues", all_messages)
            .await?;
        self.catch_up(rows);
        Ok(())
    }

    /// Writes what a receive found: receive counts of returned messages, and moves of
    /// exhausted ones to the dead-letter queue.
    async fn settle(&self, mailbox: &Arc<Mailbox>, taken: Taken) -> Result<(), StoreError> {
        if !taken.returned.is_empty() {
            let returned = taken.returned;
            self.writer
                .write("counting receives", move |conn| {
                    let mut update = conn.prepare_cached(
                        "UPDATE messages SET receive_count = ?2, last_error = ?3 WHERE seq = ?1",
                    )?;
                    for (seq, count, error) in &returned {
                        update.execute(params![seq, count, error.as_deref()])?;
                    }
                    Ok(())
                })
                .await?;
        }
        if !taken.exhausted.is_empty() {
            let dlq = mailbox.config.dead_letter_queue.clone();
            // A dead letter keeps its receive count and last error, for the operator.
            let rows: Vec<(i64, u32, Option<Arc<str>>)> = taken
                .exhausted
                .iter()
                .map(|m| (m.seq, m.receive_count, m.last_error.clone()))
                .collect();
            let moved = {
                let mailbox = mailbox.clone();
                self.writer
                    .run(
                        "moving messages to the dead-letter queue",
                        move |conn| {
                            let mut to_dlq = conn.prepare_cached(
                                "UPDATE messages SET queue = ?2, receive_count = ?3, last_error = ?4
                                 WHERE seq = ?1",
                            )?;
                            for (seq, count, error) in &rows {
                                to_dlq.execute(params![seq, dlq, count, error.as_deref()])?;
                            }
                            Ok(rows.len() as u64)
                        },
                        move |moved| mailbox.lock().dead_letters += moved,
                    )
                    .await
            };
            if let Err(e) = moved {
                // Not moved: they stay in the queue, to be moved at their next receive.
                mailbox.push(taken.exhausted);
                return Err(e);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MessageSink for SqliteQueues {
    async fn send_many(&self, sends: Vec<(String, String)>) -> Result<(), StoreError> {
        let mut targets = Vec::with_capacity(sends.len());
        for (queue, _) in &sends {
            targets.push(self.mailbox(queue)?.clone());
        }
        let now = micros(Utc::now());
        let sends = with_message_ids(sends);
        self.writer
            .run(
                "sending messages",
                move |conn| insert_messages(conn, sends, now),
                move |messages| {
                    let mut by_mailbox: Vec<(&Arc<Mailbox>, Vec<Message>)> = Vec::new();
                    for (mailbox, message) in targets.iter().zip(messages) {
                        match by_mailbox.iter_mut().find(|(m, _)| Arc::ptr_eq(m, mailbox)) {
                            Some((_, list)) => list.push(message.clone()),
                            None => by_mailbox.push((mailbox, vec![message.clone()])),
                        }
                    }
                    for (mailbox, messages) in by_mailbox {
                        mailbox.push(messages);
                    }
                },
            )
            .await
            .map(|_| ())
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
        self.reload_if_changed().await?;
        let mailbox = self.mailbox(queue)?.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a send in between is not missed.
            let notified = mailbox.sent.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut taken = mailbox.take(max, visibility);
            let messages = std::mem::take(&mut taken.messages);
            self.settle(&mailbox, taken).await?;
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
        let mailbox = self.mailbox(queue)?.clone();
        let seqs: Vec<i64> = {
            let mut state = mailbox.lock();
            receipt_handles
                .iter()
                .filter_map(|h| Mailbox::held(&mut state, h).map(|f| f.message.seq))
                .collect()
        };
        if seqs.is_empty() {
            return Ok(());
        }
        let done = seqs.clone();
        self.writer
            .run(
                "deleting messages",
                move |conn| {
                    let mut delete = conn.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
                    for seq in &seqs {
                        delete.execute([seq])?;
                    }
                    Ok(())
                },
                move |()| {
                    let mut state = mailbox.lock();
                    for seq in &done {
                        state.in_flight.remove(seq);
                    }
                },
            )
            .await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        let mailbox = self.mailbox(queue)?;
        let now = Instant::now();
        let state = mailbox.lock();
        let returned = state.in_flight.values().filter(|f| f.until <= now).count() as u64;
        Ok(QueueStats {
            queue: mailbox.config.name.clone(),
            visible: state.ready.len() as u64 + returned,
            in_flight: state.in_flight.len() as u64 - returned,
            dead_letters: state.dead_letters,
        })
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<QueueMessage>, StoreError> {
        let dlq = self.mailbox(queue)?.config.dead_letter_queue.clone();
        self.reads
            .read("listing dead letters", move |conn| {
                dead_letter_rows(conn, &dlq)
            })
            .await
    }

    async fn redrive(&self, queue: &str) -> Result<u64, StoreError> {
        let mailbox = self.mailbox(queue)?.clone();
        let config = mailbox.config.clone();
        let moved = self
            .writer
            .run(
                "redriving dead letters",
                move |conn| redrive_rows(conn, &config),
                move |moved| {
                    {
                        let mut state = mailbox.lock();
                        state.dead_letters = state.dead_letters.saturating_sub(moved.len() as u64);
                    }
                    mailbox.push(moved.iter().cloned());
                },
            )
            .await?;
        Ok(moved.len() as u64)
    }

    async fn redrive_message(&self, queue: &str, message_id: &str) -> Result<bool, StoreError> {
        let mailbox = self.mailbox(queue)?.clone();
        let config = mailbox.config.clone();
        let message_id = message_id.to_owned();
        let moved = self
            .writer
            .run(
                "redriving a dead letter",
                move |conn| redrive_one_row(conn, &config, &message_id),
                move |moved| {
                    if let Some(m) = moved {
                        {
                            let mut state = mailbox.lock();
                            state.dead_letters = state.dead_letters.saturating_sub(1);
                        }
                        mailbox.push([m.clone()]);
                    }
                },
            )
            .await?;
        Ok(moved.is_some())
    }

    async fn dead_letter(&self, queue: &str, body: &str, reason: &str) -> Result<(), StoreError> {
        let mailbox = self.mailbox(queue)?.clone();
        let dlq = mailbox.config.dead_letter_queue.clone();
        let (body, reason) = (body.to_owned(), bounded_error(reason));
        let message_id = uuid::Uuid::now_v7().to_string();
        let now = micros(Utc::now());
        self.writer
            .run(
                "dead-lettering a message",
                move |conn| {
                    conn.prepare_cached(
                        "INSERT INTO messages (queue, message_id, body, sent_at, last_error)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![dlq, message_id, body, now, reason])
                },
                move |_| mailbox.lock().dead_letters += 1,
            )
            .await
            .map(|_| ())
    }

    /// Kept in memory with the in-flight message and written with its receive count when it
    /// comes back (a receive writes nothing either): a crash in between loses the error,
    /// never the message.
    async fn record_failure(
        &self,
        queue: &str,
        receipt_handle: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let mailbox = self.mailbox(queue)?;
        let mut state = mailbox.lock();
        if let Some(held) = Mailbox::held(&mut state, receipt_handle) {
            held.message.last_error = Some(bounded_error(error).into());
        }
        Ok(())
    }
}

/// Inserts messages: `(queue, message id, body)`, the ids made by the caller (off the
/// writer thread).
fn insert_messages(
    conn: &Connection,
    sends: Vec<(String, String, String)>,
    now: i64,
) -> rusqlite::Result<Vec<Message>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (queue, message_id, body, sent_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut messages = Vec::with_capacity(sends.len());
    for (queue, message_id, body) in sends {
        insert.execute(params![queue, message_id, body, now])?;
        messages.push(Message {
            seq: conn.last_insert_rowid(),
            message_id,
            body: body.into(),
            sent_at: now,
            receive_count: 0,
            last_error: None,
        });
    }
    Ok(messages)
}

fn with_message_ids(sends: Vec<(String, String)>) -> Vec<(String, String, String)> {
    sends
        .into_iter()
        .map(|(queue, body)| (queue, uuid::Uuid::now_v7().to_string(), body))
        .collect()
}

fn message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        seq: r.get(0)?,
        message_id: r.get(1)?,
        body: r.get::<_, String>(2)?.into(),
        sent_at: r.get(3)?,
        receive_count: r.get(4)?,
        last_error: r.get::<_, Option<String>>(5)?.map(Into::into),
    })
}

/// Every stored message with its queue, as the service takes them in at start.
pub(super) struct StoredMessages(Vec<(String, Message)>);

pub(super) fn stored_messages(conn: &Connection) -> rusqlite::Result<StoredMessages> {
    all_messages(conn).map(StoredMessages)
}

fn all_messages(conn: &Connection) -> rusqlite::Result<Vec<(String, Message)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, message_id, body, sent_at, receive_count, last_error, queue FROM messages
         ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(6)?, message(r)?)))?;
    rows.collect()
}

fn dead_letter_rows(conn: &Connection, dlq: &str) -> rusqlite::Result<Vec<QueueMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, message_id, body, sent_at, receive_count, last_error FROM messages
         WHERE queue = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([dlq], message)?;
    rows.map(|m| {
        m.map(|m| QueueMessage {
            message_id: m.message_id,
            receipt_handle: String::new(),
            body: m.body.to_string(),
            receive_count: m.receive_count,
            sent_at: DateTime::from_timestamp_micros(m.sent_at).unwrap_or_default(),
            last_error: m.last_error.as_deref().map(str::to_owned),
        })
    })
    .collect()
}

fn redrive_rows(conn: &Connection, config: &QueueConfig) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE messages SET queue = ?1, receive_count = 0, last_error = NULL WHERE queue = ?2
         RETURNING seq, message_id, body, sent_at, receive_count, last_error",
    )?;
    let rows = stmt.query_map(params![config.name, config.dead_letter_queue], message)?;
    let mut moved: Vec<Message> = rows.collect::<rusqlite::Result<_>>()?;
    moved.sort_by_key(|m| m.seq);
    Ok(moved)
}

/// Moves the dead letter `message_id` back to its queue, with a fresh start (no receives,
/// no error); `None` if the dead-letter queue has no such message.
fn redrive_one_row(
    conn: &Connection,
    config: &QueueConfig,
    message_id: &str,
) -> rusqlite::Result<Option<Message>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(
        "UPDATE messages SET queue = ?1, receive_count = 0, last_error = NULL
         WHERE queue = ?2 AND message_id = ?3
         RETURNING seq, message_id, body, sent_at, receive_count, last_error",
    )?
    .query_row(
        params![config.name, config.dead_letter_queue, message_id],
        message,
    )
    .optional()
}

/// The queues of a data directory that another process (`orders dev`) runs: for the
/// operator's tools, which send, list dead letters and redrive with their own connection.
/// The running service notices their commits and takes the messages in.
pub struct DetachedQueues {
    conn: Arc<Mutex<Connection>>,
    reads: ReadPool,
    configs: HashMap<String, QueueConfig>,
}

impl DetachedQueues {
    /// `database` is the data directory's `orders.db`.
    pub fn open(database: &Path, configs: Vec<QueueConfig>) -> Result<Self, StoreError> {
        let conn = sqlite::open(database, Durability::Full)
            .map_err(|e| StoreError::new("opening the queues", e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            reads: ReadPool::new(database.to_path_buf()),
            configs: configs.into_iter().map(|c| (c.name.clone(), c)).collect(),
        })
    }

    fn config(&self, queue: &str) -> Result<QueueConfig, StoreError> {
        self.configs
            .get(queue)
            .cloned()
            .ok_or_else(|| StoreError::new("finding a queue", format!("no queue named {queue:?}")))
    }

    async fn write<T: Send + 'static>(
        &self,
        context: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        sqlite::blocking(context, move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<QueueMessage>, StoreError> {
        let dlq = self.config(queue)?.dead_letter_queue;
        self.reads
            .read("listing dead letters", move |conn| {
                dead_letter_rows(conn, &dlq)
            })
            .await
    }

    /// Moves every message of `queue`'s dead-letter queue back to `queue`; how many.
    pub async fn redrive(&self, queue: &str) -> Result<u64, StoreError> {
        let config = self.config(queue)?;
        self.write("redriving dead letters", move |conn| {
            redrive_rows(conn, &config).map(|m| m.len() as u64)
        })
        .await
    }

    /// Moves the dead letter `message_id` back to `queue`; `false` if there is no such one.
    pub async fn redrive_message(&self, queue: &str, message_id: &str) -> Result<bool, StoreError> {
        let config = self.config(queue)?;
        let message_id = message_id.to_owned();
        self.write("redriving a dead letter", move |conn| {
            redrive_one_row(conn, &config, &message_id).map(|m| m.is_some())
        })
        .await
    }
}

#[async_trait]
impl MessageSink for DetachedQueues {
    async fn send_many(&self, sends: Vec<(String, String)>) -> Result<(), StoreError> {
        for (queue, _) in &sends {
            self.config(queue)?;
        }
        let now = micros(Utc::now());
        let sends = with_message_ids(sends);
        self.write("sending messages", move |conn| {
            insert_messages(conn, sends, now).map(|_| ())
        })
        .await
    }
}
