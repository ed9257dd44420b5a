//! Bulk, read-only access to the event table and the live read model table, for `orders
//! replay`, `audit verify` and `republish` on the AWS backend.
//!
//! - Histories come from a strongly consistent `Scan` of the event table. A Scan returns
//!   items in the table's storage order: by a hash of the partition key, then by sort key.
//!   So one order's events come together and in version order, but orders come in no
//!   order a caller could use; pages therefore say [`Coverage::Orders`], and an audit finds
//!   read model rows without events by a pass of its own ([`ProjectionScan::rows`]).
//!   A page that stops inside an order hands that order to the next page (resuming the
//!   Scan after the previous order's last event), unless it is the page's only order:
//!   then a `Query` reads the rest of it, and the next page skips what remains of it.
//! - An event is handed out as its item converted to JSON (`order` apart, as the state
//!   stored with the event): members sorted by name, numbers as DynamoDB keeps them. A
//!   changed byte in an attribute is a changed byte in that JSON.
//! - Read model rows are read from the live table (see [`super::live_table`]) by
//!   `BatchGetItem`, for the orders of a page, or by `Scan`, for the whole pass.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::scan::builders::ScanFluentBuilder,
    types::{AttributeValue, KeysAndAttributes},
};
use chrono::{DateTime, SecondsFormat, Utc};
use events_schema::OrderId;
use serde::{Deserialize, Serialize};

use super::{
    dynamo::{Item, fan_out, get_n, get_s, s, sdk_error, until_processed},
    live_table::LiveTable,
};
use crate::ports::{
    ArchiveSize, Coverage, EventArchive, EventWindow, HistoryCursor, HistoryPage, Projected,
    ProjectedOrder, ProjectionScan, RawEvent, RawHistory, RowCursor, RowPage, States, StoreError,
    WindowCursor, WindowPage,
};

/// `BatchGetItem` takes at most this many keys.
const BATCH_GET_KEYS: usize = 100;
/// Batch reads in flight at once.
const BATCH_CONCURRENCY: usize = 8;

/// The event table and the live read model table, read-only.
pub struct DynamoArchive {
    client: aws_sdk_dynamodb::Client,
    events_table: String,
    live: Arc<LiveTable>,
}

impl DynamoArchive {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        events_table: String,
        live: Arc<LiveTable>,
    ) -> Self {
        Self {
            client,
            events_table,
            live,
        }
    }
}

/// An event item's key, as a cursor keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EventKey {
    order_id: String,
    /// The `version` attribute's number, as DynamoDB wrote it.
    version: String,
}

impl EventKey {
    fn of(item: &Item) -> Option<Self> {
        Some(Self {
            order_id: get_s(item, "orderId")?.to_owned(),
            version: item.get("version")?.as_n().ok()?.clone(),
        })
    }

    fn item(&self) -> Item {
        HashMap::from([
            ("orderId".to_owned(), s(&self.order_id)),
            (
                "version".to_owned(),
                AttributeValue::N(self.version.clone()),
            ),
        ])
    }
}

/// Where a Scan of histories stands: after `after`, skipping what is left of `skip` (an
/// order a Query already read whole).
#[derive(Debug, Default, Serialize, Deserialize)]
struct HistoryPosition {
    after: Option<EventKey>,
    skip: Option<String>,
}

fn encode<T: Serialize>(value: &T) -> String {
    // Plain structs of strings: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, raw: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| {
        StoreError::new(
            what,
            format!("{raw:?} is not a cursor this backend handed out: {e}"),
        )
    })
}

/// An attribute map as JSON text, members sorted by name (serde_json's map), numbers as
/// stored; what cannot be JSON is said in place, so that a damaged item is reported by the
/// audit rather than stopping it.
fn json_text(item: Item) -> String {
    match serde_dynamo::aws_sdk_dynamodb_1::from_item::<serde_json::Value>(item) {
        Ok(value) => value.to_string(),
        Err(e) => format!("<not convertible to JSON: {e}>"),
    }
}

/// One event item as the audit reads it (its stored state left empty `Without` states).
fn raw_event(mut item: Item, states: States) -> RawEvent {
    let order_id = get_s(&item, "orderId").unwrap_or_default().to_owned();
    let version = get_n(&item, "version")
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    let order_state = match (item.remove("order"), states) {
        (_, States::Without) => String::new(),
        (Some(AttributeValue::M(state)), States::With) => json_text(state),
        (Some(other), States::With) => format!("<the stored state is not a map: {other:?}>"),
        (None, States::With) => "<no state stored with the event>".to_owned(),
    };
    RawEvent {
        order_id,
        version,
        envelope: json_text(item),
        order_state,
        position: None,
    }
}

/// Consecutive items of one order, as histories.
fn group(items: Vec<Item>) -> Vec<(String, Vec<Item>)> {
    let mut groups: Vec<(String, Vec<Item>)> = Vec::new();
    for item in items {
        let id = get_s(&item, "orderId").unwrap_or_default().to_owned();
        match groups.last_mut() {
            Some((last, events)) if *last == id => events.push(item),
            _ => groups.push((id, vec![item])),
        }
    }
    groups
}

/// A row of the read model table as JSON text (its GSI key `createdKey` left out).
fn projected_order(mut item: Item) -> ProjectedOrder {
    item.remove("createdKey");
    ProjectedOrder {
        order_id: get_s(&item, "orderId").unwrap_or_default().to_owned(),
        body: json_text(item),
    }
}

/// `occurredAt` bounds for a filter on the stored text: RFC 3339 in UTC with a varying
/// number of fraction digits does not sort as text within one second, so the filter takes
/// whole seconds (`[from's second, to's second + 1)`, each as the 19-character prefix that
/// every stored time of that second starts with) and the exact window is applied after.
fn second_bounds(window: &EventWindow) -> (String, String) {
    let prefix = |t: DateTime<Utc>| {
        let text = t.to_rfc3339_opts(SecondsFormat::Secs, true);
        text.get(..19).unwrap_or(&text).to_owned()
    };
    let next_second = window.to + chrono::Duration::seconds(1);
    (prefix(window.from), prefix(next_second))
}

fn in_window(item: &Item, window: &EventWindow) -> bool {
    get_s(item, "occurredAt")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| {
            let t = t.to_utc();
            window.from <= t && t < window.to
        })
}

impl DynamoArchive {
    /// Items of one order with a version after `after` (all if `None`), in version order.
    async fn query_order(
        &self,
        order_id: &str,
        after: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        const CONTEXT: &str = "reading an order's history";
        let mut items = Vec::new();
        let mut start = None;
        let condition = if after.is_some() {
            "orderId = :id AND version > :after"
        } else {
            "orderId = :id"
        };
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.events_table)
                .key_condition_expression(condition)
                .expression_attribute_values(":id", s(order_id))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if let Some(after) = after {
                request =
                    request.expression_attribute_values(":after", AttributeValue::N(after.into()));
            }
            let out = request.send().await.map_err(|e| sdk_error(CONTEXT, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// One order's stored history.
    pub(super) async fn history_items(
        &self,
        order_id: &str,
        states: States,
    ) -> Result<Vec<RawEvent>, StoreError> {
        Ok(self
            .query_order(order_id, None)
            .await?
            .into_iter()
            .map(|item| raw_event(item, states))
            .collect())
    }

    /// [`EventArchive::histories`], with or without the states stored with the events.
    pub(super) async fn history_page(
        &self,
        cursor: Option<&HistoryCursor>,
        max_events: usize,
        states: States,
    ) -> Result<HistoryPage, StoreError> {
        const CONTEXT: &str = "reading histories";
        let max_events = max_events.max(1);
        let position: HistoryPosition = match cursor {
            Some(c) => decode(CONTEXT, &c.0)?,
            None => HistoryPosition::default(),
        };
        let mut skip = position.skip;
        let (items, start) = self
            .scan_up_to(
                CONTEXT,
                &self.events_table,
                |scan| scan,
                position.after.as_ref().map(EventKey::item),
                max_events,
                |item| {
                    // What remains of an order a Query read whole comes first: skip it.
                    if skip.is_some() && get_s(&item, "orderId") == skip.as_deref() {
                        return None;
                    }
                    skip = None;
                    Some(item)
                },
            )
            .await?;
        let mut groups = group(items);
        let next = match start {
            None => None,
            // The Scan stopped inside or right after the last order: hand it to the next
            // page, which resumes after the previous order's last event.
            Some(_) if groups.len() > 1 => {
                groups.pop();
                let resume = groups
                    .last()
                    .and_then(|(_, events)| events.last())
                    .and_then(EventKey::of);
                Some(HistoryPosition {
                    after: resume,
                    skip: None,
                })
            }
            // One order filled the page: read the rest of it, skip it afterwards.
            Some(stopped) => match groups.last_mut() {
                Some((id, events)) => {
                    let read_through = events.last().and_then(EventKey::of);
                    let rest = self
                        .query_order(id, read_through.as_ref().map(|k| k.version.as_str()))
                        .await?;
                    events.extend(rest);
                    Some(HistoryPosition {
                        after: events.last().and_then(EventKey::of),
                        skip: Some(id.clone()),
                    })
                }
                // Everything read was skipped: go on from where the Scan stopped.
                None => Some(HistoryPosition {
                    after: EventKey::of(&stopped),
                    skip,
                }),
            },
        };
        let histories = groups
            .into_iter()
            .map(|(order_id, events)| RawHistory {
                order_id,
                events: events.into_iter().map(|e| raw_event(e, states)).collect(),
            })
            .collect();
        Ok(HistoryPage {
            histories,
            next: next.map(|p| HistoryCursor(encode(&p))),
            coverage: Coverage::Orders,
        })
    }

    /// A strongly consistent Scan of `table` (narrowed by `filter`) from `start`, each item
    /// through `keep`, until `limit` items are kept or the table ends; and where the Scan
    /// goes on. `Limit` counts items read before any filter: a Scan never reads past what
    /// the page can still take, so that its own position is the page's end.
    async fn scan_up_to<T>(
        &self,
        context: &'static str,
        table: &str,
        filter: impl Fn(ScanFluentBuilder) -> ScanFluentBuilder,
        mut start: Option<Item>,
        limit: usize,
        mut keep: impl FnMut(Item) -> Option<T>,
    ) -> Result<(Vec<T>, Option<Item>), StoreError> {
        let mut kept = Vec::new();
        loop {
            let out = filter(self.client.scan().table_name(table).consistent_read(true))
                .limit(i32::try_from(limit - kept.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(context, e))?;
            kept.extend(
                out.items
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(&mut keep),
            );
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() || kept.len() >= limit {
                return Ok((kept, start));
            }
        }
    }

    /// The items of `window` (of all orders) after `start`, `limit` at most, and where
    /// the Scan goes on.
    async fn window_items(
        &self,
        window: &EventWindow,
        start: Option<Item>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        const CONTEXT: &str = "reading events in a time window";
        let (from, to) = second_bounds(window);
        let mut filter = "occurredAt >= :from AND occurredAt < :to".to_owned();
        let mut values = HashMap::from([(":from".to_owned(), s(from)), (":to".to_owned(), s(to))]);
        let mut names = None;
        if let Some(status) = window.status {
            filter.push_str(" AND #status = :status");
            names = Some(HashMap::from([("#status".to_owned(), "status".to_owned())]));
            values.insert(":status".to_owned(), s(status.as_str()));
        }
        self.scan_up_to(
            CONTEXT,
            &self.events_table,
            |scan| {
                scan.filter_expression(&filter)
                    .set_expression_attribute_names(names.clone())
                    .set_expression_attribute_values(Some(values.clone()))
            },
            start,
            limit,
            |item| in_window(&item, window).then_some(item),
        )
        .await
    }

    /// The items of `window` of one order after `start`, `limit` at most, and the last
    /// one's key when more may follow: its history is read whole (one `Query`), filtered
    /// here.
    async fn order_window_items(
        &self,
        order_id: &str,
        window: &EventWindow,
        start: Option<EventKey>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let after = start.map(|k| k.version);
        let mut items: Vec<Item> = self
            .query_order(order_id, after.as_deref())
            .await?
            .into_iter()
            .filter(|item| {
                in_window(item, window)
                    && window
                        .status
                        .is_none_or(|status| get_s(item, "status") == Some(status.as_str()))
            })
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let last = more.then(|| items.last().and_then(EventKey::of)).flatten();
        Ok((items, last.map(|k| k.item())))
    }

    /// Rows of `table` by key, strongly consistent, any order.
    async fn batch_get(&self, table: &str, ids: Vec<String>) -> Result<Vec<Item>, StoreError> {
        let (client, table) = (self.client.clone(), table.to_owned());
        fan_out(
            "reading the read model",
            ids,
            BATCH_GET_KEYS,
            BATCH_CONCURRENCY,
            move |chunk| {
                let (client, table) = (client.clone(), table.clone());
                async move { batch_get_chunk(&client, &table, chunk).await }
            },
        )
        .await
    }

    /// Every row of `table` with `after < orderId <= through`, in order-id order.
    async fn rows_in_range(
        &self,
        table: &str,
        after: Option<&str>,
        through: Option<&str>,
    ) -> Result<Vec<ProjectedOrder>, StoreError> {
        let mut conditions = Vec::new();
        let mut values = HashMap::new();
        if let Some(after) = after {
            conditions.push("orderId > :after");
            values.insert(":after".to_owned(), s(after));
        }
        if let Some(through) = through {
            conditions.push("orderId <= :through");
            values.insert(":through".to_owned(), s(through));
        }
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(table)
                .set_filter_expression((!conditions.is_empty()).then(|| conditions.join(" AND ")))
                .set_expression_attribute_values((!values.is_empty()).then(|| values.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("reading the read model", e))?;
            rows.extend(
                out.items
                    .unwrap_or_default()
                    .into_iter()
                    .map(projected_order),
            );
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        rows.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(rows)
    }
}

/// One `BatchGetItem` of up to 100 orders' rows, again for what DynamoDB left unprocessed.
async fn batch_get_chunk(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    ids: Vec<String>,
) -> Result<Vec<Item>, StoreError> {
    const CONTEXT: &str = "reading the read model";
    let keys: Vec<Item> = ids
        .iter()
        .map(|id| HashMap::from([("orderId".to_owned(), s(id))]))
        .collect();
    until_processed(CONTEXT, keys, |keys| async move {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::new(CONTEXT, e))?;
        let out = client
            .batch_get_item()
            .request_items(table, request)
            .send()
            .await
            .map_err(|e| sdk_error(CONTEXT, e))?;
        let rows = out
            .responses
            .and_then(|mut r| r.remove(table))
            .unwrap_or_default();
        let left = out
            .unprocessed_keys
            .and_then(|mut u| u.remove(table))
            .map(|k| k.keys)
            .unwrap_or_default();
        Ok((rows, left))
    })
    .await
}

#[async_trait]
impl EventArchive for DynamoArchive {
    async fn histories(
        &self,
        cursor: Option<&HistoryCursor>,
        max_events: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.history_page(cursor, max_events, States::With).await
    }

    async fn history_raw(&self, order_id: &OrderId) -> Result<Vec<RawEvent>, StoreError> {
        self.history_items(order_id.as_str(), States::With).await
    }

    async fn events_between(
        &self,
        window: &EventWindow,
        cursor: Option<&WindowCursor>,
        limit: usize,
    ) -> Result<WindowPage, StoreError> {
        let start = match cursor {
            Some(c) => Some(decode::<EventKey>("reading a window cursor", &c.0)?),
            None => None,
        };
        let limit = limit.max(1);
        let (items, last) = match &window.order_id {
            Some(id) => {
                self.order_window_items(id.as_str(), window, start, limit)
                    .await?
            }
            None => {
                let start = start.as_ref().map(EventKey::item);
                self.window_items(window, start, limit).await?
            }
        };
        let next = last
            .as_ref()
            .and_then(EventKey::of)
            .map(|k| WindowCursor(encode(&k)));
        Ok(WindowPage {
            events: items
                .into_iter()
                .map(|e| raw_event(e, States::With))
                .collect(),
            next,
        })
    }

    /// DynamoDB's item counts (refreshed about every six hours on AWS): the events, and the
    /// live read model's rows for the orders.
    async fn size(&self) -> Result<ArchiveSize, StoreError> {
        let live = self.live.resolve().await?;
        let count = |table: String| {
            let client = self.client.clone();
            async move {
                client
                    .describe_table()
                    .table_name(table)
                    .send()
                    .await
                    .map_err(|e| sdk_error("counting items", e))
                    .map(|out| {
                        out.table
                            .and_then(|t| t.item_count)
                            .and_then(|c| u64::try_from(c).ok())
                            .unwrap_or(0)
                    })
            }
        };
        let (events, orders) = tokio::join!(count(self.events_table.clone()), count(live.table));
        Ok(ArchiveSize {
            events: events?,
            orders: orders?,
        })
    }
}

/// Where a pass over the read model stands: the table it reads (a rebuild may swap tables
/// meanwhile; the pass finishes the one it started) and the last key read.
#[derive(Debug, Serialize, Deserialize)]
struct RowPosition {
    table: String,
    after: String,
}

#[async_trait]
impl ProjectionScan for DynamoArchive {
    /// The stream's position says nothing about the event table's items.
    async fn projected(&self) -> Result<Projected, StoreError> {
        Ok(Projected::Unknown)
    }

    async fn rows_for(&self, page: &HistoryPage) -> Result<Vec<ProjectedOrder>, StoreError> {
        let live = self.live.resolve().await?;
        match &page.coverage {
            Coverage::Orders => {
                let ids = page.histories.iter().map(|h| h.order_id.clone()).collect();
                let items = self.batch_get(&live.table, ids).await?;
                Ok(items.into_iter().map(projected_order).collect())
            }
            Coverage::Range { after, through } => {
                self.rows_in_range(&live.table, after.as_deref(), through.as_deref())
                    .await
            }
        }
    }

    async fn rows(&self, cursor: Option<&RowCursor>, limit: usize) -> Result<RowPage, StoreError> {
        const CONTEXT: &str = "reading the read model";
        let (table, start) = match cursor {
            Some(c) => {
                let p: RowPosition = decode(CONTEXT, &c.0)?;
                let key = HashMap::from([("orderId".to_owned(), s(&p.after))]);
                (p.table, Some(key))
            }
            None => (self.live.resolve().await?.table, None),
        };
        let (rows, start) = self
            .scan_up_to(
                CONTEXT,
                &table,
                |scan| scan,
                start,
                limit.max(1),
                |item| Some(projected_order(item)),
            )
            .await?;
        let next = start
            .as_ref()
            .and_then(|k| get_s(k, "orderId"))
            .map(|after| {
                RowCursor(encode(&RowPosition {
                    table: table.clone(),
                    after: after.to_owned(),
                }))
            });
        Ok(RowPage { rows, next })
    }

    async fn get_projected(&self, order_id: &str) -> Result<Option<ProjectedOrder>, StoreError> {
        let live = self.live.resolve().await?;
        let out = self
            .client
            .get_item()
            .table_name(&live.table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading the read model", e))?;
        Ok(out.item.map(projected_order))
    }
}

#[cfg(test)]
mod tests {
    use super::{super::dynamo::n, *};

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn second_bounds_hold_every_stored_time_of_the_window_whatever_its_fraction_digits() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").to_utc();
        let window = EventWindow {
            from: t("2026-01-01T08:00:00.250Z"),
            to: t("2026-01-01T08:00:05.5Z"),
            order_id: None,
            status: None,
        };
        let (from, to) = second_bounds(&window);
        assert_eq!(
            (from.as_str(), to.as_str()),
            ("2026-01-01T08:00:00", "2026-01-01T08:00:06")
        );
        for stored in [
            "2026-01-01T08:00:00Z",
            "2026-01-01T08:00:00.25Z",
            "2026-01-01T08:00:05.499999Z",
            "2026-01-01T08:00:05.5Z",
        ] {
            assert!(from.as_str() <= stored && stored < to.as_str(), "{stored}");
        }
        for stored in ["2026-01-01T07:59:59.999Z", "2026-01-01T08:00:06Z"] {
            assert!(
                !(from.as_str() <= stored && stored < to.as_str()),
                "{stored}"
            );
        }
        // The exact window is applied after the coarse filter.
        let at = |text: &str| item(&[("occurredAt", s(text))]);
        assert!(!in_window(&at("2026-01-01T08:00:00Z"), &window));
        assert!(in_window(&at("2026-01-01T08:00:00.25Z"), &window));
        assert!(!in_window(&at("2026-01-01T08:00:05.5Z"), &window));
    }

    #[test]
    fn an_event_item_is_its_envelope_and_its_state_as_json_with_members_sorted() {
        let event = item(&[
            ("orderId", s("ORD-1")),
            ("version", n(2)),
            ("type", s("OrderStarted")),
            ("data", AttributeValue::M(HashMap::new())),
            (
                "order",
                AttributeValue::M(item(&[("version", n(2)), ("status", s("inprocess"))])),
            ),
        ]);
        let raw = raw_event(event, States::With);
        assert_eq!((raw.order_id.as_str(), raw.version), ("ORD-1", 2));
        assert_eq!(
            raw.envelope,
            r#"{"data":{},"orderId":"ORD-1","type":"OrderStarted","version":2}"#
        );
        assert_eq!(raw.order_state, r#"{"status":"inprocess","version":2}"#);
        let unconvertible = raw_event(
            item(&[("orderId", s("ORD-1")), ("version", n(1))]),
            States::With,
        );
        assert!(
            unconvertible.order_state.starts_with('<'),
            "{unconvertible:?}"
        );
    }

    #[test]
    fn consecutive_items_of_one_order_are_one_history() {
        let e = |id: &str, v: u64| item(&[("orderId", s(id)), ("version", n(v))]);
        let groups = group(vec![e("b", 1), e("b", 2), e("a", 1), e("c", 1), e("c", 2)]);
        let shape: Vec<(String, usize)> =
            groups.iter().map(|(id, e)| (id.clone(), e.len())).collect();
        assert_eq!(
            shape,
            vec![("b".into(), 2), ("a".into(), 1), ("c".into(), 2)]
        );
    }
}
