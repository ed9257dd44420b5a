//! The command service: load the order's head, decide, record, append; on a version race,
//! do it all again. With a claimed idempotency key, the response to replay is saved in the
//! same atomic step as the events. It speaks in orders and domain errors: what a reply
//! looks like on the wire is the routes' business (they hand over how to render the one
//! to save).

use std::sync::Arc;

use backend::{
    Append, AppendError, EventStore, Head, IdempotencyRecord, IdempotencyStore, SavedResponse,
    StoreError,
};
use chrono::{DateTime, Utc};
use events_schema::{
    Command, EventContext, Metadata, NotPlaced, Order, OrderEvent, OrderId, Rejection, decide,
    fold, record,
};

use crate::request::{IfMatch, PlaceRequest};

/// How long a saved response answers retries with the same `Idempotency-Key`.
pub(crate) const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);
/// Version races are resolved by retrying; this many in a row means sustained contention.
const MAX_ATTEMPTS: usize = 64;
/// After a lost race, a retry waits a random time up to this, doubled after each further
/// loss up to [`MAX_BACKOFF`] ("full jitter"), so that racing writers spread out instead of
/// colliding again in lock step. The first retry does not wait at all.
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_micros(500);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// How long to wait before attempt `attempt` (1 for the first retry): nothing for the
/// first retry, then a uniformly random time up to an exponentially growing cap.
pub(crate) fn backoff(attempt: usize, random: u64) -> std::time::Duration {
    if attempt <= 1 {
        return std::time::Duration::ZERO;
    }
    let doublings = u32::try_from(attempt - 2).unwrap_or(u32::MAX).min(16);
    let cap = FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF);
    let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX).max(1);
    std::time::Duration::from_micros(random % (cap_micros + 1))
}

/// A cheap random number for jitter (not for anything secret): SipHash under fresh
/// per-process random keys, which the standard library varies from one call to the next.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Why a write did not leave the order as asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// The order does not exist (a write that needs one, or a conditional write).
    #[error("order {0} does not exist")]
    NotFound(OrderId),
    /// The order is not at any of the versions the writer expects.
    #[error("order {order_id} is at version {current}, not an expected one")]
    Stale { order_id: OrderId, current: u64 },
    /// Under an expected version, another writer appended between the read and the append.
    #[error("order {0} changed while the write was being applied")]
    ChangedMeanwhile(OrderId),
    /// The command is not legal in the order's state: an illegal transition, a revision of
    /// a terminal order, an id placed before with other content, a missing reason...
    #[error(transparent)]
    Rejected(Rejection),
    /// Every attempt lost a version race.
    #[error("order {0} is being changed by many writers at once")]
    Contended(OrderId),
    /// The idempotency key is held by a request that is still running.
    #[error("the idempotency key is held by a request still in progress")]
    KeyInProgress,
    /// The idempotency key was used before with a different request.
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    /// The store failed or is overloaded (whether a retry can help, the error says).
    #[error("the order store is unavailable")]
    Unavailable(#[from] StoreError),
    /// The order's stored history does not fold (only a damaged store holds such).
    #[error("the order's history is damaged")]
    Corrupt(#[from] NotPlaced),
}

impl From<Rejection> for CommandError {
    fn from(r: Rejection) -> Self {
        CommandError::Rejected(r)
    }
}

/// A claimed idempotency key, to be completed with the response to replay.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) key: backend::LedgerKey,
    pub(crate) fingerprint: String,
    /// How long the saved response answers repeats of the key.
    pub(crate) ttl: chrono::Duration,
}

impl Claimed {
    fn record(&self, response: SavedResponse, now: DateTime<Utc>) -> IdempotencyRecord {
        IdempotencyRecord {
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            response,
            expires_at: now + self.ttl,
        }
    }
}

/// A write under a claimed idempotency key: the key, and the response a retry is to get
/// for the order as the write leaves it.
pub(crate) struct Idempotent<'a> {
    pub(crate) claimed: &'a Claimed,
    pub(crate) response: &'a (dyn Fn(&Order) -> SavedResponse + Sync),
}

/// One write as the HTTP layer hands it over.
pub(crate) struct Write<'a> {
    pub(crate) order_id: &'a OrderId,
    pub(crate) command: &'a Command,
    /// A placement (`command` is its `Command::Place`): with a server-made id, no order can
    /// have it yet, so nothing is read; with the client's id and no expected version, a
    /// placement with the same content as the order's first is a retry (see
    /// [`Commands::execute`]).
    pub(crate) placement: Option<&'a PlaceRequest>,
    pub(crate) if_match: Option<&'a IfMatch>,
    pub(crate) metadata: Metadata,
    pub(crate) idempotent: Option<Idempotent<'a>>,
}

impl Write<'_> {
    /// The server just made this id up: no order can have it yet.
    fn fresh_id(&self) -> bool {
        self.placement.is_some_and(|p| p.order_id.is_none())
    }

    /// The placement that the "same placement again" rule applies to, if this is one.
    fn repeatable(&self) -> Option<&PlaceRequest> {
        self.placement
            .filter(|p| p.order_id.is_some() && self.if_match.is_none())
    }
}

/// Orders whose head this process has seen lately.
const CACHED_HEADS: usize = 100_000;

#[derive(Clone)]
pub(crate) struct Commands {
    pub(crate) events: Arc<dyn EventStore>,
    pub(crate) idempotency: Arc<dyn IdempotencyStore>,
    /// The heads this process appended last. Only a hint: another writer may have moved an
    /// order on, which the optimistic append then detects, and the loop re-reads the store.
    heads: Arc<quick_cache::sync::Cache<OrderId, Head>>,
}

impl Commands {
    pub(crate) fn new(events: Arc<dyn EventStore>, idempotency: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            events,
            idempotency,
            heads: Arc::new(quick_cache::sync::Cache::new(CACHED_HEADS)),
        }
    }

    /// The order's head: from the cache on a first attempt, else from the store. A cached
    /// head that fails `If-Match` is re-read, so a stale cache never causes a wrong 412.
    async fn head(
        &self,
        write: &Write<'_>,
        first_attempt: bool,
    ) -> Result<Option<Head>, CommandError> {
        if first_attempt {
            if write.fresh_id() {
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

    /// Runs the write; returns the order as it now stands (for a retried placement, as the
    /// first placement left it).
    ///
    /// The "same placement again" rule lives here: a placement of an existing client-chosen
    /// id (without an expected version) is answered with the order's first placement when
    /// it asks for the same content (comparing only the fields sent), and rejected as
    /// `AlreadyExists` otherwise. The first event is read only then, once the head or a
    /// lost append has shown that the order exists.
    pub(crate) async fn execute(&self, write: Write<'_>) -> Result<Order, CommandError> {
        let outcome = self.decide_and_append(&write).await;
        let Some(place) = write.repeatable() else {
            return outcome;
        };
        match outcome {
            Err(CommandError::Rejected(Rejection::AlreadyExists(_))) => {
                let first = self.first_placement(write.order_id, place).await?;
                self.save(write.idempotent.as_ref(), &first).await?;
                backend::emf::duplicate(
                    backend::emf::Duplicate::SamePlacement,
                    write.order_id.as_str(),
                    backend::emf::Origin {
                        correlation_id: &write.metadata.correlation_id,
                        trace_header: write.metadata.trace_header.as_deref(),
                    },
                );
                Ok(first)
            }
            other => other,
        }
    }

    /// The decide-append loop: until the events are durable, the command is refused, or
    /// the expected version is not the order's.
    async fn decide_and_append(&self, write: &Write<'_>) -> Result<Order, CommandError> {
        for attempt in 0..MAX_ATTEMPTS {
            let head = self.head(write, attempt == 0).await?;
            check_precondition(write.order_id, head.as_ref(), write.if_match)?;
            let state = head.as_ref().map(|h| &h.order);
            let events = decide(write.order_id, state, write.command)?;
            let now = now();
            if events.is_empty() {
                let Some(head) = head else {
                    return Err(CommandError::NotFound(write.order_id.clone()));
                };
                self.save(write.idempotent.as_ref(), &head.order).await?;
                return Ok(head.order);
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
            )?;
            events_schema::check_size(&recorded)?;
            let Some(new_head) = recorded.last().map(|r| Head {
                order: r.order.clone(),
                hash: r.envelope.hash,
            }) else {
                continue;
            };
            let append = Append {
                order_id: write.order_id.clone(),
                expected_version: head.as_ref().map_or(0, |h| h.order.version),
                events: recorded,
                idempotency: write
                    .idempotent
                    .as_ref()
                    .map(|i| i.claimed.record((i.response)(&new_head.order), now)),
            };
            match self.events.append(append).await {
                Ok(()) => {
                    let order = new_head.order.clone();
                    self.heads.insert(write.order_id.clone(), new_head);
                    return Ok(order);
                }
                Err(AppendError::Conflict { .. }) if write.if_match.is_some() => {
                    self.heads.remove(write.order_id);
                    return Err(CommandError::ChangedMeanwhile(write.order_id.clone()));
                }
                // A placement lost to another: the order exists now, no need to read its
                // head to learn that.
                Err(AppendError::Conflict { .. })
                    if head.is_none() && matches!(write.command, Command::Place(_)) =>
                {
                    self.heads.remove(write.order_id);
                    return Err(Rejection::AlreadyExists(write.order_id.clone()).into());
                }
                Err(AppendError::Conflict { .. }) => {
                    self.heads.remove(write.order_id);
                    tracing::debug!(order_id = %write.order_id, attempt, "version race; deciding again");
                    let wait = backoff(attempt + 1, jitter());
                    if wait.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(AppendError::Store(e)) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended(write.order_id.clone()))
    }

    /// For an existing order: the order as its first placement left it, if `place` asks
    /// for the same thing; `AlreadyExists` if it asks for something else.
    async fn first_placement(
        &self,
        order_id: &OrderId,
        place: &PlaceRequest,
    ) -> Result<Order, CommandError> {
        let first = self.events.events(order_id, 0, 1).await?;
        match first.items.first() {
            Some(first) if matches!(&first.event, OrderEvent::OrderPlaced(p) if place.matches(p)) => {
                fold([first])?.ok_or_else(|| Rejection::AlreadyExists(order_id.clone()).into())
            }
            _ => Err(Rejection::AlreadyExists(order_id.clone()).into()),
        }
    }

    /// Saves the response of a write that appended nothing.
    async fn save(
        &self,
        idempotent: Option<&Idempotent<'_>>,
        order: &Order,
    ) -> Result<(), CommandError> {
        if let Some(i) = idempotent {
            self.idempotency
                .complete(i.claimed.record((i.response)(order), now()))
                .await?;
        }
        Ok(())
    }
}

fn check_precondition(
    order_id: &OrderId,
    head: Option<&Head>,
    if_match: Option<&IfMatch>,
) -> Result<(), CommandError> {
    match (if_match, head) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(CommandError::NotFound(order_id.clone())),
        (Some(m), Some(h)) if m.matches(h.order.version) => Ok(()),
        (Some(_), Some(h)) => Err(CommandError::Stale {
            order_id: order_id.clone(),
            current: h.order.version,
        }),
    }
}

/// Event time, to the microsecond: what every store keeps exactly.
pub(crate) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_after_a_lost_race_back_off_with_bounded_jitter() {
        assert_eq!(backoff(1, u64::MAX), std::time::Duration::ZERO);
        // Jittered: different random numbers give different waits, never over the cap.
        let waits: std::collections::BTreeSet<_> = (0..50u64).map(|r| backoff(3, r * 7)).collect();
        assert!(waits.len() > 1, "{waits:?}");
        for attempt in 2..MAX_ATTEMPTS {
            for r in [0, 1, 12_345, u64::MAX] {
                assert!(backoff(attempt, r) <= MAX_BACKOFF, "attempt {attempt}");
            }
        }
        // The cap grows: a late retry can wait longer than the first backoff allows.
        assert!(backoff(12, u64::MAX - 1) > FIRST_BACKOFF);
        // The whole loop is bounded: even every wait at its cap stays under a few seconds.
        let worst: std::time::Duration = (1..MAX_ATTEMPTS)
            .map(|a| {
                let cap = FIRST_BACKOFF
                    .saturating_mul(1 << (a.saturating_sub(2)).min(16))
                    .min(MAX_BACKOFF);
                if a <= 1 {
                    std::time::Duration::ZERO
                } else {
                    cap
                }
            })
            .sum();
        assert!(worst < std::time::Duration::from_secs(4), "{worst:?}");
    }
}
