//! The read model on its own table (PK `orderId` S): one item per order, the order's JSON
//! members at the top level plus `createdKey`, the sort key of the `status-index` GSI
//! (PK `status` S, SK `createdKey` S, projection ALL) that lists orders by status in
//! creation order.
//!
//! Which table is live comes from the ledger's live-table pointer ([`LiveTable`]), so that
//! `orders rebuild` can swap in a table it built from the events.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use events_schema::{Order, OrderId, Status};

use super::{
    dynamo::{Item, condition_failed, fan_out, from_item, n, s, sdk_error, to_item},
    live_table::LiveTable,
};
use crate::ports::{ListCursor, ListQuery, Page, ReadModel, StoreError};

/// The GSI by status (the CDK app creates it under this name).
pub const STATUS_INDEX: &str = "status-index";
/// Orders put at once by one `apply`: the projector's batches are up to a few hundred.
const PUT_CONCURRENCY: usize = 16;

pub struct DynamoReadModel {
    client: aws_sdk_dynamodb::Client,
    live: Arc<LiveTable>,
}

/// Sorts like `(created_at, order_id)`: a fixed-width UTC time (microseconds, as the
/// embedded read model keeps it), `#`, the order id.
pub fn created_key(created_at: DateTime<Utc>, order_id: &OrderId) -> String {
    format!(
        "{}#{order_id}",
        created_at.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

fn cursor_key(cursor: &ListCursor) -> String {
    created_key(cursor.created_at, &cursor.order_id)
}

impl DynamoReadModel {
    pub fn new(client: aws_sdk_dynamodb::Client, live: Arc<LiveTable>) -> Self {
        Self { client, live }
    }

    /// Up to `fetch` orders of one status after `after`, in `createdKey` order (descending
    /// when `newest_first`).
    async fn query_status(
        &self,
        table: &str,
        status: Status,
        after: Option<&str>,
        fetch: usize,
        newest_first: bool,
    ) -> Result<Vec<(String, Order)>, StoreError> {
        const CONTEXT: &str = "listing orders";
        let mut found = Vec::new();
        let mut start = None;
        let condition = match (after.is_some(), newest_first) {
            (true, false) => "#status = :status AND createdKey > :after",
            (true, true) => "#status = :status AND createdKey < :after",
            (false, _) => "#status = :status",
        };
        let mut values = HashMap::from([(":status".to_owned(), s(status.as_str()))]);
        if let Some(after) = after {
            values.insert(":after".to_owned(), s(after));
        }
        loop {
            let out = self
                .client
                .query()
                .table_name(table)
                .index_name(STATUS_INDEX)
                .key_condition_expression(condition)
                .expression_attribute_names("#status", "status")
                .set_expression_attribute_values(Some(values.clone()))
                .limit(i32::try_from(fetch - found.len()).unwrap_or(i32::MAX))
                .scan_index_forward(!newest_first)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            for mut item in out.items.unwrap_or_default() {
                let key = item
                    .remove("createdKey")
                    .and_then(|v| v.as_s().ok().cloned())
                    .unwrap_or_default();
                found.push((key, from_item::<Order>(CONTEXT, item)?));
            }
            // A page can stop short of the limit (1 MB per page): go on until enough.
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() && found.len() < fetch => start = Some(key),
                _ => return Ok(found),
            }
        }
    }
}

/// Of several versions of one order in a batch, only the latest needs a write.
fn latest_per_order(orders: &[Order]) -> Vec<&Order> {
    let mut latest: HashMap<&OrderId, &Order> = HashMap::new();
    for o in orders {
        let slot = latest.entry(&o.order_id).or_insert(o);
        if o.version > slot.version {
            *slot = o;
        }
    }
    latest.into_values().collect()
}

/// The item of one order, as the projector writes it (a rebuild writes the same).
pub(super) fn order_item(order: &Order) -> Result<Item, StoreError> {
    let mut item = to_item("serializing the read model", order)?;
    item.insert(
        "createdKey".into(),
        s(created_key(order.created_at, &order.order_id)),
    );
    Ok(item)
}

/// Puts each item into `table` unless the row there is already at its version (the `u64`)
/// or later, 16 at a time: the one write path into a read model table, for the projector
/// and for a rebuild's catch-up.
pub(super) async fn put_versioned(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<(Item, u64)>,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "updating the read model";
    let (client, table) = (client.clone(), table.to_owned());
    fan_out(CONTEXT, items, 1, PUT_CONCURRENCY, move |one| {
        let requests: Vec<_> = one
            .into_iter()
            .map(|(item, version)| {
                client
                    .put_item()
                    .table_name(&table)
                    .set_item(Some(item))
                    // Never moves an order back: replays and late deliveries are no-ops.
                    .condition_expression("attribute_not_exists(orderId) OR #version < :version")
                    .expression_attribute_names("#version", "version")
                    .expression_attribute_values(":version", n(version))
            })
            .collect();
        async move {
            for request in requests {
                match request.send().await {
                    // The stored order is already this version or newer: nothing to do.
                    Err(err) if !condition_failed(&err) => return Err(sdk_error(CONTEXT, err)),
                    _ => {}
                }
            }
            Ok(Vec::<()>::new())
        }
    })
    .await
    .map(|_| ())
}

impl DynamoReadModel {
    /// Upserts the latest state of each order into `table`.
    async fn put_latest(&self, table: &str, orders: &[Order]) -> Result<(), StoreError> {
        let items = latest_per_order(orders)
            .into_iter()
            .map(|o| Ok((order_item(o)?, o.version)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        put_versioned(&self.client, table, items).await
    }
}

#[async_trait]
impl ReadModel for DynamoReadModel {
    async fn apply(&self, orders: &[Order]) -> Result<(), StoreError> {
        if orders.is_empty() {
            return Ok(());
        }
        let live = self.live.resolve().await?;
        let put = self.put_latest(&live.table, orders).await;
        self.live.forget_on_error(put).await?;
        // Writes that completed while the name was fresh reached the old table before a
        // rebuild's catch-up read it (see `live_table`); slower ones may have missed it, so
        // they go again to whatever table is live now.
        if !self.live.is_fresh(&live) {
            let now = self.live.resolve().await?;
            if now.table != live.table {
                let put = self.put_latest(&now.table, orders).await;
                self.live.forget_on_error(put).await?;
            }
        }
        Ok(())
    }

    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, StoreError> {
        const CONTEXT: &str = "reading the read model";
        let live = self.live.resolve().await?;
        let out = self
            .client
            .get_item()
            .table_name(&live.table)
            .key("orderId", s(order_id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e));
        let out = self.live.forget_on_error(out).await?;
        out.item.map(|item| from_item(CONTEXT, item)).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let after = query.after.as_ref().map(cursor_key);
        // One more than asked tells whether another page follows.
        let fetch = query.limit + 1;
        let after = after.as_deref();
        let live = self.live.resolve().await?;
        let table = live.table.as_str();
        let found = match query.status {
            Some(status) => {
                self.query_status(table, status, after, fetch, query.newest_first)
                    .await
            }
            // A GSI query needs its partition key, and a Scan comes in no order: all orders
            // in creation order are the four status partitions, each already sorted, merged.
            // At most `fetch` from each is enough for the first `fetch` of the merge; the
            // four queries run at once.
            None => {
                let [a, b, c, d] = Status::ALL.map(|status| {
                    self.query_status(table, status, after, fetch, query.newest_first)
                });
                let (a, b, c, d) = tokio::join!(a, b, c, d);
                (|| Ok([a?, b?, c?, d?].concat()))()
            }
        };
        let mut found = self.live.forget_on_error(found).await?;
        if query.newest_first {
            found.sort_by(|a, b| b.0.cmp(&a.0));
        } else {
            found.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let items: Vec<Order> = found.into_iter().take(fetch).map(|(_, o)| o).collect();
        Ok(Page::from_overfetch(items, query.limit))
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let live = self.live.resolve().await?;
        let table = live.table.as_str();
        let [a, b, c, d] = Status::ALL.map(|status| self.count_status(table, status));
        let (a, b, c, d) = tokio::join!(a, b, c, d);
        let counted = self
            .live
            .forget_on_error((|| Ok([a?, b?, c?, d?]))())
            .await?;
        Ok(Status::ALL.into_iter().zip(counted).collect())
    }
}

impl DynamoReadModel {
    /// How many orders have `status`: a `Select=COUNT` query of the status index, page by
    /// page (each page counts up to 1 MB of items).
    async fn count_status(&self, table: &str, status: Status) -> Result<u64, StoreError> {
        const CONTEXT: &str = "counting orders by status";
        let mut total = 0u64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(table)
                .index_name(STATUS_INDEX)
                .key_condition_expression("#status = :status")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            total += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(total),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn created_keys_sort_like_creation_time_then_order_id() {
        let t = |micros: i64| Utc.timestamp_micros(micros).single().expect("time");
        let id = |s: &str| OrderId::parse(s).expect("id");
        let mut keys = vec![
            (t(1_000_001), id("a")),
            (t(1_000_000), id("b")),
            (t(1_000_000), id("a-1")),
            (t(1_000_000), id("a")),
            (t(999_999), id("z")),
            (t(10_000_000_000_000_000), id("a")),
        ];
        let mut by_key = keys.clone();
        by_key.sort_by_key(|(t, id)| created_key(*t, id));
        keys.sort();
        assert_eq!(by_key, keys);
    }
}
