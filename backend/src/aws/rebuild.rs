//! `orders rebuild` on the AWS backend: the read model recomputed from the events alone
//! into a fresh DynamoDB table, then swapped in by the live-table pointer (tables cannot be
//! renamed; see [`super::live_table`]).
//!
//! 1. Take the rebuild lease (a ledger item, conditional put): one rebuild at a time.
//! 2. Create `<ORDERS_READ_MODEL_TABLE>-rebuild-<unix ms>` with the read model's key schema
//!    and `status-index` GSI (what bootstrap creates), and wait until it is ACTIVE.
//! 3. Fold every order's history (a strongly consistent Scan of the event table, in pages
//!    of whole histories) into it with `BatchWriteItem`. Nobody else writes it yet; the
//!    projector keeps writing the live table, and readers keep reading it.
//! 4. Flip the pointer to the new table (a conditional put: it must still name the table
//!    this rebuild replaces). Readers now see the old projection or the new, complete one.
//! 5. Wait out the pointer cache (and a margin): from then on every process writes the new
//!    table, and every write to the old one has landed (the argument is in `live_table`).
//! 6. Catch up: read the old table whole; an order whose row there is newer than the fold,
//!    or that the fold did not see, is folded again from its events (a consistent Query)
//!    and put into the new table with a version guard, so it never overwrites a newer row
//!    the projector wrote there. An order whose history cannot be folded keeps its old row.
//!    Rows are compared with the fold on the way, for the report's `changed`.
//! 7. Delete the old table if a rebuild made it; the table the deployment was created with
//!    is kept (CloudFormation owns it), unused.
//!
//! Events the projector has not applied yet are not folded at the swap: the projector
//! applies them later, to whichever table is live then. The change feed is left alone.

use std::{
    collections::{HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use events_schema::Order;

use super::{
    archive::DynamoArchive,
    bootstrap::{ensure_table, read_model_spec},
    dynamo::{
        Item, condition_failed, fan_out, from_item, get_n, get_s, n, s, sdk_error, until_processed,
    },
    live_table::{LiveTable, Pointer},
    read_model::{order_item, put_versioned},
};
use crate::ports::{
    BeforeSwap, HistoryCursor, ProgressFn, ProjectionRebuild, RebuildReport, States, StoreError,
    fold_raw,
};

/// Events per page of histories read from the event table.
const PAGE_EVENTS: usize = 5_000;
/// `BatchWriteItem` takes at most this many items.
const BATCH_WRITE_ITEMS: usize = 25;
/// Batch writes in flight at once.
const WRITE_CONCURRENCY: usize = 8;
/// Waited after the pointer cache, for clocks that run a little apart.
const SWAP_MARGIN: Duration = Duration::from_secs(1);
/// The ledger item that one rebuild at a time holds.
const LEASE_PK: &str = "read-model#rebuild";
/// How long a lease lasts unless renewed (a rebuild renews it as it goes): a rebuild that
/// died holds off the next one this long at most.
const LEASE: Duration = Duration::from_secs(600);
/// What the fresh tables' names start with, after the configured name.
const FRESH_INFIX: &str = "-rebuild-";

/// Rebuilds the read model of one AWS deployment.
pub struct DynamoRebuild {
    client: aws_sdk_dynamodb::Client,
    archive: Arc<DynamoArchive>,
    live: Arc<LiveTable>,
    ledger_table: String,
}

/// The fold of one order, as the catch-up compares it.
struct FoldedOrder {
    version: u64,
    /// A hash of the row's JSON (the fold's serialization), so that a million orders stay
    /// cheap to keep.
    digest: u64,
    events: u64,
}

/// What the fold wrote.
#[derive(Default)]
struct Folded {
    orders: HashMap<String, FoldedOrder>,
    events: u64,
    unfoldable: Vec<(String, String)>,
}

fn digest(order: &Order) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(order)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

fn epoch_seconds(after: Duration) -> u64 {
    (SystemTime::now() + after)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl DynamoRebuild {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        archive: Arc<DynamoArchive>,
        live: Arc<LiveTable>,
        ledger_table: String,
    ) -> Self {
        Self {
            client,
            archive,
            live,
            ledger_table,
        }
    }

    /// [`ProjectionRebuild::rebuild`], calling `before_swap` between the fold and the swap.
    pub async fn rebuild_with_hook(
        &self,
        progress: Arc<ProgressFn>,
        before_swap: BeforeSwap,
    ) -> Result<RebuildReport, StoreError> {
        let mut lease = Lease::acquire(&self.client, &self.ledger_table).await?;
        let result = self.run(&mut lease, progress.as_ref(), before_swap).await;
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "the rebuild lease was not released; it ends by itself");
        }
        result
    }

    /// The start of every rebuilt table's name (then the rebuild's start in milliseconds).
    fn fresh_prefix(&self) -> String {
        format!("{}{FRESH_INFIX}", self.live.configured())
    }

    async fn run(
        &self,
        lease: &mut Lease,
        progress: &ProgressFn,
        before_swap: BeforeSwap,
    ) -> Result<RebuildReport, StoreError> {
        let pointer = self.live.read().await?;
        let old = self.live.table_of(pointer.as_ref()).to_owned();
        self.drop_leftovers(&old).await?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let fresh = format!("{}{millis}", self.fresh_prefix());
        if !ensure_table(&self.client, &read_model_spec(&fresh)).await? {
            return Err(StoreError::new(
                "creating the fresh read model table",
                format!("{fresh} exists already"),
            ));
        }
        let swapped = self
            .fold_and_swap(lease, progress, before_swap, pointer.as_ref(), &fresh)
            .await;
        let folded = match swapped {
            Ok(folded) => folded,
            Err(e) => return Err(self.abandon(&fresh, e).await),
        };
        self.live.forget().await;
        tracing::info!(from = %old, to = %fresh, "swapped in the rebuilt read model; waiting out the pointer cache");
        tokio::time::sleep(self.live.cache() + SWAP_MARGIN).await;
        let mut report = self
            .catch_up(lease, &old, &fresh, folded)
            .await
            .map_err(|e| {
                StoreError::new(
                    "catching up after the swap",
                    format!(
                        "{fresh} is live, but copying what the projector wrote to {old} \
                         meanwhile failed ({e}); run `orders rebuild` again"
                    ),
                )
            })?;
        if old.starts_with(&self.fresh_prefix()) {
            self.delete_table(&old).await;
        }
        progress(report.events);
        report.swapped_in = Some(fresh);
        Ok(report)
    }

    /// After a failed fold or flip: deletes `fresh` unless the pointer names it (a flip
    /// whose reply was lost may have swapped it in after all). When the pointer cannot be
    /// read, `fresh` stays; the next rebuild drops it as a leftover if it is not live.
    async fn abandon(&self, fresh: &str, failure: StoreError) -> StoreError {
        match self.live.read().await {
            Ok(Some(pointer)) if pointer.table == fresh => StoreError::new(
                "swapping in the rebuilt read model table",
                format!(
                    "{fresh} is live, but the swap reported a failure ({failure}); \
                     run `orders rebuild` again"
                ),
            ),
            Ok(_) => {
                self.delete_table(fresh).await;
                failure
            }
            Err(read) => {
                tracing::warn!(table = %fresh, error = %read, "cannot tell whether the rebuilt table went live; leaving it");
                failure
            }
        }
    }

    /// Steps 3 and 4: the fold into `fresh`, then the pointer flip.
    async fn fold_and_swap(
        &self,
        lease: &mut Lease,
        progress: &ProgressFn,
        before_swap: BeforeSwap,
        pointer: Option<&Pointer>,
        fresh: &str,
    ) -> Result<Folded, StoreError> {
        let folded = self.fold_into(lease, progress, fresh).await?;
        tokio::task::spawn_blocking(before_swap)
            .await
            .map_err(|e| StoreError::new("rebuilding the read model", e))?;
        lease.renew_if_due().await?;
        self.live.flip(pointer, fresh).await?;
        Ok(folded)
    }

    /// Every history, folded and written into `fresh`.
    async fn fold_into(
        &self,
        lease: &mut Lease,
        progress: &ProgressFn,
        fresh: &str,
    ) -> Result<Folded, StoreError> {
        let mut folded = Folded::default();
        let mut cursor: Option<HistoryCursor> = None;
        loop {
            let page = self
                .archive
                .history_page(cursor.as_ref(), PAGE_EVENTS, States::Without)
                .await?;
            let mut items = Vec::with_capacity(page.histories.len());
            for history in &page.histories {
                let events = history.events.len() as u64;
                folded.events += events;
                match fold_raw(&history.events) {
                    Ok(order) => {
                        items.push(order_item(&order)?);
                        folded.orders.insert(
                            history.order_id.clone(),
                            FoldedOrder {
                                version: order.version,
                                digest: digest(&order),
                                events,
                            },
                        );
                    }
                    Err(reason) => folded.unfoldable.push((history.order_id.clone(), reason)),
                }
            }
            batch_write(&self.client, fresh, items).await?;
            progress(folded.events);
            lease.renew_if_due().await?;
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(folded),
            }
        }
    }

    /// Step 6: what the old table has that the fold has not, into `fresh`.
    async fn catch_up(
        &self,
        lease: &mut Lease,
        old: &str,
        fresh: &str,
        folded: Folded,
    ) -> Result<RebuildReport, StoreError> {
        const CONTEXT: &str = "reading the replaced read model";
        let unfoldable: HashSet<String> =
            folded.unfoldable.iter().map(|(id, _)| id.clone()).collect();
        let mut report = RebuildReport {
            orders: folded.orders.len() as u64,
            events: folded.events,
            unfoldable: folded.unfoldable,
            ..RebuildReport::default()
        };
        let mut seen = HashSet::with_capacity(folded.orders.len());
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(old)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(CONTEXT, e))?;
            let mut kept = Vec::new();
            for item in out.items.unwrap_or_default() {
                let Some(id) = get_s(&item, "orderId").map(str::to_owned) else {
                    continue;
                };
                seen.insert(id.clone());
                let version = get_n(&item, "version").and_then(|v| u64::try_from(v).ok());
                if unfoldable.contains(&id) {
                    // A rebuild repairs, never erases: the old row stays.
                    report.orders += 1;
                    kept.push((item, version.unwrap_or(0)));
                    continue;
                }
                let fold = folded.orders.get(&id);
                match (fold, version) {
                    (Some(f), Some(v)) if v < f.version => report.changed += 1, // lagging
                    (Some(f), Some(v)) if v == f.version => {
                        let same = from_item::<Order>(CONTEXT, item)
                            .is_ok_and(|row| digest(&row) == f.digest);
                        if !same {
                            report.changed += 1; // damaged, repaired
                        }
                    }
                    (Some(_), None) => report.changed += 1, // unreadable, repaired
                    // Newer than the fold, or an order the fold did not see.
                    _ => {
                        let version = version.unwrap_or(0);
                        if let Some(row) = self
                            .fold_again(&id, fold, item, version, &mut report)
                            .await?
                        {
                            kept.push(row);
                        }
                    }
                }
            }
            put_versioned(&self.client, fresh, kept).await?;
            lease.renew_if_due().await?;
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        // Orders the old table had no row for.
        report.changed += folded
            .orders
            .keys()
            .filter(|id| !seen.contains(*id))
            .count() as u64;
        Ok(report)
    }

    /// An order the projector moved past the fold (or created after it): folded again from
    /// its events. Returns the row to put into the new table, with its version: the fold,
    /// or the old row (at `old_version`) where the history cannot be folded; none where
    /// the order has no events.
    async fn fold_again(
        &self,
        order_id: &str,
        fold: Option<&FoldedOrder>,
        old_item: Item,
        old_version: u64,
        report: &mut RebuildReport,
    ) -> Result<Option<(Item, u64)>, StoreError> {
        let events = self
            .archive
            .history_items(order_id, States::Without)
            .await?;
        if events.is_empty() {
            report.changed += 1; // a row without events: not carried over
            return Ok(None);
        }
        if fold.is_none() {
            report.orders += 1;
        }
        match fold_raw(&events) {
            Ok(order) => {
                let new_events = (events.len() as u64).saturating_sub(fold.map_or(0, |f| f.events));
                report.caught_up += new_events;
                report.events += new_events;
                let old_row: Option<Order> =
                    from_item("reading the replaced read model", old_item).ok();
                if old_row.as_ref() != Some(&order) {
                    report.changed += 1;
                }
                Ok(Some((order_item(&order)?, order.version)))
            }
            Err(reason) => {
                report.unfoldable.push((order_id.to_owned(), reason));
                Ok(Some((old_item, old_version)))
            }
        }
    }

    /// Fresh tables that an interrupted rebuild left behind (never the live one).
    async fn drop_leftovers(&self, live: &str) -> Result<(), StoreError> {
        let prefix = self.fresh_prefix();
        let mut start: Option<String> = None;
        let mut leftovers = Vec::new();
        loop {
            let out = self
                .client
                .list_tables()
                .set_exclusive_start_table_name(start)
                .send()
                .await
                .map_err(|e| sdk_error("listing tables", e))?;
            leftovers.extend(
                out.table_names
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.starts_with(&prefix) && t != live),
            );
            match out.last_evaluated_table_name {
                Some(name) => start = Some(name),
                None => break,
            }
        }
        for table in leftovers {
            tracing::info!(%table, "deleting a table an interrupted rebuild left behind");
            self.delete_table(&table).await;
        }
        Ok(())
    }

    /// Best effort: a table that stays behind costs storage, not correctness.
    async fn delete_table(&self, table: &str) {
        match self.client.delete_table().table_name(table).send().await {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => {
                let err = sdk_error("deleting a replaced read model table", err);
                tracing::warn!(%table, error = %err, "delete it by hand");
            }
        }
    }
}

#[async_trait]
impl ProjectionRebuild for DynamoRebuild {
    async fn rebuild(&self, progress: Arc<ProgressFn>) -> Result<RebuildReport, StoreError> {
        self.rebuild_with_hook(progress, Box::new(|| {})).await
    }
}

/// Writes `items` into `table`, 25 per request, 8 requests at a time.
async fn batch_write(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<Item>,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "writing the fresh read model table";
    let requests = items
        .into_iter()
        .map(|item| {
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map(|put| WriteRequest::builder().put_request(put).build())
                .map_err(|e| StoreError::new(CONTEXT, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (client, table) = (client.clone(), table.to_owned());
    fan_out(
        CONTEXT,
        requests,
        BATCH_WRITE_ITEMS,
        WRITE_CONCURRENCY,
        move |chunk| {
            let (client, table) = (client.clone(), table.clone());
            async move {
                until_processed(CONTEXT, chunk, |requests| {
                    let (client, table) = (&client, &table);
                    async move {
                        let out = client
                            .batch_write_item()
                            .request_items(table, requests)
                            .send()
                            .await
                            .map_err(|e| sdk_error(CONTEXT, e))?;
                        let left = out
                            .unprocessed_items
                            .and_then(|mut u| u.remove(table))
                            .unwrap_or_default();
                        Ok((Vec::<()>::new(), left))
                    }
                })
                .await
            }
        },
    )
    .await
    .map(|_| ())
}

/// The rebuild lease: a ledger item held by one rebuild, renewed as it goes, released at
/// the end; a rebuild that died loses it when it runs out.
struct Lease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    owner: String,
    renewed: Instant,
}

impl Lease {
    async fn acquire(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<Self, StoreError> {
        const CONTEXT: &str = "taking the rebuild lease";
        let owner = uuid::Uuid::now_v7().to_string();
        let result = client
            .put_item()
            .table_name(table)
            .item("pk", s(LEASE_PK))
            .item("owner", s(&owner))
            .item("startedAt", s(chrono::Utc::now().to_rfc3339()))
            .item("heldUntil", n(epoch_seconds(LEASE)))
            // The ledger's TTL removes a dead rebuild's item eventually.
            .item("expiresAt", n(epoch_seconds(LEASE * 2)))
            .condition_expression("attribute_not_exists(pk) OR heldUntil < :now")
            .expression_attribute_values(":now", n(epoch_seconds(Duration::ZERO)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Self {
                client: client.clone(),
                table: table.to_owned(),
                owner,
                renewed: Instant::now(),
            }),
            Err(err) if condition_failed(&err) => {
                let held = client
                    .get_item()
                    .table_name(table)
                    .key("pk", s(LEASE_PK))
                    .consistent_read(true)
                    .send()
                    .await
                    .ok()
                    .and_then(|out| out.item);
                let since = held
                    .as_ref()
                    .and_then(|i| get_s(i, "startedAt"))
                    .unwrap_or("a moment ago")
                    .to_owned();
                Err(StoreError::new(
                    CONTEXT,
                    format!(
                        "another rebuild of the read model is running (started {since}); \
                         wait for it to finish (a rebuild that died lets go within {} minutes)",
                        LEASE.as_secs() / 60
                    ),
                ))
            }
            Err(err) => Err(sdk_error(CONTEXT, err)),
        }
    }

    /// Extends the lease once half of it has gone by.
    async fn renew_if_due(&mut self) -> Result<(), StoreError> {
        if self.renewed.elapsed() < LEASE / 2 {
            return Ok(());
        }
        let asked = Instant::now();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(LEASE_PK))
            .update_expression("SET heldUntil = :until, expiresAt = :expires")
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":until", n(epoch_seconds(LEASE)))
            .expression_attribute_values(":expires", n(epoch_seconds(LEASE * 2)))
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await
            .map_err(|e| sdk_error("renewing the rebuild lease (did it run out?)", e))?;
        self.renewed = asked;
        Ok(())
    }

    async fn release(&self) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(LEASE_PK))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone took it over after it ran out: not ours to delete.
            Err(err) if condition_failed(&err) => Ok(()),
            Err(err) => Err(sdk_error("releasing the rebuild lease", err)),
        }
    }
}
