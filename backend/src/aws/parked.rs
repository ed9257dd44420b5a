//! Parked records on AWS: the projector's stream event source has an on-failure destination,
//! the SQS queue `<queue prefix>orders-projector-failures`. Lambda writes there, once a batch
//! has used up its retries (or grown older than the maximum record age), an invocation
//! record that names the stream, the shard and the batch's sequence-number range — not the
//! records themselves. The local poller (`orders dev --backend aws`) writes the same shape,
//! with an `ordersource` member that adds what it knows of the record and the error.
//!
//! Listing receives every message (hidden meanwhile), then makes them visible again; a
//! replay reads the range back from the stream (`AT_SEQUENCE_NUMBER`) and deletes the
//! message once the records are projected.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, QueueAttributeName};
use chrono::{DateTime, Utc};
use events_schema::Recorded;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{
    change_feed::{StreamsChangeFeed, changes},
    dynamo::sdk_error,
};
use crate::ports::{Checkpoint, ParkedRecord, ParkedRecords, StoreError};

/// The on-failure queue's name after the queue prefix (the CDK app names it the same).
pub const PROJECTOR_FAILURES: &str = "orders-projector-failures";
/// How long a listing keeps the messages it received hidden (it shows them again at once
/// when done; this only bounds a listing that died midway).
const LISTING_VISIBILITY_SECONDS: i32 = 60;
/// A listing stops after this many receives that bring nothing new.
const EMPTY_ROUNDS: usize = 2;
/// GetRecords pages read for one parked range at most.
const RANGE_PAGES: usize = 100;

/// Lambda's on-failure invocation record for a DynamoDB stream batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnFailureRecord {
    pub request_context: RequestContext,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_context: Option<ResponseContext>,
    pub version: String,
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: BatchInfo,
    /// Written by the local poller only: what it knew of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordersource: Option<LocalDetail>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub request_id: String,
    pub function_arn: String,
    /// `RetryAttemptsExhausted`, `MaximumRecordAgeExceeded`, ...
    pub condition: String,
    pub approximate_invoke_count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    pub status_code: u16,
    pub executed_version: String,
    #[serde(default)]
    pub function_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub approximate_arrival_of_first_record: Option<DateTime<Utc>>,
    #[serde(default)]
    pub approximate_arrival_of_last_record: Option<DateTime<Utc>>,
    pub batch_size: u32,
    pub stream_arn: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalDetail {
    pub error: String,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub event_id: Option<String>,
}

impl OnFailureRecord {
    fn parked(&self, id: String) -> ParkedRecord {
        let b = &self.batch;
        let local = self.ordersource.as_ref();
        let error = match (local, &self.response_context) {
            (Some(l), _) => l.error.clone(),
            (None, Some(r)) => format!(
                "{} (function error: {})",
                self.request_context.condition,
                r.function_error.as_deref().unwrap_or("none")
            ),
            (None, None) => self.request_context.condition.clone(),
        };
        let position = if b.start_sequence_number == b.end_sequence_number {
            format!("{} {}", b.shard_id, b.start_sequence_number)
        } else {
            format!(
                "{} {}..{} ({} records)",
                b.shard_id, b.start_sequence_number, b.end_sequence_number, b.batch_size
            )
        };
        ParkedRecord {
            id,
            position,
            order_id: local.and_then(|l| l.order_id.clone()),
            version: local.and_then(|l| l.version),
            event_id: local.and_then(|l| l.event_id.clone()),
            attempts: self.request_context.approximate_invoke_count,
            error,
            parked_at: self.timestamp,
        }
    }
}

/// A message received by the last listing: its latest receipt and what it says.
struct Held {
    receipt: String,
    record: OnFailureRecord,
}

pub struct SqsParked {
    sqs: aws_sdk_sqs::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    feed: Arc<StreamsChangeFeed>,
    queue: String,
    url: Mutex<Option<String>>,
    /// Message id → what the last listing received.
    held: Mutex<HashMap<String, Held>>,
}

impl SqsParked {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        streams: aws_sdk_dynamodbstreams::Client,
        feed: Arc<StreamsChangeFeed>,
        queue: String,
    ) -> Self {
        Self {
            sqs,
            streams,
            feed,
            queue,
            url: Mutex::new(None),
            held: Mutex::new(HashMap::new()),
        }
    }

    async fn url(&self) -> Result<String, StoreError> {
        let mut url = self.url.lock().await;
        if let Some(u) = &*url {
            return Ok(u.clone());
        }
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(&self.queue)
            .send()
            .await
            .map_err(|e| sdk_error("finding the projector's failure queue", e))?;
        let found = out.queue_url.ok_or_else(|| {
            StoreError::new("finding the projector's failure queue", "no queue URL")
        })?;
        *url = Some(found.clone());
        Ok(found)
    }

    /// Makes the received messages visible again.
    async fn release(&self, url: &str, receipts: Vec<String>) -> Result<(), StoreError> {
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| StoreError::new("showing parked records again", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.sqs
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("showing parked records again", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl ParkedRecords for SqsParked {
    async fn park(
        &self,
        at: &Checkpoint,
        recorded: Option<&Recorded>,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        let (stream_arn, shard_id) = self.feed.locate(at).await?;
        let now = Utc::now();
        let record = OnFailureRecord {
            request_context: RequestContext {
                request_id: uuid::Uuid::now_v7().to_string(),
                function_arn: "orders dev (local stream poller)".into(),
                condition: "RetryAttemptsExhausted".into(),
                approximate_invoke_count: attempts,
            },
            response_context: Some(ResponseContext {
                status_code: 200,
                executed_version: "$LATEST".into(),
                function_error: Some("Unhandled".into()),
            }),
            version: "1.0".into(),
            timestamp: now,
            batch: BatchInfo {
                shard_id,
                start_sequence_number: at.0.clone(),
                end_sequence_number: at.0.clone(),
                approximate_arrival_of_first_record: None,
                approximate_arrival_of_last_record: None,
                batch_size: 1,
                stream_arn,
            },
            ordersource: Some(LocalDetail {
                error: error.to_owned(),
                order_id: recorded.map(|r| r.envelope.order_id.to_string()),
                version: recorded.map(|r| r.envelope.version),
                event_id: recorded.map(|r| r.envelope.event_id.to_string()),
            }),
        };
        let body =
            serde_json::to_string(&record).map_err(|e| StoreError::new("parking a record", e))?;
        self.sqs
            .send_message()
            .queue_url(self.url().await?)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("parking a record", e))
    }

    async fn list(&self) -> Result<Vec<ParkedRecord>, StoreError> {
        let url = self.url().await?;
        let mut held = self.held.lock().await;
        held.clear();
        let mut order = Vec::new();
        let mut empty = 0;
        while empty < EMPTY_ROUNDS {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(LISTING_VISIBILITY_SECONDS)
                .send()
                .await
                .map_err(|e| sdk_error("listing parked records", e))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            for m in messages {
                let (Some(id), Some(receipt)) = (m.message_id, m.receipt_handle) else {
                    continue;
                };
                let body = m.body.unwrap_or_default();
                let record: OnFailureRecord = match serde_json::from_str(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(message_id = %id, error = %e, "the projector's failure queue holds a message that is not an on-failure record; left alone");
                        self.release(&url, vec![receipt]).await?;
                        continue;
                    }
                };
                if !held.contains_key(&id) {
                    order.push(id.clone());
                }
                held.insert(id, Held { receipt, record });
            }
        }
        let receipts = held.values().map(|h| h.receipt.clone()).collect();
        self.release(&url, receipts).await?;
        let mut parked: Vec<ParkedRecord> = order
            .into_iter()
            .filter_map(|id| held.get(&id).map(|h| h.record.parked(id)))
            .collect();
        parked.sort_by_key(|p| p.parked_at);
        Ok(parked)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(self.url().await?)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_error("counting parked records", e))?;
        let attributes = out.attributes.unwrap_or_default();
        Ok([
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|a| attributes.get(a)?.parse::<u64>().ok())
        .sum())
    }

    async fn records(&self, parked: &ParkedRecord) -> Result<Vec<Recorded>, StoreError> {
        const CONTEXT: &str = "reading parked records back from the stream";
        let batch = {
            let held = self.held.lock().await;
            let held = held.get(&parked.id).ok_or_else(|| {
                StoreError::new(
                    CONTEXT,
                    format!("{} was not in the last listing", parked.id),
                )
            })?;
            held.record.batch.clone()
        };
        let mut iterator = self
            .streams
            .get_shard_iterator()
            .stream_arn(&batch.stream_arn)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(&batch.start_sequence_number)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?
            .shard_iterator;
        let end = batch.end_sequence_number.as_str();
        let mut records = Vec::new();
        for _ in 0..RANGE_PAGES {
            let Some(it) = iterator.take() else { break };
            let out = self
                .streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            let page = out.records.unwrap_or_default();
            if page.is_empty() {
                break;
            }
            let mut past_end = false;
            let in_range: Vec<_> = page
                .into_iter()
                .filter(|r| {
                    let seq = r
                        .dynamodb
                        .as_ref()
                        .and_then(|d| d.sequence_number.as_deref())
                        .unwrap_or_default();
                    let keep = super::change_feed::seq_cmp(seq, end).is_le();
                    past_end |= !keep;
                    keep
                })
                .collect();
            let changes = changes(in_range).map_err(|e| StoreError::new(CONTEXT, e))?;
            records.extend(changes.into_iter().map(|c| c.recorded));
            if past_end {
                break;
            }
            iterator = out.next_shard_iterator;
        }
        if records.is_empty() {
            return Err(StoreError::new(
                CONTEXT,
                format!(
                    "shard {} has no event in {}..{} (past the stream's 24-hour retention?)",
                    batch.shard_id, batch.start_sequence_number, end
                ),
            ));
        }
        Ok(records)
    }

    async fn remove(&self, parked: &ParkedRecord) -> Result<bool, StoreError> {
        let Some(held) = self.held.lock().await.remove(&parked.id) else {
            return Ok(false);
        };
        self.sqs
            .delete_message()
            .queue_url(self.url().await?)
            .receipt_handle(held.receipt)
            .send()
            .await
            .map(|_| true)
            .map_err(|e| sdk_error("removing a parked record", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape AWS documents for a DynamoDB stream batch Lambda gave up on.
    const LAMBDA_RECORD: &str = r#"{
        "requestContext": {
            "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:orders-projector",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 11
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled"
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:13:49.717Z",
        "DDBStreamBatchInfo": {
            "shardId": "shardId-00000001573689847184-864758bb",
            "startSequenceNumber": "800000000003126276362",
            "endSequenceNumber": "800000000003126276363",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:13:19Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
            "batchSize": 2,
            "streamArn": "arn:aws:dynamodb:us-east-2:123456789012:table/orders-events/stream/2019-11-14T00:04:06.388"
        }
    }"#;

    #[test]
    fn lambdas_on_failure_record_is_listed_by_its_shard_and_range() {
        let record: OnFailureRecord = serde_json::from_str(LAMBDA_RECORD).expect("parses");
        let parked = record.parked("m-1".into());
        assert_eq!(parked.id, "m-1");
        assert_eq!(
            parked.position,
            "shardId-00000001573689847184-864758bb 800000000003126276362..800000000003126276363 (2 records)"
        );
        assert_eq!(parked.attempts, 11);
        assert_eq!(
            parked.error,
            "RetryAttemptsExhausted (function error: Unhandled)"
        );
        assert_eq!(parked.order_id, None);
        assert_eq!(
            parked.parked_at.to_rfc3339(),
            "2019-11-14T00:13:49.717+00:00"
        );
    }

    #[test]
    fn the_local_pollers_record_reads_back_as_lambdas_with_what_it_knew() {
        let mut record: OnFailureRecord = serde_json::from_str(LAMBDA_RECORD).expect("parses");
        record.ordersource = Some(LocalDetail {
            error: "updating the read model: boom".into(),
            order_id: Some("ORD-1".into()),
            version: Some(2),
            event_id: Some("e-1".into()),
        });
        let json = serde_json::to_value(&record).expect("serializes");
        assert!(json["DDBStreamBatchInfo"]["startSequenceNumber"].is_string());
        assert_eq!(
            json["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        let back: OnFailureRecord = serde_json::from_value(json).expect("parses");
        let parked = back.parked("m-2".into());
        assert_eq!(parked.order_id.as_deref(), Some("ORD-1"));
        assert_eq!(parked.version, Some(2));
        assert_eq!(parked.error, "updating the read model: boom");
    }
}
