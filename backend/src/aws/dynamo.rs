//! Small DynamoDB helpers the table adapters share: attribute values, reading attributes
//! back, SDK errors as [`StoreError`]s, and batches (retried for what DynamoDB leaves
//! unprocessed, several at a time).

use std::{collections::HashMap, time::Duration};

use aws_sdk_dynamodb::{
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    types::AttributeValue,
};
use tokio::task::JoinSet;

use crate::ports::StoreError;

pub type Item = HashMap<String, AttributeValue>;

/// Service error codes that mean "too much, or not now": worth trying again later.
const RETRYABLE_CODES: [&str; 8] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// An SDK error as a [`StoreError`], with its whole chain of causes in the message (the
/// SDK's own `Display` says only "service error") and the error itself as the source.
/// Retryable when the service said to slow down or failed on its side, or did not answer
/// at all (a timeout, a dispatch failure: no error code).
pub fn sdk_error<E>(context: &'static str, err: E) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let retryable = err
        .code()
        .is_none_or(|code| RETRYABLE_CODES.contains(&code));
    let message = DisplayErrorContext(&err).to_string();
    StoreError::caused_by(context, message, err, retryable)
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Serializes `value` into an item (serde_dynamo, the same mapping as stream images).
pub fn to_item<T: serde::Serialize>(context: &'static str, value: &T) -> Result<Item, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_item(value).map_err(|e| StoreError::new(context, e))
}

pub fn from_item<T: serde::de::DeserializeOwned>(
    context: &'static str,
    item: Item,
) -> Result<T, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| StoreError::new(context, e))
}

/// Whether a request failed only because its condition expression did not hold (a
/// conditional put, update or delete that found the item otherwise): for most callers an
/// answer, not an error.
pub fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// Attempts of a batch request for what DynamoDB leaves unprocessed (throttling).
const UNPROCESSED_ATTEMPTS: u32 = 8;

/// Sends a batch (`BatchGetItem`, `BatchWriteItem`) again for what DynamoDB leaves
/// unprocessed, with a doubling pause: `send` takes what is left and returns what it got
/// and what is still left.
pub async fn until_processed<T, R, F, Fut>(
    context: &'static str,
    mut pending: Vec<T>,
    mut send: F,
) -> Result<Vec<R>, StoreError>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<(Vec<R>, Vec<T>), StoreError>>,
{
    let mut done = Vec::new();
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=UNPROCESSED_ATTEMPTS {
        let (got, left) = send(pending).await?;
        done.extend(got);
        pending = left;
        if pending.is_empty() {
            return Ok(done);
        }
        if attempt < UNPROCESSED_ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Err(StoreError::new(
        context,
        format!(
            "{} item(s) stayed unprocessed after {UNPROCESSED_ATTEMPTS} attempts (throttled?)",
            pending.len()
        ),
    ))
}

/// Runs `op` over `items` in chunks of `chunk`, `concurrency` chunks at a time; returns
/// every result (in no particular order), or the first error once all have finished.
pub async fn fan_out<T, R, F, Fut>(
    context: &'static str,
    items: Vec<T>,
    chunk: usize,
    concurrency: usize,
    op: F,
) -> Result<Vec<R>, StoreError>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, StoreError>> + Send + 'static,
{
    let mut running = JoinSet::new();
    let mut results = Vec::new();
    let mut failure = None;
    let mut absorb = |done: Result<Result<Vec<R>, StoreError>, tokio::task::JoinError>| match done
        .map_err(|e| StoreError::new(context, e))
        .and_then(|r| r)
    {
        Ok(got) => results.extend(got),
        Err(e) => failure = failure.take().or(Some(e)),
    };
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        if running.len() >= concurrency
            && let Some(done) = running.join_next().await
        {
            absorb(done);
        }
        running.spawn(op(items.by_ref().take(chunk.max(1)).collect()));
    }
    while let Some(done) = running.join_next().await {
        absorb(done);
    }
    failure.map_or(Ok(results), Err)
}
