//! The intake handler on the embedded backend's ports: a valid command is applied once and
//! archived, a duplicate is counted and deleted, an invalid message is dead-lettered at
//! once with the reason, a passing failure is reported for retry; and all four in one
//! batch.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use backend::{
    Append, AppendError, EventPage, EventStore, Head, IntakeArchive, Ports, StoreError,
    embedded::Embedded,
};
use chrono::{DateTime, Utc};
use command_api::{Intake, IntakeCounts, IntakeDelivery};
use events_schema::{Channel, Order, OrderId, RequestId, route_table};

use crate::support::{self, send};

/// An event store whose appends to some orders fail as a busy store's would.
struct Flaky {
    inner: Arc<dyn EventStore>,
    failing: Mutex<HashSet<String>>,
}

impl Flaky {
    fn fail(&self, order_id: &str, failing: bool) {
        let mut set = self.failing.lock().expect("lock");
        if failing {
            set.insert(order_id.to_owned());
        } else {
            set.remove(order_id);
        }
    }
}

#[async_trait]
impl EventStore for Flaky {
    async fn head(&self, order_id: &OrderId) -> Result<Option<Head>, StoreError> {
        self.inner.head(order_id).await
    }
    async fn events(
        &self,
        order_id: &OrderId,
        after: u64,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.inner.events(order_id, after, limit).await
    }
    async fn at_version(
        &self,
        order_id: &OrderId,
        version: u64,
    ) -> Result<Option<Order>, StoreError> {
        self.inner.at_version(order_id, version).await
    }
    async fn at_time(
        &self,
        order_id: &OrderId,
        at: DateTime<Utc>,
    ) -> Result<Option<Order>, StoreError> {
        self.inner.at_time(order_id, at).await
    }
    async fn append(&self, append: Append) -> Result<(), AppendError> {
        if self
            .failing
            .lock()
            .expect("lock")
            .contains(append.order_id.as_str())
        {
            let busy = std::io::Error::other("database is locked");
            return Err(StoreError::caused_by("appending events", "busy", busy, true).into());
        }
        self.inner.append(append).await
    }
}

struct Fixture {
    intake: Intake,
    ports: Ports,
    flaky: Arc<Flaky>,
    archive: Arc<dyn IntakeArchive>,
    _embedded: Embedded,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = support::embedded(dir.path());
    let flaky = Arc::new(Flaky {
        inner: embedded.events.clone(),
        failing: Mutex::default(),
    });
    let ports = Ports {
        events: flaky.clone(),
        ..embedded.ports()
    };
    let archive: Arc<dyn IntakeArchive> = embedded.documents.clone();
    Fixture {
        intake: Intake::new(&ports, archive.clone(), route_table()),
        ports,
        flaky,
        archive,
        _embedded: embedded,
        _dir: dir,
    }
}

fn delivery(message_id: &str, body: &str) -> IntakeDelivery {
    IntakeDelivery {
        message_id: message_id.into(),
        body: body.into(),
        receive_count: 1,
    }
}

fn place(channel: &str, request_id: &str, order_id: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","requestId":"{request_id}","command":"place","body":{{"orderId":"{order_id}","descripcion":"Retiro de tarjeta","fecha_entrega":"24/12/2026","estado":"recibida"}}}}"#
    )
}

fn start(channel: &str, request_id: &str, order_id: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","requestId":"{request_id}","command":"start","orderId":"{order_id}"}}"#
    )
}

async fn versions(f: &Fixture, order_id: &str) -> Vec<(u64, Option<String>)> {
    let id = OrderId::parse(order_id).expect("id");
    f.ports
        .events
        .events(&id, 0, 100)
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| (e.version, e.metadata.channel))
        .collect()
}

/// The intake DLQ's messages as (body, reason).
async fn dead_letters(f: &Fixture) -> Vec<(String, String)> {
    f.ports
        .queues
        .dead_letters(&route_table().intake.queue)
        .await
        .expect("dead letters")
        .into_iter()
        .map(|m| (m.body, m.last_error.unwrap_or_default()))
        .collect()
}

async fn archived(f: &Fixture, channel: &str, request_id: &str) -> Option<String> {
    f.archive
        .archived(
            &Channel::parse(channel).expect("channel"),
            &RequestId::parse(request_id).expect("request id"),
        )
        .await
        .expect("archive")
}

#[tokio::test]
async fn a_valid_command_is_applied_with_its_channel_and_its_message_archived_as_received() {
    let f = fixture();
    let raw = place("atm", "T17-000042", "ATM-1");
    assert!(
        f.intake
            .handle(vec![delivery("m-1", &raw)])
            .await
            .is_empty()
    );
    assert_eq!(versions(&f, "ATM-1").await, vec![(1, Some("atm".into()))]);
    let order = f
        .ports
        .events
        .head(&OrderId::parse("ATM-1").expect("id"))
        .await
        .expect("head")
        .expect("placed")
        .order;
    assert_eq!(order.description.as_str(), "Retiro de tarjeta");
    assert_eq!(
        archived(&f, "atm", "T17-000042").await.as_deref(),
        Some(raw.as_str())
    );
    let then = start("atm", "T17-000043", "ATM-1");
    assert!(
        f.intake
            .handle(vec![delivery("m-2", &then)])
            .await
            .is_empty()
    );
    assert_eq!(
        versions(&f, "ATM-1").await,
        vec![(1, Some("atm".into())), (2, Some("atm".into()))]
    );
    assert_eq!(
        f.intake.counters().read(),
        IntakeCounts {
            applied: 2,
            ..IntakeCounts::default()
        }
    );
    assert!(dead_letters(&f).await.is_empty());
}

#[tokio::test]
async fn a_duplicate_is_counted_and_deleted_not_applied_again_nor_dead_lettered() {
    let f = fixture();
    let first = place("web", "W-1", "WEB-1");
    assert!(
        f.intake
            .handle(vec![delivery("m-1", &first)])
            .await
            .is_empty()
    );
    // The same request from the channel again, formatted otherwise, as another message.
    let again = first.replace(r#""command":"place""#, r#""command" : "place""#);
    assert!(
        f.intake
            .handle(vec![delivery("m-2", &again)])
            .await
            .is_empty()
    );
    assert_eq!(versions(&f, "WEB-1").await.len(), 1);
    assert_eq!(f.intake.counters().read().duplicates, 1);
    assert!(dead_letters(&f).await.is_empty());
    // The same request id on another channel is another request.
    let other = place("mobile", "W-1", "MOB-1");
    assert!(
        f.intake
            .handle(vec![delivery("m-3", &other)])
            .await
            .is_empty()
    );
    assert_eq!(versions(&f, "MOB-1").await.len(), 1);
    assert_eq!(f.intake.counters().read().applied, 2);
}

#[tokio::test]
async fn a_redelivery_of_the_applying_message_is_not_a_duplicate() {
    let f = fixture();
    let raw = place("atm", "T-9", "ATM-9");
    assert!(
        f.intake
            .handle(vec![delivery("m-1", &raw)])
            .await
            .is_empty()
    );
    let mut again = delivery("m-1", &raw);
    again.receive_count = 2;
    assert!(f.intake.handle(vec![again]).await.is_empty());
    assert_eq!(versions(&f, "ATM-9").await.len(), 1);
    assert_eq!(
        f.intake.counters().read(),
        IntakeCounts {
            applied: 1,
            ..IntakeCounts::default()
        }
    );
}

#[tokio::test]
async fn invalid_messages_go_to_the_dead_letter_queue_at_once_with_the_reason() {
    let f = fixture();
    assert!(
        f.intake
            .handle(vec![delivery("m-0", &place("atm", "T-0", "DONE-1"))])
            .await
            .is_empty()
    );
    let cases = [
        ("not json", "not an intake message"),
        (
            r#"{"channel":"atm","requestId":"T-1","command":"ship","orderId":"A"}"#,
            "unknown variant",
        ),
        (
            r#"{"channel":"atm","requestId":"T-2","command":"place","body":{"estado":"recibida"}}"#,
            "400 Bad Request: Missing required field: description",
        ),
        (
            r#"{"channel":"atm","requestId":"T-3","command":"complete","orderId":"DONE-1"}"#,
            "409 Conflict",
        ),
        (
            r#"{"channel":"atm","requestId":"T-4","command":"start","orderId":"NOPE"}"#,
            "404 Not Found",
        ),
        (
            r#"{"channel":"atm","requestId":"T-5","command":"start","orderId":"DONE-1","expectedVersion":7}"#,
            "412 Precondition Failed",
        ),
        // The request id of the first placement, for another command.
        (
            r#"{"channel":"atm","requestId":"T-0","command":"start","orderId":"DONE-1"}"#,
            "was already used for a different command",
        ),
    ];
    for (i, (body, _)) in cases.iter().enumerate() {
        let failed = f
            .intake
            .handle(vec![delivery(&format!("bad-{i}"), body)])
            .await;
        assert!(failed.is_empty(), "{body}: {failed:?}");
    }
    let dead = dead_letters(&f).await;
    assert_eq!(dead.len(), cases.len(), "{dead:?}");
    for (body, reason) in cases {
        let (_, got) = dead
            .iter()
            .find(|(b, _)| b == body)
            .unwrap_or_else(|| panic!("{body} not dead-lettered"));
        assert!(got.contains(reason), "{body}: {got}");
    }
    assert_eq!(versions(&f, "DONE-1").await.len(), 1);
    assert_eq!(f.intake.counters().read().invalid, cases.len() as u64);
    assert_eq!(archived(&f, "atm", "T-2").await, None);
}

#[tokio::test]
async fn a_passing_failure_is_reported_for_retry_and_the_retry_applies_once() {
    let f = fixture();
    f.flaky.fail("BUSY-1", true);
    let raw = place("mobile", "M-1", "BUSY-1");
    let failed = f.intake.handle(vec![delivery("m-1", &raw)]).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "m-1");
    assert!(failed[0].1.contains("busy"), "{}", failed[0].1);
    assert!(versions(&f, "BUSY-1").await.is_empty());
    assert!(dead_letters(&f).await.is_empty());
    assert_eq!(archived(&f, "mobile", "M-1").await, None);
    // The claim on the request was released: the redelivery applies it.
    f.flaky.fail("BUSY-1", false);
    let mut retry = delivery("m-1", &raw);
    retry.receive_count = 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let failed = f.intake.handle(vec![retry.clone()]).await;
        if failed.is_empty() {
            break;
        }
        // The release of the failed attempt's claim runs in the background.
        assert!(std::time::Instant::now() < deadline, "{failed:?}");
        tokio::task::yield_now().await;
    }
    assert_eq!(versions(&f, "BUSY-1").await.len(), 1);
    assert_eq!(
        archived(&f, "mobile", "M-1").await.as_deref(),
        Some(raw.as_str())
    );
}

#[tokio::test]
async fn a_batch_mixing_all_four_outcomes_fails_only_the_passing_failure() {
    let f = fixture();
    assert!(
        f.intake
            .handle(vec![delivery("m-0", &place("web", "W-0", "MIX-0"))])
            .await
            .is_empty()
    );
    f.flaky.fail("MIX-BUSY", true);
    let batch = vec![
        delivery("valid", &place("web", "W-1", "MIX-1")),
        delivery("duplicate", &place("web", "W-0", "MIX-0")),
        delivery(
            "invalid",
            r#"{"channel":"web","requestId":"W-2","command":"place","body":{}}"#,
        ),
        delivery("transient", &place("web", "W-3", "MIX-BUSY")),
        // A transition of the order placed earlier in the same batch applies after it.
        delivery("then", &start("web", "W-4", "MIX-1")),
    ];
    let failed = f.intake.handle(batch).await;
    let failed_ids: Vec<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(failed_ids, ["transient"]);
    assert_eq!(versions(&f, "MIX-1").await.len(), 2);
    assert_eq!(versions(&f, "MIX-0").await.len(), 1);
    assert!(versions(&f, "MIX-BUSY").await.is_empty());
    let dead = dead_letters(&f).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1.contains("Missing required field: description"),
        "{dead:?}"
    );
    assert_eq!(
        f.intake.counters().read(),
        IntakeCounts {
            applied: 3,
            duplicates: 1,
            invalid: 1,
            failed: 1,
        }
    );
}

#[tokio::test]
async fn health_and_metrics_report_the_intake_queue_and_its_counts_where_this_process_polls_it() {
    let f = fixture();
    assert!(
        f.intake
            .handle(vec![delivery("m-1", &place("atm", "T-1", "H-1"))])
            .await
            .is_empty()
    );
    assert!(
        f.intake
            .handle(vec![delivery("m-2", &place("atm", "T-1", "H-1"))])
            .await
            .is_empty()
    );
    let app =
        command_api::router(command_api::App::new(&f.ports, route_table()).with_intake(&f.intake));
    let req = http::Request::get("/health")
        .body(axum::body::Body::empty())
        .expect("request");
    let health: serde_json::Value =
        serde_json::from_str(&send(&app, req).await.text).expect("json");
    let intake = &health["intake"];
    assert_eq!(intake["queue"], "order-intake");
    assert_eq!(intake["duplicates"], 1);
    assert_eq!(intake["applied"], 1);
    assert_eq!(intake["deadLetters"], 0);
    let req = http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .expect("request");
    let metrics = send(&app, req).await.text;
    for line in [
        "orders_intake_messages_total{outcome=\"applied\"} 1",
        "orders_intake_messages_total{outcome=\"duplicate\"} 1",
        "orders_intake_messages_total{outcome=\"invalid\"} 0",
        "orders_queue_depth{queue=\"order-intake\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let without = support::app_on(&f.ports);
    let req = http::Request::get("/health")
        .body(axum::body::Body::empty())
        .expect("request");
    let health: serde_json::Value =
        serde_json::from_str(&send(&without, req).await.text).expect("json");
    assert!(health.get("intake").is_none(), "{health}");
}
