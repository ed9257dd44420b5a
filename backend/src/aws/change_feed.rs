//! The change feed over the event table's DynamoDB stream, read through the DynamoDB
//! Streams API as Lambda's event source mapping reads it: the stream ARN from DescribeTable
//! (never built by hand), shards from DescribeStream, a shard iterator from the durable
//! checkpoint, `GetRecords`, and each record's new image decoded straight into the event it
//! holds.
//!
//! Checkpoints are items of the ledger table keyed by stream ARN and shard id (sequence
//! numbers restart in every stream). A batch comes from one shard, in shard order; shards
//! are read round-robin, a child only once its parent is finished, so each order's events
//! (one partition key) arrive in version order across shard splits.

use std::{cmp::Ordering, collections::HashMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::{
    operation::get_records::{GetRecordsError, GetRecordsOutput},
    types::{Record, ShardIteratorType},
};
use chrono::Utc;
use tokio::{sync::Mutex, time::Instant};

use super::dynamo::{Item, get_s, n, s, sdk_error};
use crate::{
    item,
    ports::{Change, ChangeFeed, Checkpoint, FeedError, StoreError},
};

/// How often an idle feed asks each shard again while it waits (Lambda polls a shard about
/// four times a second; GetRecords allows five).
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// New shards appear when a shard splits or rolls over (every few hours): look this often.
const SHARD_REFRESH: Duration = Duration::from_secs(30);
/// GetRecords returns at most this many records.
const MAX_RECORDS: usize = 1000;
/// `lag` reads at most this many pages per shard; beyond, it reports what it counted.
const LAG_PAGES: usize = 10;
/// A finished shard's checkpoint outlives the stream's 24-hour retention, then expires.
const FINISHED_CHECKPOINT_TTL: chrono::Duration = chrono::Duration::days(2);

pub struct StreamsChangeFeed {
    dynamodb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    events_table: String,
    ledger_table: String,
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    stream_arn: Option<String>,
    shards: Vec<Shard>,
    listed_at: Option<Instant>,
    /// Where the next round-robin turn starts.
    turn: usize,
}

#[derive(Clone)]
struct Shard {
    id: String,
    parent: Option<String>,
    /// The last sequence number handled, durably; `None` = from the trim horizon.
    checkpoint: Option<String>,
    finished: bool,
    /// An iterator that continues right after the given position (see `checkpoint`).
    iterator: Option<(String, Option<String>)>,
    /// The sequence numbers of the last batch handed out from this shard.
    delivered: Vec<String>,
    /// GetRecords said the shard ends after this position (a closed shard, read out).
    ends_after: Option<Option<String>>,
}

/// Compares decimal sequence numbers (they outgrow `u64` and vary in width).
pub(super) fn seq_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn checkpoint_pk(stream_arn: &str, shard_id: &str) -> String {
    format!("checkpoint#{stream_arn}#{shard_id}")
}

impl StreamsChangeFeed {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        streams: aws_sdk_dynamodbstreams::Client,
        events_table: String,
        ledger_table: String,
    ) -> Self {
        Self {
            dynamodb,
            streams,
            events_table,
            ledger_table,
            state: Mutex::new(FeedState::default()),
        }
    }

    /// The event table's current stream, from DescribeTable (once per process).
    async fn stream_arn(&self, state: &mut FeedState) -> Result<String, StoreError> {
        if let Some(arn) = &state.stream_arn {
            return Ok(arn.clone());
        }
        const CONTEXT: &str = "finding the event table's stream";
        let out = self
            .dynamodb
            .describe_table()
            .table_name(&self.events_table)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?;
        let arn = out.table.and_then(|t| t.latest_stream_arn).ok_or_else(|| {
            StoreError::new(
                CONTEXT,
                format!(
                    "table {} has no stream (run the bootstrap)",
                    self.events_table
                ),
            )
        })?;
        state.stream_arn = Some(arn.clone());
        Ok(arn)
    }

    /// Lists the stream's shards when due, keeping what is known of the ones seen before and
    /// loading the checkpoints of new ones.
    async fn refresh_shards(&self, state: &mut FeedState, force: bool) -> Result<(), StoreError> {
        if !force && state.listed_at.is_some_and(|t| t.elapsed() < SHARD_REFRESH) {
            return Ok(());
        }
        const CONTEXT: &str = "listing the stream's shards";
        let arn = self.stream_arn(state).await?;
        let mut listed = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .streams
                .describe_stream()
                .stream_arn(&arn)
                .set_exclusive_start_shard_id(start)
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            let Some(description) = out.stream_description else {
                break;
            };
            listed.extend(description.shards.unwrap_or_default());
            match description.last_evaluated_shard_id {
                Some(id) => start = Some(id),
                None => break,
            }
        }
        let mut known: HashMap<String, Shard> =
            state.shards.drain(..).map(|s| (s.id.clone(), s)).collect();
        for listed in listed {
            let Some(id) = listed.shard_id else { continue };
            let shard = match known.remove(&id) {
                Some(shard) => shard,
                None => self.load_shard(&arn, id, listed.parent_shard_id).await?,
            };
            state.shards.push(shard);
        }
        state.listed_at = Some(Instant::now());
        Ok(())
    }

    async fn load_shard(
        &self,
        arn: &str,
        id: String,
        parent: Option<String>,
    ) -> Result<Shard, StoreError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.ledger_table)
            .key("pk", s(checkpoint_pk(arn, &id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading a stream checkpoint", e))?;
        let item = out.item.unwrap_or_default();
        Ok(Shard {
            id,
            parent,
            checkpoint: get_s(&item, "sequenceNumber").map(str::to_owned),
            finished: item
                .get("finished")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            iterator: None,
            delivered: Vec::new(),
            ends_after: None,
        })
    }

    async fn save_checkpoint(&self, arn: &str, shard: &Shard) -> Result<(), StoreError> {
        let mut item = Item::from([
            ("pk".to_owned(), s(checkpoint_pk(arn, &shard.id))),
            (
                "finished".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::Bool(shard.finished),
            ),
        ]);
        if let Some(seq) = &shard.checkpoint {
            item.insert("sequenceNumber".into(), s(seq));
        }
        if shard.finished {
            item.insert(
                "expiresAt".into(),
                n((Utc::now() + FINISHED_CHECKPOINT_TTL).timestamp()),
            );
        }
        self.dynamodb
            .put_item()
            .table_name(&self.ledger_table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("saving a stream checkpoint", e))
    }

    async fn iterator(
        &self,
        arn: &str,
        shard: &str,
        after: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard);
        let request = match after {
            Some(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        match request.send().await {
            Ok(out) => Ok(out.shard_iterator),
            Err(err)
                if after.is_some()
                    && err
                        .as_service_error()
                        .is_some_and(|e| e.is_trimmed_data_access_exception()) =>
            {
                // The checkpoint is older than the stream's retention: what came between is
                // gone; carry on from the oldest record there is.
                tracing::warn!(shard, checkpoint = ?after, "stream records past their retention were never read");
                Box::pin(self.iterator(arn, shard, None)).await
            }
            Err(err) => Err(sdk_error("opening a stream shard", err)),
        }
    }

    async fn get_records(
        &self,
        iterator: String,
        limit: usize,
    ) -> Result<Result<GetRecordsOutput, GetRecordsError>, StoreError> {
        let limit = i32::try_from(limit.clamp(1, MAX_RECORDS)).unwrap_or(1000);
        match self
            .streams
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
        {
            Ok(out) => Ok(Ok(out)),
            Err(err) => match err.into_service_error() {
                e @ (GetRecordsError::ExpiredIteratorException(_)
                | GetRecordsError::TrimmedDataAccessException(_)) => Ok(Err(e)),
                e => Err(sdk_error("reading stream records", e)),
            },
        }
    }

    /// Reads up to `max` records of one shard after its checkpoint.
    async fn read_shard(
        &self,
        arn: &str,
        shard: &mut Shard,
        max: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut fresh = false;
        let out = loop {
            // A cached iterator is good only if it continues where the checkpoint is: if the
            // last batch was not checkpointed, its records must come again.
            let iterator = match shard.iterator.take() {
                Some((it, after)) if !fresh && after == shard.checkpoint => Some(it),
                _ => {
                    fresh = true;
                    self.iterator(arn, &shard.id, shard.checkpoint.as_deref())
                        .await?
                }
            };
            let Some(iterator) = iterator else {
                return Ok(Vec::new());
            };
            match self.get_records(iterator, max).await? {
                Ok(out) => break out,
                // An iterator lives 15 minutes: take a new one, once.
                Err(e) if !fresh => {
                    tracing::debug!(error = %e, shard = %shard.id, "shard iterator expired");
                    fresh = true;
                }
                Err(e) => return Err(sdk_error("reading stream records", e)),
            }
        };
        let records = out.records.unwrap_or_default();
        let last = records
            .last()
            .and_then(|r| r.dynamodb.as_ref())
            .and_then(|d| d.sequence_number.clone())
            .or_else(|| shard.checkpoint.clone());
        match out.next_shard_iterator {
            Some(next) => shard.iterator = Some((next, last)),
            None => shard.ends_after = Some(last),
        }
        shard.delivered = records
            .iter()
            .filter_map(|r| r.dynamodb.as_ref()?.sequence_number.clone())
            .collect();
        Ok(records)
    }

    /// The stream ARN and the shard of a record of the last batch handed out (what an
    /// on-failure record names).
    pub async fn locate(&self, at: &Checkpoint) -> Result<(String, String), StoreError> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let arn = self.stream_arn(state).await?;
        state
            .shards
            .iter()
            .find(|s| s.delivered.contains(&at.0))
            .map(|s| (arn, s.id.clone()))
            .ok_or_else(|| {
                StoreError::new(
                    "finding a stream record's shard",
                    format!("{at} is not a record of the last batch of any shard"),
                )
            })
    }

    /// One look at every shard that may be read now, starting from the next in turn; the
    /// first batch with an event in it.
    async fn poll_once(&self, max: usize) -> Result<Vec<Change>, FeedError> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        self.refresh_shards(state, false).await?;
        let arn = self.stream_arn(state).await?;
        let ready: Vec<usize> = (0..state.shards.len())
            .filter(|&i| is_ready(&state.shards, i))
            .collect();
        let mut finished_one = false;
        for k in 0..ready.len() {
            let index = ready[(state.turn + k) % ready.len()];
            let shard = &mut state.shards[index];
            let records = self.read_shard(&arn, shard, max).await?;
            if records.is_empty() {
                if shard.ends_after.is_some() && shard.ends_after == Some(shard.checkpoint.clone())
                {
                    shard.finished = true;
                    finished_one = true;
                    self.save_checkpoint(&arn, shard).await?;
                }
                continue;
            }
            state.turn = (state.turn + k + 1) % ready.len().max(1);
            let last = records
                .last()
                .and_then(|r| r.dynamodb.as_ref()?.sequence_number.clone());
            let changes = changes(records)?;
            if changes.is_empty() {
                // Only records that are not events (the table is append-only, so there
                // should be none): nothing for the projector, step past them.
                if let Some(last) = last {
                    shard.checkpoint = Some(last);
                    self.save_checkpoint(&arn, shard).await?;
                }
                continue;
            }
            return Ok(changes);
        }
        if finished_one {
            // A finished parent lets its children be read: list them now.
            self.refresh_shards(state, true).await?;
        }
        Ok(Vec::new())
    }
}

/// A shard may be read once it is not finished and its parent (if still listed) is.
fn is_ready(shards: &[Shard], index: usize) -> bool {
    let shard = &shards[index];
    !shard.finished
        && shard.parent.as_ref().is_none_or(|parent| {
            shards
                .iter()
                .find(|s| &s.id == parent)
                .is_none_or(|p| p.finished)
        })
}

/// The events of a batch of stream records, each decoded from its new image: inserts only
/// (the event table is append-only), up to the first record that is not a readable event.
/// That record ends the batch, or, when it comes first, is the feed's error, so that the
/// runtime retries it and may give up on it by its position.
pub(super) fn changes(records: Vec<Record>) -> Result<Vec<Change>, FeedError> {
    let mut changes = Vec::with_capacity(records.len());
    for record in records {
        let Some(image) = record.dynamodb else {
            continue;
        };
        let Some(seq) = image.sequence_number else {
            continue;
        };
        if record.event_name.as_ref().map(|n| n.as_str()) != Some("INSERT") {
            tracing::warn!(event_name = ?record.event_name, sequence_number = %seq, "ignoring a stream record that is not an insert");
            continue;
        }
        let at = Checkpoint(seq);
        match item::from_item(serde_dynamo::Item::from(
            image.new_image.unwrap_or_default(),
        )) {
            Ok(recorded) => changes.push(Change { at, recorded }),
            Err(e) if changes.is_empty() => {
                return Err(FeedError::Unreadable {
                    at,
                    reason: e.to_string(),
                });
            }
            Err(_) => break,
        }
    }
    Ok(changes)
}

#[async_trait]
impl ChangeFeed for StreamsChangeFeed {
    async fn next_batch(&self, max: usize, wait: Duration) -> Result<Vec<Change>, FeedError> {
        let deadline = Instant::now() + wait;
        loop {
            let batch = self.poll_once(max).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !batch.is_empty() || left.is_zero() {
                return Ok(batch);
            }
            // The Streams API has no long poll: look again shortly, without holding the
            // state, so that `lag` and `checkpoint` are not kept waiting.
            tokio::time::sleep(left.min(POLL_INTERVAL)).await;
        }
    }

    async fn checkpoint(&self, at: &Checkpoint) -> Result<(), StoreError> {
        let sequence_number = at.0.as_str();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let arn = self.stream_arn(state).await?;
        let Some(shard) = state
            .shards
            .iter_mut()
            .find(|s| s.delivered.iter().any(|d| d == sequence_number))
        else {
            return Err(StoreError::new(
                "saving a stream checkpoint",
                format!("{sequence_number} is not a record of the last batch of any shard"),
            ));
        };
        if shard
            .checkpoint
            .as_deref()
            .is_some_and(|cp| seq_cmp(cp, sequence_number) != Ordering::Less)
        {
            return Ok(());
        }
        shard.checkpoint = Some(sequence_number.to_owned());
        if shard.ends_after == Some(shard.checkpoint.clone()) {
            shard.finished = true;
        }
        self.save_checkpoint(&arn, shard).await
    }

    /// Records in the stream after the checkpoints, counted by reading them (up to
    /// `LAG_PAGES` pages per shard; records handed out but not checkpointed count too). An
    /// estimate, like the iterator age Lambda reports: in AWS, where Lambda's event source
    /// mapping keeps its own position, watch `IteratorAge` instead.
    async fn lag(&self) -> Result<u64, StoreError> {
        let (arn, shards) = {
            let mut guard = self.state.lock().await;
            let state = &mut *guard;
            self.refresh_shards(state, false).await?;
            (self.stream_arn(state).await?, state.shards.clone())
        };
        let mut lag = 0u64;
        for shard in shards.iter().filter(|s| !s.finished) {
            let mut iterator = self
                .iterator(&arn, &shard.id, shard.checkpoint.as_deref())
                .await?;
            for _ in 0..LAG_PAGES {
                let Some(it) = iterator.take() else { break };
                let out = match self.get_records(it, MAX_RECORDS).await? {
                    Ok(out) => out,
                    Err(e) => return Err(sdk_error("counting stream records", e)),
                };
                let count = out.records.as_ref().map_or(0, Vec::len);
                lag += count as u64;
                if count == 0 {
                    break;
                }
                iterator = out.next_shard_iterator;
            }
        }
        Ok(lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(seq_cmp("900", "1000"), Ordering::Less);
        assert_eq!(seq_cmp("0001000", "1000"), Ordering::Equal);
        assert_eq!(
            seq_cmp("1100000000017454423010", "1100000000017454423009"),
            Ordering::Greater
        );
    }

    fn shard(id: &str, parent: Option<&str>, finished: bool) -> Shard {
        Shard {
            id: id.into(),
            parent: parent.map(Into::into),
            checkpoint: None,
            finished,
            iterator: None,
            delivered: Vec::new(),
            ends_after: None,
        }
    }

    #[test]
    fn a_child_shard_waits_for_its_parent() {
        let shards = vec![shard("a", None, false), shard("b", Some("a"), false)];
        assert!(is_ready(&shards, 0));
        assert!(!is_ready(&shards, 1));
        let shards = vec![shard("a", None, true), shard("b", Some("a"), false)];
        assert!(!is_ready(&shards, 0));
        assert!(is_ready(&shards, 1));
        // A parent past the retention is no longer listed: the child goes on.
        assert!(is_ready(&[shard("b", Some("gone"), false)], 0));
    }
}
