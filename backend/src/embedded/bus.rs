//! The embedded event bus: EventBridge's `PutEvents` for one process. Each entry becomes
//! the event EventBridge would deliver to an SQS target, and is sent to the queue of every
//! route whose rule pattern matches it, all in one durable step.

use std::sync::Arc;

use async_trait::async_trait;
use events_schema::RouteTable;

use super::queues::SqliteQueues;
use crate::{
    event_pattern::EventPattern,
    ports::{BusEntry, EventPublisher, StoreError},
};

/// The account and region events carry locally, in place of AWS's.
pub const LOCAL_ACCOUNT: &str = "000000000000";
pub const LOCAL_REGION: &str = "local";

struct Rule {
    name: String,
    pattern: EventPattern,
    queue: String,
}

pub struct EmbeddedBus {
    rules: Vec<Rule>,
    queues: Arc<SqliteQueues>,
}

impl EmbeddedBus {
    pub fn new(routes: &RouteTable, queues: Arc<SqliteQueues>) -> Result<Self, StoreError> {
        let rules = routes
            .routes
            .iter()
            .map(|r| {
                EventPattern::parse(&r.event_pattern)
                    .map(|pattern| Rule {
                        name: r.rule.clone(),
                        pattern,
                        queue: r.queue.clone(),
                    })
                    .map_err(|e| {
                        StoreError::new("loading the route table", format!("rule {}: {e}", r.rule))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules, queues })
    }
}

/// The JSON EventBridge delivers to a target for `entry`.
pub fn bus_event(
    entry: &BusEntry,
    id: &str,
    account: &str,
    region: &str,
) -> Result<serde_json::Value, serde_json::Error> {
    Ok(serde_json::json!({
        "version": "0",
        "id": id,
        "detail-type": entry.detail_type,
        "source": entry.source,
        "account": account,
        "time": entry.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [],
        "detail": serde_json::from_str::<serde_json::Value>(&entry.detail)?,
    }))
}

#[async_trait]
impl EventPublisher for EmbeddedBus {
    async fn publish(&self, entries: &[BusEntry]) -> Result<Vec<usize>, StoreError> {
        let mut sends = Vec::new();
        let mut failed = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let id = uuid::Uuid::now_v7().to_string();
            let event = match bus_event(entry, &id, LOCAL_ACCOUNT, LOCAL_REGION) {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(error = %e, detail_type = %entry.detail_type, "entry detail is not JSON");
                    failed.push(i);
                    continue;
                }
            };
            let body = event.to_string();
            for rule in &self.rules {
                if rule.pattern.matches(&event) {
                    tracing::trace!(rule = %rule.name, queue = %rule.queue, "rule matched");
                    sends.push((rule.queue.clone(), body.clone()));
                }
            }
        }
        self.queues.send_many(sends).await?;
        Ok(failed)
    }
}
