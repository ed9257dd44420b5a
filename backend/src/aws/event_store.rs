//! The event store on the event table (PK `orderId` S, SK `version` N), one item per event
//! in the shape of [`crate::item`]. Appends are optimistic: every event is put only if its
//! `(orderId, version)` is free, so of two writers at one version exactly one wins.
//!
//! One event without an idempotency record is one conditional `PutItem`; anything more is
//! one `TransactWriteItems` (a conditional put per event, plus the COMPLETED idempotency
//! record in the ledger table), so a command costs at most a head read and one write.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::{put_item::PutItemError, transact_write_items::TransactWriteItemsError},
    types::{Put, TransactWriteItem},
};
use chrono::{DateTime, Utc};
use events_schema::{ChainHash, Order, OrderId};

use super::{
    dynamo::{Item, condition_failed, from_item, n, s, sdk_error},
    idempotency,
};
use crate::{
    item,
    ports::{Append, AppendError, EventPage, EventStore, Head, StoreError},
};

/// DynamoDB's limit on the items of one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// A transaction cancelled only because another one touched the same items at the same
/// moment is retried this many times before it is reported as a version race.
const TRANSACTION_ATTEMPTS: u32 = 3;
/// Events are put only where none is yet.
const FREE_SLOT: &str = "attribute_not_exists(orderId)";

pub struct DynamoEventStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ledger_table: String,
}

impl DynamoEventStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, ledger_table: String) -> Self {
        Self {
            client,
            table,
            ledger_table,
        }
    }

    async fn put_one(&self, item: Item, append: &Append) -> Result<(), AppendError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(FREE_SLOT)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Err(conflict(append)),
            // Another writer's transaction is putting this very version right now: whether
            // it commits or not, deciding again on a fresh head is the answer, as for a
            // cancelled transaction below.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(PutItemError::is_transaction_conflict_exception) =>
            {
                Err(conflict(append))
            }
            Err(err) => Err(sdk_error("appending an event", err).into()),
        }
    }

    async fn transact(&self, items: Vec<Item>, append: &Append) -> Result<(), AppendError> {
        let mut writes = Vec::with_capacity(items.len() + 1);
        for item in items {
            writes.push(put(&self.table, item, Some(FREE_SLOT))?);
        }
        if let Some(record) = &append.idempotency {
            // The saved response commits with the events: a retry can never append twice.
            writes.push(put(
                &self.ledger_table,
                idempotency::completed_item(record)?,
                None,
            )?);
        }
        if writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::new(
                "appending events",
                format!("{} writes exceed one transaction", writes.len()),
            )
            .into());
        }
        // No ClientRequestToken: it would make two identical appends both succeed, where the
        // contract (and SQLite) let exactly one win. The price: if the SDK retries an append
        // whose first attempt landed, the caller sees a version race and decides again.
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                err.as_service_error()
            else {
                return Err(sdk_error("appending events", err).into());
            };
            let codes: Vec<&str> = cancelled
                .cancellation_reasons()
                .iter()
                .filter_map(|r| r.code())
                .collect();
            if codes.contains(&"ConditionalCheckFailed") {
                return Err(conflict(append));
            }
            if !codes.contains(&"TransactionConflict") {
                return Err(sdk_error("appending events", err).into());
            }
            if attempt == TRANSACTION_ATTEMPTS {
                // Another writer is writing this order right now: a race like any other.
                return Err(conflict(append));
            }
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
        }
        Err(conflict(append))
    }
}

fn put(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(|e| StoreError::new("building a transaction", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn conflict(append: &Append) -> AppendError {
    AppendError::Conflict {
        order_id: append.order_id.clone(),
        expected: append.expected_version,
    }
}

/// The events must continue the order's history right after `expected_version`, without a
/// gap: the conditions guard each new version, and gapless versions make that enough.
fn check_versions(append: &Append) -> Result<(), StoreError> {
    if append.events.is_empty() {
        return Err(StoreError::new("appending events", "no events to append"));
    }
    for (i, r) in append.events.iter().enumerate() {
        let wanted = append.expected_version + 1 + i as u64;
        if r.envelope.version != wanted {
            return Err(StoreError::new(
                "appending events",
                format!(
                    "event {i} of order {} is version {}, not {wanted}",
                    append.order_id, r.envelope.version
                ),
            ));
        }
    }
    Ok(())
}

/// Events read per request while looking back for the state at a time: most such reads
/// are answered by the latest few.
const AT_TIME_PAGE: i32 = 16;

/// The order's state stored with an event.
#[derive(serde::Deserialize)]
struct StateItem {
    order: Order,
}

/// The order's state stored with an event, and when the event occurred.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimedStateItem {
    order: Order,
    occurred_at: DateTime<Utc>,
}

/// The parts of an event item a head needs.
#[derive(serde::Deserialize)]
struct HeadItem {
    order: Order,
    hash: ChainHash,
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn head(&self, order_id: &OrderId) -> Result<Option<Head>, StoreError> {
        const CONTEXT: &str = "reading an order's latest event";
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("orderId = :id")
            .expression_attribute_values(":id", s(order_id.as_str()))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?;
        let Some(item) = out.items.and_then(|items| items.into_iter().next()) else {
            return Ok(None);
        };
        let head: HeadItem = from_item(CONTEXT, item)?;
        Ok(Some(Head {
            order: head.order,
            hash: head.hash,
        }))
    }

    async fn events(
        &self,
        order_id: &OrderId,
        after: u64,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        const CONTEXT: &str = "reading an order's events";
        let want = limit.saturating_add(1);
        let mut envelopes = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("orderId = :id AND #v > :after")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":id", s(order_id.as_str()))
                .expression_attribute_values(":after", n(after))
                .limit(i32::try_from(want - envelopes.len()).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            for item in out.items.unwrap_or_default() {
                let recorded = item::from_item(serde_dynamo::Item::from(item))
                    .map_err(|e| StoreError::new(CONTEXT, e))?;
                envelopes.push(recorded.envelope);
            }
            // A response stops at 1 MB: continue until the page (and the one event that
            // tells whether another follows) is complete.
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() && envelopes.len() < want => start = Some(key),
                _ => return Ok(EventPage::from_overfetch(envelopes, limit)),
            }
        }
    }

    async fn at_version(
        &self,
        order_id: &OrderId,
        version: u64,
    ) -> Result<Option<Order>, StoreError> {
        const CONTEXT: &str = "reading an order at a version";
        // A Query on the full key rather than GetItem: the API's role reads the event
        // table with Query only.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("orderId = :id AND #v = :v")
            .projection_expression("#o")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#o", "order")
            .expression_attribute_values(":id", s(order_id.as_str()))
            .expression_attribute_values(":v", n(version))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?;
        let Some(item) = out.items.and_then(|items| items.into_iter().next()) else {
            return Ok(None);
        };
        let state: StateItem = from_item(CONTEXT, item)?;
        Ok(Some(state.order))
    }

    async fn at_time(
        &self,
        order_id: &OrderId,
        at: DateTime<Utc>,
    ) -> Result<Option<Order>, StoreError> {
        const CONTEXT: &str = "reading an order at a time";
        // `occurredAt` is not a key, and its text does not sort as time (the number of
        // fractional digits varies): walk back from the latest event, a few at a time,
        // comparing here.
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("orderId = :id")
                .projection_expression("#o, occurredAt")
                .expression_attribute_names("#o", "order")
                .expression_attribute_values(":id", s(order_id.as_str()))
                .scan_index_forward(false)
                .limit(AT_TIME_PAGE)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            for item in out.items.unwrap_or_default() {
                let state: TimedStateItem = from_item(CONTEXT, item)?;
                if state.occurred_at <= at {
                    return Ok(Some(state.order));
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(None),
            }
        }
    }

    async fn append(&self, append: Append) -> Result<(), AppendError> {
        check_versions(&append)?;
        let mut items = Vec::with_capacity(append.events.len());
        for r in &append.events {
            let mut item = Item::from(
                item::to_item(r).map_err(|e| StoreError::new("serializing an event", e))?,
            );
            // The order the caller appends to is the key, as in the embedded store (the
            // envelope says the same, unless the caller is wrong).
            item.insert("orderId".into(), s(append.order_id.as_str()));
            items.push(item);
        }
        if items.len() == 1 && append.idempotency.is_none() {
            let item = items.remove(0);
            self.put_one(item, &append).await
        } else {
            self.transact(items, &append).await
        }
    }
}
