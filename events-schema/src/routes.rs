//! The route table: status → EventBridge rule → queue (+ DLQ) → handler; and beside it the
//! intake queue (+ DLQ) on which commands arrive from channels other than HTTP.
//!
//! The one source of truth is `events-schema/routes.json`; the embedded bus, the local
//! runtime, `orders aws bootstrap` and the CDK app all read that file.

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
    /// The queue commands arrive on from the channels (web, mobile, ATM...).
    pub intake: IntakeQueue,
    pub routes: Vec<Route>,
}

/// The intake queue and its redrive policy. Its consumer is the intake handler (the
/// `orders-intake` Lambda; a poller in `orders dev`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntakeQueue {
    pub queue: String,
    /// Where invalid messages go at once (with the reason), and failing ones after
    /// `max_receive_count` receives.
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
    pub visibility_timeout_seconds: u32,
    pub batch_size: u32,
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

    /// Every queue this table declares (the route queues, then the intake queue) with its
    /// dead-letter queue and redrive policy: what the queue backends create.
    pub fn queues(&self) -> impl Iterator<Item = DeclaredQueue<'_>> {
        self.routes
            .iter()
            .map(|r| DeclaredQueue {
                queue: &r.queue,
                dead_letter_queue: &r.dead_letter_queue,
                max_receive_count: r.max_receive_count,
                visibility_timeout_seconds: r.visibility_timeout_seconds,
            })
            .chain(std::iter::once(DeclaredQueue {
                queue: &self.intake.queue,
                dead_letter_queue: &self.intake.dead_letter_queue,
                max_receive_count: self.intake.max_receive_count,
                visibility_timeout_seconds: self.intake.visibility_timeout_seconds,
            }))
    }
}

/// A queue of the table, route or intake alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredQueue<'a> {
    pub queue: &'a str,
    pub dead_letter_queue: &'a str,
    pub max_receive_count: u32,
    pub visibility_timeout_seconds: u32,
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
                .queues()
                .flat_map(|q| [q.queue, q.dead_letter_queue])
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

    #[test]
    fn the_intake_queue_is_declared_beside_the_routes_with_its_own_dead_letter_queue() {
        let table = route_table();
        let intake = &table.intake;
        assert_eq!(intake.queue, "order-intake");
        assert_eq!(intake.dead_letter_queue, "order-intake-dlq");
        assert!(intake.max_receive_count >= 1 && intake.batch_size >= 1);
        let last = table.queues().last().expect("queues");
        assert_eq!(
            (last.queue, last.dead_letter_queue),
            ("order-intake", "order-intake-dlq")
        );
        assert_eq!(table.queues().count(), table.routes.len() + 1);
    }
}
