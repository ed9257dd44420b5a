//! The command service: load the order's head, decide, record, append; on a version race,
//! do it all again. Also where a write's reply is built and, with an `Idempotency-Key`,
//! saved in the same atomic step as the events.

use std::sync::Arc;

use axum::http::{HeaderName, StatusCode, header};
use backend::{
    Append, AppendError, EventStore, Head, IdempotencyRecord, IdempotencyStore, SavedResponse,
};
use chrono::{DateTime, Utc};
use events_schema::{Command, EventContext, Metadata, Order, OrderId, decide, record};

use crate::{problem::ApiError, request::IfMatch};

/// How long a saved response answers retries with the same `Idempotency-Key`.
pub const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);
/// Version races are resolved by retrying; this many in a row means sustained contention.
const MAX_ATTEMPTS: usize = 64;

pub const MESSAGE: &str = "Order processed successfully";

/// The body of every successful write.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WriteResponse {
    /// Always "Order processed successfully" (what seed 000's clients check).
    pub message: String,
    pub order: Order,
}

/// A write's HTTP answer, in the form both served and saved for idempotent retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, String)>,
    pub body: String,
}

impl Reply {
    /// `{"message": ..., "order": ...}` with the order's strong ETag (and `Location` when
    /// the order was created).
    pub fn order(status: StatusCode, order: &Order) -> Reply {
        let body = serde_json::to_string(&WriteResponse {
            message: MESSAGE.into(),
            order: order.clone(),
        })
        .unwrap_or_default();
        let mut headers = vec![(header::ETAG, etag(order.version))];
        if status == StatusCode::CREATED {
            headers.push((header::LOCATION, format!("/orders/{}", order.order_id)));
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn saved(&self) -> SavedResponse {
        SavedResponse {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
                .collect(),
            body: self.body.clone(),
        }
    }
}

pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// A claimed `Idempotency-Key`, to be completed with the reply.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub key: String,
    pub fingerprint: String,
}

impl Claimed {
    pub fn record(&self, reply: &Reply, now: DateTime<Utc>) -> IdempotencyRecord {
        IdempotencyRecord {
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            response: reply.saved(),
            expires_at: now + IDEMPOTENCY_TTL,
        }
    }
}

/// One write as the HTTP layer hands it over.
pub struct Write<'a> {
    pub order_id: &'a OrderId,
    /// The server just made this id up: no order can have it yet.
    pub fresh_id: bool,
    pub command: &'a Command,
    pub if_match: Option<&'a IfMatch>,
    pub metadata: Metadata,
    pub success: StatusCode,
    pub claimed: Option<&'a Claimed>,
}

/// Orders whose head this process has seen lately.
const CACHED_HEADS: usize = 100_000;

#[derive(Clone)]
pub struct Commands {
    pub events: Arc<dyn EventStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The heads this process appended last. Only a hint: another writer may have moved an
    /// order on, which the optimistic append then detects, and the loop re-reads the store.
    heads: Arc<quick_cache::sync::Cache<OrderId, Head>>,
}

impl Commands {
    pub fn new(events: Arc<dyn EventStore>, idempotency: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            events,
            idempotency,
            heads: Arc::new(quick_cache::sync::Cache::new(CACHED_HEADS)),
        }
    }

    /// The order's head: from the cache on a first attempt, else from the store. A cached
    /// head that fails `If-Match` is re-read, so a stale cache never causes a wrong 412.
    async fn head(&self, write: &Write<'_>, first_attempt: bool) -> Result<Option<Head>, ApiError> {
        if first_attempt {
            if write.fresh_id {
                return Ok(None);
            }
            if let Some(head) = self.heads.get(write.order_id)
                && write.if_match.is_none_or(|m| m.matches(head.order.version))
            {
                return Ok(Some(head));
            }
        }
        let head = self.events.head(write.order_id).await?;
        match &head {
            Some(h) => self.heads.insert(write.order_id.clone(), h.clone()),
            None => {
                self.heads.remove(write.order_id);
            }
        }
        Ok(head)
    }

    /// Runs the decide-append loop until the events are durable, the command is refused,
    /// or the `If-Match` precondition fails.
    pub async fn execute(&self, write: Write<'_>) -> Result<Reply, ApiError> {
        for attempt in 0..MAX_ATTEMPTS {
            let head = self.head(&write, attempt == 0).await?;
            check_precondition(write.order_id, head.as_ref(), write.if_match)?;
            let state = head.as_ref().map(|h| &h.order);
            let events = decide(write.order_id, state, write.command)?;
            let now = now();
            if events.is_empty() {
                let Some(head) = head else {
                    return Err(ApiError::NotFound(format!(
                        "order {} does not exist",
                        write.order_id
                    )));
                };
                let reply = Reply::order(write.success, &head.order);
                self.save(write.claimed, &reply, now).await?;
                return Ok(reply);
            }
            let ctx = EventContext {
                occurred_at: now,
                metadata: write.metadata.clone(),
            };
            let recorded = record(
                write.order_id,
                head.as_ref().map(|h| (&h.order, &h.hash)),
                events,
                &ctx,
                uuid::Uuid::now_v7,
            )
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            let Some(new_head) = recorded.last().map(|r| Head {
                order: r.order.clone(),
                hash: r.envelope.hash,
            }) else {
                continue;
            };
            let after = &new_head.order;
            let reply = Reply::order(write.success, after);
            let append = Append {
                order_id: write.order_id.clone(),
                expected_version: head.as_ref().map_or(0, |h| h.order.version),
                events: recorded,
                idempotency: write.claimed.map(|c| c.record(&reply, now)),
            };
            match self.events.append(append).await {
                Ok(()) => {
                    self.heads.insert(write.order_id.clone(), new_head);
                    return Ok(reply);
                }
                Err(AppendError::Conflict { .. }) if write.if_match.is_some() => {
                    self.heads.remove(write.order_id);
                    return Err(ApiError::PreconditionFailed(format!(
                        "order {} changed while this request was being applied; read it again and retry with its new ETag",
                        write.order_id
                    )));
                }
                Err(AppendError::Conflict { .. }) => {
                    self.heads.remove(write.order_id);
                    tracing::debug!(order_id = %write.order_id, "version race; deciding again");
                    tokio::task::yield_now().await;
                }
                Err(AppendError::Store(e)) => return Err(e.into()),
            }
        }
        Err(ApiError::Unavailable(format!(
            "order {} is being changed by many writers at once; retry",
            write.order_id
        )))
    }

    /// Saves the reply of a request that appended nothing.
    pub async fn save(
        &self,
        claimed: Option<&Claimed>,
        reply: &Reply,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        if let Some(claimed) = claimed {
            self.idempotency
                .complete(claimed.record(reply, now))
                .await?;
        }
        Ok(())
    }
}

fn check_precondition(
    order_id: &OrderId,
    head: Option<&Head>,
    if_match: Option<&IfMatch>,
) -> Result<(), ApiError> {
    match (if_match, head) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(ApiError::NotFound(format!(
            "order {order_id} does not exist"
        ))),
        (Some(m), Some(h)) if m.matches(h.order.version) => Ok(()),
        (Some(_), Some(h)) => Err(ApiError::PreconditionFailed(format!(
            "order {order_id} is at version {}, which If-Match does not name; read it again and retry with ETag {}",
            h.order.version,
            etag(h.order.version)
        ))),
    }
}

/// Event time, to the microsecond: what every store keeps exactly.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
