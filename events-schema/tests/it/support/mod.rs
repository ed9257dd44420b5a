//! Given/when/then helpers shared by this crate's tests.
#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use events_schema::*;

pub fn id(s: &str) -> OrderId {
    OrderId::parse(s).expect("valid id")
}

pub fn place(description: &str) -> Command {
    Command::Place(PlaceOrder {
        description: Description::parse(description).expect("valid description"),
        register_date: Utc
            .with_ymd_and_hms(2025, 1, 31, 8, 0, 0)
            .single()
            .expect("date"),
        delivery_date: None,
        customer_id: None,
    })
}

pub fn cancel(reason: &str) -> Command {
    Command::Cancel {
        reason: Reason::parse(reason).expect("valid reason"),
    }
}

pub fn ctx(second: u32) -> EventContext {
    EventContext {
        occurred_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, second % 60)
            .single()
            .expect("date"),
        metadata: Metadata {
            correlation_id: format!("corr-{second}"),
            ..Metadata::default()
        },
    }
}

/// An order's history: applies each command in turn, keeping what was recorded.
#[derive(Default)]
pub struct History {
    pub recorded: Vec<Recorded>,
}

impl History {
    pub fn given(commands: &[Command]) -> Self {
        let mut h = History::default();
        for c in commands {
            h.when(c).expect("given commands are accepted");
        }
        h
    }

    pub fn state(&self) -> Option<&Order> {
        self.recorded.last().map(|r| &r.order)
    }

    /// Decides and records `command`; returns the new events' types.
    pub fn when(&mut self, command: &Command) -> Result<Vec<&'static str>, Rejection> {
        let oid = id("ORD-1");
        let head = self.recorded.last().map(|r| (&r.order, &r.envelope.hash));
        let events = decide(&oid, self.state(), command)?;
        let types = events.iter().map(OrderEvent::type_name).collect();
        let n = self.recorded.len() as u32;
        let new = record(&oid, head, events, &ctx(n), uuid::Uuid::now_v7).expect("records");
        self.recorded.extend(new);
        Ok(types)
    }

    pub fn envelopes(&self) -> Vec<Envelope> {
        self.recorded.iter().map(|r| r.envelope.clone()).collect()
    }

    pub fn raw(&self) -> Vec<String> {
        self.recorded
            .iter()
            .map(|r| serde_json::to_string(&r.envelope).expect("serializes"))
            .collect()
    }
}
