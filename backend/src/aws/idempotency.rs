//! Idempotency keys and the handlers' ledger on the ledger table (PK `pk` S, TTL
//! `expiresAt` in epoch seconds), with Powertools' state machine: a claim is one
//! conditional put of an INPROGRESS record; a completed request leaves a COMPLETED record
//! with its response until the record expires.
//!
//! The partition key is the [`LedgerKey`] itself (`api/...`, `handler/...`): the table's
//! other items (the live-table pointer `read-model#live`, the rebuild lease, the local
//! change feed's `checkpoint#...`) are outside every namespace, and each function's IAM role
//! is held to its own prefix by `dynamodb:LeadingKeys`.
//!
//! Items written before the namespaces (`idem#<key>`) are never read again and need no
//! migration: a client's expire within a day (the API keeps keys 24 h), and a handler's
//! only stood for "this event's document is written": a redelivery of such an event after
//! the upgrade writes the same document under the same name again, which changes nothing.
//! DynamoDB's TTL deletes them all in time.

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::put_item::PutItemError, types::ReturnValuesOnConditionCheckFailure,
};
use chrono::{DateTime, Utc};

use super::dynamo::{Item, condition_failed, get_n, get_s, n, s, sdk_error};
use crate::LedgerKey;
use crate::ports::{
    Claim, IN_PROGRESS_EXPIRY, IdempotencyRecord, IdempotencyStore, SavedResponse, StoreError,
};

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";
/// A claim may race with a release or an expiry; it looks again this many times.
const CLAIM_ATTEMPTS: usize = 3;

/// Free, expired, or an in-progress claim whose holder gave up by now.
const CLAIMABLE: &str = "attribute_not_exists(pk) OR expiresAt < :now OR (#status = :inprogress AND inProgressUntil < :now)";

pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The COMPLETED record of `record`: also what an append writes in its transaction.
pub(super) fn completed_item(record: &IdempotencyRecord) -> Result<Item, StoreError> {
    let response = serde_json::to_string(&record.response)
        .map_err(|e| StoreError::new("serializing a saved response", e))?;
    Ok(Item::from([
        ("pk".to_owned(), s(record.key.as_str())),
        ("status".to_owned(), s(COMPLETED)),
        ("fingerprint".to_owned(), s(&record.fingerprint)),
        ("response".to_owned(), s(response)),
        ("expiresAt".to_owned(), n(record.expires_at.timestamp())),
    ]))
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    /// One conditional put; on failure, the record that stood in the way (returned with the
    /// failure, so no second read is needed).
    async fn try_claim(
        &self,
        key: &LedgerKey,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Item>, StoreError> {
        let until = now.timestamp() + IN_PROGRESS_EXPIRY.as_secs() as i64;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key.as_str()))
            .item("status", s(IN_PROGRESS))
            .item("fingerprint", s(fingerprint))
            .item("inProgressUntil", n(until))
            // An abandoned claim needs no keeping once it can be taken over.
            .item("expiresAt", n(until))
            .condition_expression(CLAIMABLE)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":inprogress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => match failed.item {
                    Some(item) => Ok(Some(item)),
                    // An endpoint that does not return the old item: read it.
                    None => self
                        .read(key)
                        .await
                        .map(|item| item.or_else(|| Some(Item::new()))),
                },
                other => Err(sdk_error("claiming an idempotency key", other)),
            },
        }
    }

    async fn read(&self, key: &LedgerKey) -> Result<Option<Item>, StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| sdk_error("reading an idempotency key", e))
    }
}

/// What a live record that refused a claim means for a request with `fingerprint`.
fn outcome(existing: &Item, fingerprint: &str) -> Result<Claim, StoreError> {
    if get_s(existing, "fingerprint") != Some(fingerprint) {
        return Ok(Claim::Mismatch);
    }
    match get_s(existing, "status") {
        Some(COMPLETED) => {
            let raw = get_s(existing, "response").unwrap_or_default();
            serde_json::from_str::<SavedResponse>(raw)
                .map(Claim::Replay)
                .map_err(|e| StoreError::new("reading a saved response", e))
        }
        _ => Ok(Claim::InProgress),
    }
}

#[async_trait]
impl IdempotencyStore for DynamoLedger {
    async fn claim(
        &self,
        key: &LedgerKey,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            match self.try_claim(key, fingerprint, now).await? {
                None => return Ok(Claim::Acquired),
                // The record went away between the put and the read: claim again.
                Some(existing) if existing.is_empty() => continue,
                Some(existing) => {
                    // Only a live record refuses a claim, but a record read afterwards may
                    // have expired since; such a one is claimable, so claim again.
                    let expired =
                        get_n(&existing, "expiresAt").is_some_and(|t| t < now.timestamp());
                    if !expired {
                        return outcome(&existing, fingerprint);
                    }
                }
            }
        }
        Err(StoreError::new(
            "claiming an idempotency key",
            format!("key {key} keeps changing hands"),
        ))
    }

    async fn release(&self, key: &LedgerKey) -> Result<(), StoreError> {
        // Only an in-progress claim is given up; a saved response stays.
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key.as_str()))
            .condition_expression("#status = :inprogress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":inprogress", s(IN_PROGRESS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Ok(()),
            Err(err) => Err(sdk_error("releasing an idempotency key", err)),
        }
    }

    async fn complete(&self, record: IdempotencyRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(completed_item(&record)?))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("saving an idempotent response", e))
    }
}
