//! The route table: status → EventBridge rule → queue (+ DLQ) → handler.
//!
//! The one source of truth is `events-schema/routes.json`; the embedded bus, the local
//! runtime and the CDK app all read that file.

use std::sync::LazyLock;

use serde::Deserialize;

use crate::values::Status;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTable {
    #[serde(rename = "$comment", default)]
    pub comment: String,
    /// EventBridge `Source` of published events.
    pub source: String,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    pub status: Status,
    pub rule: String,
    /// An EventBridge event pattern, evaluated as EventBridge would.
    pub event_pattern: serde_json::Value,
    pub queue: String,
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
    pub visibility_timeout_seconds: u32,
    pub batch_size: u32,
    /// The name of the handler that consumes the queue.
    pub handler: String,
}

impl RouteTable {
    pub fn route(&self, status: Status) -> Option<&Route> {
        self.routes.iter().find(|r| r.status == status)
    }
}

const ROUTES_JSON: &str = include_str!("../routes.json");

/// The checked-in route table. Its validity is a build-time fact pinned by this crate's
/// tests, so failing to parse it is a bug, not an input error.
pub fn route_table() -> &'static RouteTable {
    static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
        serde_json::from_str(ROUTES_JSON).expect("routes.json is valid (pinned by tests)")
    });
    &TABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_has_one_route_per_status_with_distinct_names() {
        let table = route_table();
        for status in Status::ALL {
            let routes: Vec<_> = table.routes.iter().filter(|r| r.status == status).collect();
            assert_eq!(routes.len(), 1, "exactly one route for {status}");
        }
        let unique = |names: Vec<&str>| {
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            sorted.len() == names.len()
        };
        assert!(unique(
            table.routes.iter().map(|r| r.rule.as_str()).collect()
        ));
        assert!(unique(
            table
                .routes
                .iter()
                .flat_map(|r| [r.queue.as_str(), r.dead_letter_queue.as_str()])
                .collect()
        ));
    }

    #[test]
    fn every_rule_pattern_matches_its_own_status_and_source() {
        let table = route_table();
        for route in &table.routes {
            assert_eq!(
                route.event_pattern["detail"]["order"]["status"],
                serde_json::json!([route.status.as_str()])
            );
            assert_eq!(
                route.event_pattern["source"],
                serde_json::json!([table.source])
            );
            assert!(route.max_receive_count >= 1 && route.batch_size >= 1);
        }
    }
}
