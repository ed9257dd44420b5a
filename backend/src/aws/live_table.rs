//! The live-table pointer: which DynamoDB table is the read model right now.
//!
//! DynamoDB tables cannot be renamed, so `orders rebuild` swaps projections by flipping a
//! pointer instead: one item in the ledger table (`pk` = [`POINTER_PK`]) whose `table`
//! names the live read model table. Without the item, the configured table
//! (`ORDERS_READ_MODEL_TABLE`) is live, so a deployment that never rebuilt reads no pointer
//! it lacks. Every process reads the pointer with a strongly consistent `GetItem` and uses
//! what it read for at most [`POINTER_CACHE`], measured from *before* the request was sent.
//!
//! Why that is enough for a rebuild to lose no projector write: a writer that read the old
//! name at `r` (before the flip at `f`) sent the read at `t0 <= r`, and uses the name only
//! for writes that complete before `t0 + cache`; a write that completes later is checked
//! against the pointer again and, if it moved, written again to the new table (see
//! `DynamoReadModel::apply`). So every write to the old table that is not repeated lands
//! before `f + cache`. The rebuild starts its catch-up (copying newer rows from the old
//! table, with version-guarded puts) after it has seen the flip succeed and then waited
//! `cache` and a margin: the catch-up sees all of them.

use std::time::{Duration, Instant};

use super::dynamo::{condition_failed, get_n, get_s, n, s, sdk_error};
use crate::ports::StoreError;

/// How long a process uses the pointer it read: the delay between a rebuild's swap and the
/// moment every process reads the new table, and what each process pays for it (one
/// `GetItem` on the ledger per this period while it uses the read model).
pub const POINTER_CACHE: Duration = Duration::from_secs(5);
/// The ledger item that names the live read model table.
pub const POINTER_PK: &str = "read-model#live";

/// A name read from the pointer, and when it was asked for.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub table: String,
    asked_at: Instant,
}

/// The pointer item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub table: String,
    /// How many swaps there have been.
    pub generation: u64,
}

/// Resolves (and caches) the live read model table; flips the pointer for a rebuild.
pub struct LiveTable {
    client: aws_sdk_dynamodb::Client,
    ledger_table: String,
    configured: String,
    cache: Duration,
    current: tokio::sync::Mutex<Option<Resolved>>,
}

impl LiveTable {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        ledger_table: String,
        configured: String,
        cache: Duration,
    ) -> Self {
        Self {
            client,
            ledger_table,
            configured,
            cache,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The table the deployment was configured with (live until the first rebuild).
    pub fn configured(&self) -> &str {
        &self.configured
    }

    /// The live table according to `pointer`: its table, or the configured one while
    /// there is no pointer yet.
    pub fn table_of<'a>(&'a self, pointer: Option<&'a Pointer>) -> &'a str {
        pointer.map_or(self.configured.as_str(), |p| p.table.as_str())
    }

    /// How long a resolved name is used.
    pub fn cache(&self) -> Duration {
        self.cache
    }

    /// The live table: the cached name while it is fresh, else the pointer read again.
    pub async fn resolve(&self) -> Result<Resolved, StoreError> {
        let mut current = self.current.lock().await;
        if let Some(r) = current.as_ref().filter(|r| self.is_fresh(r)) {
            return Ok(r.clone());
        }
        let asked_at = Instant::now();
        let table = self.table_of(self.read().await?.as_ref()).to_owned();
        let resolved = Resolved { table, asked_at };
        *current = Some(resolved.clone());
        Ok(resolved)
    }

    /// Whether `resolved` may still be used: less than the cache period since it was asked.
    pub fn is_fresh(&self, resolved: &Resolved) -> bool {
        resolved.asked_at.elapsed() < self.cache
    }

    /// Drops the cached name (after a failed request: the table may be gone).
    pub async fn forget(&self) {
        *self.current.lock().await = None;
    }

    /// `result` of a request to the resolved table; on failure the name is forgotten, so
    /// that the next request reads the pointer again (the table may be gone).
    pub async fn forget_on_error<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    /// The pointer item, strongly consistent; `None` if there is none yet.
    pub async fn read(&self) -> Result<Option<Pointer>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.ledger_table)
            .key("pk", s(POINTER_PK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "reading the live read model table's name from the ledger table \
                     (ORDERS_LEDGER_TABLE must name the deployment's ledger)",
                    e,
                )
            })?;
        Ok(out.item.map(|item| Pointer {
            table: get_s(&item, "table").map_or_else(|| self.configured.clone(), str::to_owned),
            generation: get_n(&item, "generation")
                .and_then(|g| u64::try_from(g).ok())
                .unwrap_or(0),
        }))
    }

    /// Points the pointer at `to`, only if it still says what `from` says (`None`: no
    /// pointer yet): two rebuilds can never both believe they swapped.
    pub async fn flip(&self, from: Option<&Pointer>, to: &str) -> Result<Pointer, StoreError> {
        const CONTEXT: &str = "swapping in the rebuilt read model table";
        let generation = from.map_or(0, |p| p.generation) + 1;
        let previous = self.table_of(from);
        let mut request = self
            .client
            .put_item()
            .table_name(&self.ledger_table)
            .item("pk", s(POINTER_PK))
            .item("table", s(to))
            .item("previous", s(previous))
            .item("generation", n(generation))
            .item("swappedAt", s(chrono::Utc::now().to_rfc3339()));
        request = match from {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(p) => request
                .condition_expression("#table = :table AND generation = :generation")
                .expression_attribute_names("#table", "table")
                .expression_attribute_values(":table", s(&p.table))
                .expression_attribute_values(":generation", n(p.generation)),
        };
        match request.send().await {
            Ok(_) => Ok(Pointer {
                table: to.to_owned(),
                generation,
            }),
            Err(err) if condition_failed(&err) => Err(StoreError::new(
                CONTEXT,
                format!(
                    "the live-table pointer moved while this rebuild ran (from {previous}); \
                         {to} was not swapped in"
                ),
            )),
            Err(err) => Err(sdk_error(CONTEXT, err)),
        }
    }
}
