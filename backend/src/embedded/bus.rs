//! The embedded event bus: EventBridge's `PutEvents` for one process. Each entry becomes
//! the event EventBridge would deliver to an SQS target, and is sent to the queue of every
//! route whose rule pattern matches it, all in one durable step.

use std::sync::Arc;

use async_trait::async_trait;
use events_schema::RouteTable;
use serde_json::value::RawValue;

use super::queues::MessageSink;
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
    queues: Arc<dyn MessageSink>,
}

impl EmbeddedBus {
    pub fn new(routes: &RouteTable, queues: Arc<dyn MessageSink>) -> Result<Self, StoreError> {
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

/// The event EventBridge delivers to a target for `entry`: its JSON text, and the same
/// parsed, for the rules' patterns to match.
pub fn bus_event(
    entry: &BusEntry,
    id: &str,
    account: &str,
    region: &str,
) -> Result<(String, serde_json::Value), serde_json::Error> {
    /// The detail goes in as the publisher wrote it (checked to be JSON, not re-encoded).
    #[derive(serde::Serialize)]
    struct Delivered<'a> {
        version: &'static str,
        id: &'a str,
        #[serde(rename = "detail-type")]
        detail_type: &'a str,
        source: &'a str,
        account: &'a str,
        time: String,
        region: &'a str,
        resources: [&'a str; 0],
        detail: &'a RawValue,
    }
    let body = serde_json::to_string(&Delivered {
        version: "0",
        id,
        detail_type: &entry.detail_type,
        source: &entry.source,
        account,
        time: entry
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        region,
        resources: [],
        detail: serde_json::from_str(&entry.detail)?,
    })?;
    let event = serde_json::from_str(&body)?;
    Ok((body, event))
}

#[async_trait]
impl EventPublisher for EmbeddedBus {
    async fn publish(&self, entries: &[BusEntry]) -> Result<Vec<usize>, StoreError> {
        let mut sends = Vec::new();
        let mut failed = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let id = uuid::Uuid::now_v7().to_string();
            let (body, event) = match bus_event(entry, &id, LOCAL_ACCOUNT, LOCAL_REGION) {
                Ok(delivered) => delivered,
                Err(e) => {
                    tracing::error!(error = %e, detail_type = %entry.detail_type, "entry detail is not JSON");
                    failed.push(i);
                    continue;
                }
            };
            for rule in &self.rules {
                if rule.pattern.matches(&event) {
                    tracing::trace!(rule = %rule.name, queue = %rule.queue, "rule matched");
                    sends.push((rule.queue.clone(), body.clone()));
                }
            }
        }
        if !sends.is_empty() {
            self.queues.send_many(sends).await?;
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(detail: &str) -> BusEntry {
        BusEntry {
            source: "ordersource.orders".into(),
            detail_type: "OrderStarted".into(),
            detail: detail.into(),
            time: "2026-11-23T10:20:30.123456Z".parse().unwrap(),
            trace_header: None,
        }
    }

    #[test]
    fn a_delivered_event_has_eventbridges_envelope_around_the_detail_as_published() {
        let detail = r#"{"event":{"type":"OrderStarted"},"order":{"status":"inprocess"}}"#;
        let (body, event) = bus_event(&entry(detail), "id-1", "123456789012", "eu-west-1").unwrap();
        let expected = json!({
            "version": "0",
            "id": "id-1",
            "detail-type": "OrderStarted",
            "source": "ordersource.orders",
            "account": "123456789012",
            "time": "2026-11-23T10:20:30Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {"event": {"type": "OrderStarted"}, "order": {"status": "inprocess"}},
        });
        assert_eq!(event, expected);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            expected
        );
        assert!(
            body.contains(detail),
            "the detail is delivered byte for byte: {body}"
        );
    }

    #[test]
    fn a_detail_that_is_not_json_is_refused() {
        assert!(bus_event(&entry("{not json"), "id-1", "1", "r").is_err());
    }
}
