//! The queues on SQS: each route queue (and its dead-letter queue) is an SQS queue named
//! `<queue prefix><route table name>`. URLs are resolved once by name and cached; a queue's
//! dead-letter queue is the one its `RedrivePolicy` names, so the redrive policy in AWS is
//! the one truth. Every call batches: up to ten messages per request.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Utc};

use super::dynamo::sdk_error;
use crate::ports::{QueueMessage, QueueStats, Queues, StoreError, bounded_error};

/// The message attribute that says why a message was dead-lettered at once
/// ([`Queues::dead_letter`]).
pub const REASON_ATTRIBUTE: &str = "reason";

/// SQS's limit of messages per batch request and per receive.
const BATCH: usize = 10;
/// SQS's longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;
/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// While a redrive moves a message, it stays hidden from other readers this long.
const REDRIVE_VISIBILITY_SECONDS: i32 = 60;
/// Peeking at a dead-letter queue looks this many times for messages not seen yet.
const PEEK_ROUNDS: usize = 10;

pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
    prefix: String,
    /// Queue name (as SQS knows it) → URL.
    urls: Mutex<HashMap<String, String>>,
    /// Route queue URL → its dead-letter queue's URL (`None`: it has no redrive policy).
    dead_letter_queues: Mutex<HashMap<String, Option<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whole seconds, rounded to the nearest, at most `max`.
fn whole_seconds(d: Duration, max: u64) -> i32 {
    i32::try_from((d.as_secs_f64().round() as u64).min(max)).unwrap_or(i32::MAX)
}

impl SqsQueues {
    pub fn new(client: aws_sdk_sqs::Client, prefix: String) -> Self {
        Self {
            client,
            prefix,
            urls: Mutex::default(),
            dead_letter_queues: Mutex::default(),
        }
    }

    /// The URL of the SQS queue called `name` exactly.
    async fn url_of(&self, name: &str) -> Result<String, StoreError> {
        if let Some(url) = lock(&self.urls).get(name) {
            return Ok(url.clone());
        }
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("finding a queue", e))?;
        let url = out
            .queue_url
            .ok_or_else(|| StoreError::new("finding a queue", format!("no URL for {name:?}")))?;
        lock(&self.urls).insert(name.to_owned(), url.clone());
        Ok(url)
    }

    /// The URL of a route table queue.
    async fn url(&self, queue: &str) -> Result<String, StoreError> {
        self.url_of(&format!("{}{queue}", self.prefix)).await
    }

    /// The URL of `queue`'s dead-letter queue, from its redrive policy.
    async fn dead_letter_url(&self, queue: &str) -> Result<String, StoreError> {
        const CONTEXT: &str = "finding a dead-letter queue";
        let url = self.url(queue).await?;
        if let Some(known) = lock(&self.dead_letter_queues).get(&url) {
            return known.clone().ok_or_else(|| no_dlq(queue));
        }
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?;
        let policy = out
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy));
        let dlq = match policy {
            None => None,
            Some(policy) => {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct RedrivePolicy {
                    dead_letter_target_arn: String,
                }
                let policy: RedrivePolicy =
                    serde_json::from_str(&policy).map_err(|e| StoreError::new(CONTEXT, e))?;
                // arn:aws:sqs:<region>:<account>:<name>
                let name = policy
                    .dead_letter_target_arn
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                Some(self.url_of(&name).await?)
            }
        };
        lock(&self.dead_letter_queues).insert(url, dlq.clone());
        dlq.ok_or_else(|| no_dlq(queue))
    }

    async fn send_to(&self, url: &str, bodies: &[String]) -> Result<(), StoreError> {
        const CONTEXT: &str = "sending messages";
        for chunk in bodies.chunks(BATCH) {
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            // Entries refused on the first try (throttling, a server hiccup) get one more.
            for attempt in 0..2 {
                let entries = pending
                    .iter()
                    .map(|&i| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(&chunk[i])
                            .build()
                            .map_err(|e| StoreError::new(CONTEXT, e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| sdk_error(CONTEXT, e))?;
                if out.failed.is_empty() {
                    break;
                }
                if attempt == 1 || out.failed.iter().any(|f| f.sender_fault) {
                    let first = &out.failed[0];
                    return Err(StoreError::new(
                        CONTEXT,
                        format!(
                            "{} of {} messages refused: {} {}",
                            out.failed.len(),
                            pending.len(),
                            first.code,
                            first.message.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                pending = out
                    .failed
                    .iter()
                    .filter_map(|f| f.id.parse().ok())
                    .collect();
            }
        }
        Ok(())
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        visibility: i32,
        wait: i32,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.clamp(1, BATCH)).unwrap_or(1))
            .visibility_timeout(visibility)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names(REASON_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| sdk_error("receiving messages", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(message)
            .collect())
    }

    async fn delete_from(&self, url: &str, receipt_handles: &[String]) -> Result<(), StoreError> {
        const CONTEXT: &str = "deleting messages";
        for chunk in receipt_handles.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| StoreError::new(CONTEXT, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            for failed in &out.failed {
                if failed.sender_fault {
                    // A stale receipt: the message was received again since, or is gone. Like
                    // the embedded queues, deleting it is then a no-op.
                    tracing::debug!(code = %failed.code, "a message was not deleted");
                } else {
                    return Err(StoreError::new(
                        CONTEXT,
                        format!(
                            "{} {}",
                            failed.code,
                            failed.message.as_deref().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Makes received messages visible again at once (what a redrive of one message took
    /// along but did not move).
    async fn release(&self, url: &str, receipt_handles: &[String]) -> Result<(), StoreError> {
        const CONTEXT: &str = "returning messages to the dead-letter queue";
        for chunk in receipt_handles.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| StoreError::new(CONTEXT, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
        }
        Ok(())
    }

    async fn counts(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> Result<Vec<u64>, StoreError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error("reading queue depth", e))?;
        let attributes = out.attributes.unwrap_or_default();
        Ok(names
            .iter()
            .map(|n| attributes.get(n).and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect())
    }
}

fn no_dlq(queue: &str) -> StoreError {
    StoreError::new(
        "finding a dead-letter queue",
        format!("queue {queue:?} has no redrive policy"),
    )
}

fn message(m: Message) -> QueueMessage {
    let attribute = |name: MessageSystemAttributeName| {
        m.attributes
            .as_ref()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<i64>().ok())
    };
    let receive_count = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(1);
    let sent_at = attribute(MessageSystemAttributeName::SentTimestamp)
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_else(|| DateTime::<Utc>::from(SystemTime::now()));
    let last_error = m
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(REASON_ATTRIBUTE))
        .and_then(|v| v.string_value.clone());
    QueueMessage {
        message_id: m.message_id.unwrap_or_default(),
        receipt_handle: m.receipt_handle.unwrap_or_default(),
        body: m.body.unwrap_or_default(),
        receive_count,
        sent_at,
        last_error,
    }
}

#[async_trait]
impl Queues for SqsQueues {
    async fn send(&self, queue: &str, bodies: &[String]) -> Result<(), StoreError> {
        let url = self.url(queue).await?;
        self.send_to(&url, bodies).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let url = self.url(queue).await?;
        self.receive_from(
            &url,
            max,
            whole_seconds(visibility, MAX_VISIBILITY_SECONDS),
            whole_seconds(wait, MAX_WAIT_SECONDS),
        )
        .await
    }

    async fn delete(&self, queue: &str, receipt_handles: &[String]) -> Result<(), StoreError> {
        let url = self.url(queue).await?;
        self.delete_from(&url, receipt_handles).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        use QueueAttributeName::{
            ApproximateNumberOfMessages as Visible, ApproximateNumberOfMessagesDelayed as Delayed,
            ApproximateNumberOfMessagesNotVisible as InFlight,
        };
        let url = self.url(queue).await?;
        let own = self.counts(&url, &[Visible, InFlight]).await?;
        let dead = match self.dead_letter_url(queue).await {
            Ok(dlq) => self.counts(&dlq, &[Visible, InFlight, Delayed]).await?,
            Err(_) => Vec::new(),
        };
        Ok(QueueStats {
            queue: queue.to_owned(),
            visible: own[0],
            in_flight: own[1],
            dead_letters: dead.iter().sum(),
        })
    }

    /// A peek: receives with a zero visibility timeout and deletes nothing, so the messages
    /// stay where they are. SQS samples its servers, so a large queue shows in part.
    async fn dead_letters(&self, queue: &str) -> Result<Vec<QueueMessage>, StoreError> {
        let dlq = self.dead_letter_url(queue).await?;
        let mut seen: Vec<QueueMessage> = Vec::new();
        for _ in 0..PEEK_ROUNDS {
            let before = seen.len();
            for m in self.receive_from(&dlq, BATCH, 0, 0).await? {
                if !seen.iter().any(|s| s.message_id == m.message_id) {
                    seen.push(m);
                }
            }
            if seen.len() == before {
                break;
            }
        }
        for m in &mut seen {
            // A peek's receipt cannot delete anything worth deleting. SQS carries the
            // receive count over from the queue into its dead-letter queue and counts this
            // peek (and earlier listings) too: the receives before this one.
            m.receipt_handle.clear();
            m.receive_count = m.receive_count.saturating_sub(1);
        }
        seen.sort_by_key(|m| m.sent_at);
        Ok(seen)
    }

    /// Receives from the dead-letter queue, sends to the queue, deletes from the dead-letter
    /// queue, ten at a time (moto has no `StartMessageMoveTask`). A message is sent before it
    /// is deleted: a failure half way leaves it in both, never in neither.
    async fn redrive(&self, queue: &str) -> Result<u64, StoreError> {
        let url = self.url(queue).await?;
        let dlq = self.dead_letter_url(queue).await?;
        // Only what was dead-lettered before the redrive began: a consumer that dead-letters
        // at once (the intake, for a message still invalid) sends redriven messages back
        // meanwhile, and moving those again would never end. They stay for the next redrive.
        let started = chrono::Utc::now();
        let mut moved = 0u64;
        let mut later: Vec<String> = Vec::new();
        let mut seen_later = std::collections::HashSet::new();
        loop {
            // A short wait, because a receive without one may miss messages on some servers.
            let batch = self
                .receive_from(&dlq, BATCH, REDRIVE_VISIBILITY_SECONDS, 1)
                .await?;
            if batch.is_empty() {
                self.release(&dlq, &later).await?;
                return Ok(moved);
            }
            let (earlier, newer): (Vec<QueueMessage>, Vec<QueueMessage>) =
                batch.into_iter().partition(|m| m.sent_at <= started);
            let mut fresh = false;
            for m in newer {
                fresh |= seen_later.insert(m.message_id);
                later.push(m.receipt_handle);
            }
            if earlier.is_empty() {
                // Only messages dead-lettered meanwhile, and none unseen: the rest is theirs.
                if !fresh {
                    self.release(&dlq, &later).await?;
                    return Ok(moved);
                }
                continue;
            }
            let bodies: Vec<String> = earlier.iter().map(|m| m.body.clone()).collect();
            self.send_to(&url, &bodies).await?;
            let handles: Vec<String> = earlier.into_iter().map(|m| m.receipt_handle).collect();
            self.delete_from(&dlq, &handles).await?;
            moved += bodies.len() as u64;
        }
    }

    /// Receives from the dead-letter queue until it meets the message (SQS cannot fetch one
    /// by id), moves it, and makes the others it took along visible again at once.
    async fn redrive_message(&self, queue: &str, message_id: &str) -> Result<bool, StoreError> {
        let url = self.url(queue).await?;
        let dlq = self.dead_letter_url(queue).await?;
        let mut held: Vec<String> = Vec::new();
        let mut found = None;
        for _ in 0..PEEK_ROUNDS {
            let batch = self
                .receive_from(&dlq, BATCH, REDRIVE_VISIBILITY_SECONDS, 1)
                .await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                if found.is_none() && m.message_id == message_id {
                    found = Some(m);
                } else {
                    held.push(m.receipt_handle);
                }
            }
            if found.is_some() {
                break;
            }
        }
        let moved = match found {
            Some(m) => {
                self.send_to(&url, std::slice::from_ref(&m.body)).await?;
                self.delete_from(&dlq, &[m.receipt_handle]).await?;
                true
            }
            None => false,
        };
        self.release(&dlq, &held).await?;
        Ok(moved)
    }

    async fn dead_letter(&self, queue: &str, body: &str, reason: &str) -> Result<(), StoreError> {
        const CONTEXT: &str = "dead-lettering a message";
        let dlq = self.dead_letter_url(queue).await?;
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            // SQS refuses an empty attribute value.
            .string_value(match reason.trim() {
                "" => "(no reason given)".to_owned(),
                r => bounded_error(r),
            })
            .build()
            .map_err(|e| StoreError::new(CONTEXT, e))?;
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(body)
            .message_attributes(REASON_ATTRIBUTE, reason)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?;
        Ok(())
    }

    /// SQS keeps no error with a message: the handler's log (and its trace) has it.
    async fn record_failure(&self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_timeouts_are_whole_seconds_within_the_limits() {
        assert_eq!(whole_seconds(Duration::from_millis(400), 20), 0);
        assert_eq!(whole_seconds(Duration::from_millis(500), 20), 1);
        assert_eq!(whole_seconds(Duration::from_secs(90), 20), 20);
        assert_eq!(whole_seconds(Duration::MAX, MAX_VISIBILITY_SECONDS), 43_200);
    }
}
