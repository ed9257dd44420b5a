//! The projector: folds each recorded event's order state into the read model, then
//! publishes each event to the bus, and says which record failed so that it and what
//! follows are retried.
//!
//! Each record carries the order's state after its event, and the read model upserts only
//! newer versions: projecting a record twice or out of order never moves an order back.
//! Publication comes after the read model and before the checkpoint, so it is at least
//! once and never skipped; handlers are idempotent per event id.
//!
//! [`Projector::project`] speaks the domain's types on both backends; the Lambda edge
//! ([`lambda`]) decodes DynamoDB stream events into them and encodes the batch-item
//! failures Lambda expects.

pub mod lambda;

use backend::{BusEntry, EventPublisher, ReadModel};
use events_schema::{EventDetailRef, Recorded};

pub struct Projector<'a> {
    pub read_model: &'a dyn ReadModel,
    pub publisher: &'a dyn EventPublisher,
    /// EventBridge `Source` of published events.
    pub source: &'a str,
}

/// Why a batch was not projected whole: the first record that failed (it and every later
/// one are to be retried; those before it are done).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {first} of the batch failed: {reason}")]
pub struct Failed {
    pub first: usize,
    pub reason: String,
    /// The store or bus was unavailable (busy, throttled, unreachable), not this record at
    /// fault: a runtime retries it without counting towards parking it.
    pub transient: bool,
}

/// The bus entry for a recorded event (`replayed` marks re-publication of history).
pub fn bus_entry(
    source: &str,
    recorded: &Recorded,
    replayed: bool,
) -> Result<BusEntry, serde_json::Error> {
    let detail = serde_json::to_string(&EventDetailRef {
        event: &recorded.envelope,
        order: &recorded.order,
        replayed,
    })?;
    Ok(BusEntry {
        source: source.to_owned(),
        detail_type: recorded.envelope.event.type_name().to_owned(),
        detail,
        time: recorded.envelope.occurred_at,
        // A re-publication is an operator's action, not the original request's: it is not
        // attached to that request's (by then possibly expired) trace.
        trace_header: if replayed {
            None
        } else {
            recorded.envelope.metadata.trace_header.clone()
        },
    })
}

impl Projector<'_> {
    /// Projects a batch in order: the read model first (one update for the batch), then one
    /// publication. On failure, the first record that failed; everything before it is done.
    pub async fn project(&self, records: &[Recorded]) -> Result<(), Failed> {
        if records.is_empty() {
            return Ok(());
        }
        let orders: Vec<_> = records.iter().map(|r| r.order.clone()).collect();
        if let Err(e) = self.read_model.apply(&orders).await {
            return Err(Failed {
                first: 0,
                reason: format!("updating the read model: {e}"),
                transient: e.is_retryable(),
            });
        }
        let mut entries = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match bus_entry(self.source, r, false) {
                Ok(entry) => entries.push(entry),
                // Whatever comes before it is published; it and the rest are retried.
                Err(e) => {
                    self.publish(&entries).await?;
                    return Err(Failed {
                        first: i,
                        reason: format!("encoding the event for the bus: {e}"),
                        transient: false,
                    });
                }
            }
        }
        self.publish(&entries).await?;
        for r in records {
            tracing::debug!(
                order_id = %r.envelope.order_id,
                event_id = %r.envelope.event_id,
                version = r.envelope.version,
                correlation_id = %r.envelope.metadata.correlation_id,
                "projected and published"
            );
        }
        Ok(())
    }

    /// Publishes `entries`; the first that failed, if any.
    async fn publish(&self, entries: &[BusEntry]) -> Result<(), Failed> {
        if entries.is_empty() {
            return Ok(());
        }
        match self.publisher.publish(entries).await {
            Ok(failed) => match failed.into_iter().min() {
                None => Ok(()),
                Some(first) => Err(Failed {
                    first,
                    reason: "the bus refused the entry".into(),
                    transient: false,
                }),
            },
            Err(e) => Err(Failed {
                first: 0,
                reason: format!("publishing: {e}"),
                transient: e.is_retryable(),
            }),
        }
    }
}
