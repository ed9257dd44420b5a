//! The AWS bootstrap on moto: it creates what is missing and nothing twice, and the rules
//! it makes match the configured event source, not the route table's default.

use crate::support;
use std::time::Duration;

use backend::{BusEntry, EventPublisher, Queues, aws::AwsConfig};
use events_schema::{Status, route_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrapping_again_creates_nothing_and_keeps_what_is_there() {
    let aws = support::moto::aws().await;
    let queue = &route_table().route(Status::Received).expect("route").queue;
    aws.queues
        .send(queue, &["kept".to_owned()])
        .await
        .expect("send");
    let created = aws.bootstrap(route_table()).await.expect("bootstrap again");
    assert!(created.is_empty(), "created again: {created:?}");
    let got = aws
        .queues
        .receive(queue, 10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1, "the queue and its message are still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_is_created_and_named_from_the_config() {
    let config = AwsConfig::prefixed(&support::moto::fresh_prefix());
    let aws = support::moto::connect(config.clone()).await;
    let created = aws.bootstrap(route_table()).await.expect("bootstrap");
    let mut expected = vec![
        format!("table {}", config.events_table),
        format!("table {}", config.read_model_table),
        format!("table {}", config.ledger_table),
        format!("event bus {}", config.event_bus),
        format!("bucket {}", config.documents_bucket),
    ];
    for route in &route_table().routes {
        expected.push(format!("queue {}", config.queue_name(&route.queue)));
        expected.push(format!(
            "queue {}",
            config.queue_name(&route.dead_letter_queue)
        ));
    }
    let (mut created, mut expected) = (created, expected);
    created.sort();
    expected.sort();
    assert_eq!(created, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_match_the_configured_event_source() {
    let config = AwsConfig {
        event_source: "acme.orders".into(),
        ..AwsConfig::prefixed(&support::moto::fresh_prefix())
    };
    let aws = support::moto::connect(config).await;
    aws.bootstrap(route_table()).await.expect("bootstrap");
    let detail = serde_json::json!({ "order": { "status": "received" } }).to_string();
    let entry = |source: &str| BusEntry {
        source: source.into(),
        detail_type: "OrderPlaced".into(),
        detail: detail.clone(),
        time: chrono::Utc::now(),
        trace_header: None,
    };
    let failed = aws
        .publisher
        .publish(&[entry(&route_table().source), entry("acme.orders")])
        .await
        .expect("publish");
    assert!(failed.is_empty());
    let queue = &route_table().route(Status::Received).expect("route").queue;
    let got = aws
        .queues
        .receive(queue, 10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect("receive");
    let sources: Vec<String> = got
        .iter()
        .map(|m| {
            let event: serde_json::Value = serde_json::from_str(&m.body).expect("JSON");
            event["source"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(sources, ["acme.orders"]);
}
