//! Small DynamoDB helpers the table adapters share: attribute values, reading attributes
//! back, and SDK errors as [`StoreError`]s.

use std::collections::HashMap;

use aws_sdk_dynamodb::{error::DisplayErrorContext, types::AttributeValue};

use crate::ports::StoreError;

pub type Item = HashMap<String, AttributeValue>;

/// An SDK error with its whole chain of causes (the SDK's own `Display` says only
/// "service error").
pub fn sdk_error(context: &'static str, err: impl std::error::Error) -> StoreError {
    StoreError::new(context, DisplayErrorContext(err))
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
