//! The auditor's verdicts, on events exactly as a store holds them, without I/O: the
//! backends read ([`RawEvent`], [`ProjectedOrder`], [`Projected`]), the `orders` CLI runs
//! and reports, and this module decides.
//!
//! - [`check_order`]: one order's stored history (versions, hash chain, stored states) and
//!   its read model row, as `orders audit verify` judges them.
//! - [`digest`]: the Merkle root over every order's head that makes a truncated history
//!   evident (`orders audit digest`, `orders audit verify --digest`).

mod digest;
mod verdict;

pub use digest::{
    Covered, DIGEST_FORMAT, DIGEST_FORMAT_VERSION, DigestError, DigestFile, DigestFinding,
    DigestProblem, Head, Leaf, check_covered, head_of, leaf_data, leaf_hash, merkle_root,
};
pub use verdict::{Checked, Finding, Property, chain_findings, check_order};

use crate::order::Order;

/// One stored event exactly as the event store holds it, for auditors: nothing is parsed
/// or re-encoded, so that a changed byte stays visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The order the event is stored under (the partition key), as stored.
    pub order_id: String,
    /// The version the event is stored under (the sort key), as stored.
    pub version: u64,
    /// The envelope's JSON text as stored (embedded: the `envelope` column; AWS: the item's
    /// envelope members, `order` excluded, as JSON).
    pub envelope: String,
    /// The order's state after the event as stored with it (its JSON text).
    pub order_state: String,
    /// The event's place in the store's global order, where the store has one (embedded:
    /// `position`); compared with [`Projected::Through`] to tell lag from damage.
    pub position: Option<u64>,
}

/// How far the projector has applied the event store to the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projected {
    /// Every event at or before this global position is in the read model (embedded:
    /// the change feed's checkpoint, read before the read model rows).
    Through(u64),
    /// The backend cannot say (AWS: the stream's position is not comparable to events);
    /// a read model behind the events is then re-checked after a while.
    Unknown,
}

/// One order as the read model holds it: its key and its row as JSON text (an [`Order`];
/// left unparsed, so that a bulk scan stays cheap and a damaged row is reported, not fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedOrder {
    pub order_id: String,
    pub body: String,
}

impl ProjectedOrder {
    pub fn order(&self) -> Result<Order, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("unreadable row: {e}"))
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Histories built with the real `decide` and `record`, serialized as the event store
    //! writes them.

    use chrono::{TimeZone, Utc};

    use super::{ProjectedOrder, RawEvent};
    use crate::{
        Command, Description, EventContext, Metadata, Order, OrderId, PlaceOrder, Reason, Recorded,
        decide, record,
    };

    /// Placed, started, canceled: three events.
    pub fn history(order_id: &str) -> Vec<Recorded> {
        let id = OrderId::parse(order_id).unwrap();
        let commands = [
            Command::Place(PlaceOrder {
                description: Description::parse("Mantenimiento básico").unwrap(),
                register_date: Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap(),
                delivery_date: None,
                customer_id: None,
            }),
            Command::Start,
            Command::Cancel {
                reason: Reason::parse("Motivo X").unwrap(),
            },
        ];
        let mut out: Vec<Recorded> = Vec::new();
        for (i, command) in commands.into_iter().enumerate() {
            let head = out.last().map(|r| (&r.order, &r.envelope.hash));
            let events = decide(&id, head.map(|(o, _)| o), &command).unwrap();
            let ctx = EventContext {
                occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 8, i as u32, 0).unwrap(),
                metadata: Metadata {
                    correlation_id: format!("c-{i}"),
                    ..Metadata::default()
                },
            };
            out.extend(record(&id, head, events, &ctx, uuid::Uuid::now_v7).unwrap());
        }
        out
    }

    pub fn stored(recorded: &[Recorded]) -> Vec<RawEvent> {
        recorded
            .iter()
            .enumerate()
            .map(|(i, r)| RawEvent {
                order_id: r.envelope.order_id.to_string(),
                version: r.envelope.version,
                envelope: serde_json::to_string(&r.envelope).unwrap(),
                order_state: serde_json::to_string(&r.order).unwrap(),
                position: Some(i as u64 + 1),
            })
            .collect()
    }

    pub fn row(order: &Order) -> ProjectedOrder {
        ProjectedOrder {
            order_id: order.order_id.to_string(),
            body: serde_json::to_string(order).unwrap(),
        }
    }
}
