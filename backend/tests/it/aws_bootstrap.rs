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
    // The route queues and the intake queue, each with its dead-letter queue.
    for declared in route_table().queues() {
        expected.push(format!("queue {}", config.queue_name(declared.queue)));
        expected.push(format!(
            "queue {}",
            config.queue_name(declared.dead_letter_queue)
        ));
    }
    // The projector's on-failure destination, where the stream's records are parked.
    expected.push(format!(
        "queue {}",
        config.queue_name("orders-projector-failures")
    ));
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

/// The plan is what bootstrap creates: every table and queue of the plan, read back from
/// the emulator, has the planned keys, attributes, index, stream view, TTL, visibility
/// timeout, retention and redrive policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_bootstrap_creates_is_its_plan() {
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    let config = AwsConfig::prefixed(&support::moto::fresh_prefix());
    let aws = support::moto::connect(config.clone()).await;
    aws.bootstrap(route_table()).await.expect("bootstrap");
    let plan = backend::aws::bootstrap::plan(&config, route_table());
    let db = &aws.clients.dynamodb;
    let keys = |ks: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<(String, String)> {
        ks.iter()
            .map(|k| (k.attribute_name.clone(), k.key_type.as_str().to_owned()))
            .collect()
    };
    for t in &plan.tables {
        let table = db
            .describe_table()
            .table_name(&t.table_name)
            .send()
            .await
            .expect("describe table")
            .table
            .expect("a table");
        let planned = |ks: &[backend::aws::bootstrap::KeyPlan]| -> Vec<(String, String)> {
            ks.iter()
                .map(|k| (k.attribute_name.to_owned(), k.key_type.to_owned()))
                .collect()
        };
        assert_eq!(
            keys(table.key_schema()),
            planned(&t.key_schema),
            "{}",
            t.role
        );
        let mut attributes: Vec<(String, String)> = table
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name.clone(),
                    a.attribute_type.as_str().to_owned(),
                )
            })
            .collect();
        let mut expected: Vec<(String, String)> = t
            .attribute_definitions
            .iter()
            .map(|a| (a.attribute_name.to_owned(), a.attribute_type.to_owned()))
            .collect();
        attributes.sort();
        expected.sort();
        assert_eq!(attributes, expected, "{}", t.role);
        let indexes: Vec<(String, Vec<(String, String)>)> = table
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                (
                    i.index_name().unwrap_or_default().to_owned(),
                    keys(i.key_schema()),
                )
            })
            .collect();
        let planned_indexes: Vec<(String, Vec<(String, String)>)> = t
            .global_secondary_indexes
            .iter()
            .map(|i| (i.index_name.to_owned(), planned(&i.key_schema)))
            .collect();
        assert_eq!(indexes, planned_indexes, "{}", t.role);
        let view = table
            .stream_specification()
            .filter(|s| s.stream_enabled)
            .and_then(|s| s.stream_view_type())
            .map(|v| v.as_str().to_owned());
        assert_eq!(view.as_deref(), t.stream_view_type, "{}", t.role);
        let ttl = db
            .describe_time_to_live()
            .table_name(&t.table_name)
            .send()
            .await
            .expect("describe TTL")
            .time_to_live_description
            .filter(|d| {
                d.time_to_live_status()
                    .is_some_and(|s| s.as_str() == "ENABLED")
            })
            .and_then(|d| d.attribute_name);
        assert_eq!(ttl.as_deref(), t.time_to_live_attribute, "{}", t.role);
    }
    let sqs = &aws.clients.sqs;
    for q in &plan.queues {
        let url = sqs
            .get_queue_url()
            .queue_name(&q.queue_name)
            .send()
            .await
            .expect("queue url")
            .queue_url
            .expect("a url");
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Q::All)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let get = |name: Q| attributes.get(&name).cloned().unwrap_or_default();
        let visibility = q.visibility_timeout.unwrap_or(30).to_string();
        assert_eq!(get(Q::VisibilityTimeout), visibility, "{}", q.queue_name);
        let retention = q.message_retention_period.to_string();
        assert_eq!(
            get(Q::MessageRetentionPeriod),
            retention,
            "{}",
            q.queue_name
        );
        let redrive = attributes.get(&Q::RedrivePolicy);
        match &q.redrive_policy {
            None => assert!(redrive.is_none(), "{}: {redrive:?}", q.queue_name),
            Some(planned) => {
                let redrive: serde_json::Value =
                    serde_json::from_str(redrive.expect("a redrive policy")).expect("json");
                assert_eq!(
                    redrive["maxReceiveCount"].to_string().trim_matches('"'),
                    planned.max_receive_count.to_string(),
                    "{}",
                    q.queue_name
                );
                let target = redrive["deadLetterTargetArn"].as_str().expect("an ARN");
                assert!(
                    target.ends_with(&format!(":{}", planned.dead_letter_queue)),
                    "{}: {target}",
                    q.queue_name
                );
            }
        }
    }
}

/// The `PutEvents` request bodies sent, as JSON.
#[derive(Debug, Default, Clone)]
struct PutEventsBodies(std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>);

impl aws_sdk_dynamodb::config::Intercept for PutEventsBodies {
    fn name(&self) -> &'static str {
        "PutEventsBodies"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let put_events = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .is_some_and(|m| m.name() == "PutEvents");
        if let Some(body) = context.request().body().bytes().filter(|_| put_events) {
            let json = serde_json::from_slice(body).unwrap_or_default();
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(json);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_trace_header_is_sent_as_the_entrys_trace_header_and_the_event_still_routed() {
    const TRACE: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let bodies = PutEventsBodies::default();
    let config = AwsConfig {
        interceptor: Some(aws_sdk_dynamodb::config::SharedInterceptor::new(
            bodies.clone(),
        )),
        ..AwsConfig::prefixed(&support::moto::fresh_prefix())
    };
    let aws = support::moto::connect(config).await;
    aws.bootstrap(route_table()).await.expect("bootstrap");
    let entry = BusEntry {
        source: route_table().source.clone(),
        detail_type: "OrderPlaced".into(),
        detail: serde_json::json!({ "order": { "status": "received" } }).to_string(),
        time: chrono::Utc::now(),
        trace_header: Some(TRACE.to_owned()),
    };
    let failed = aws.publisher.publish(&[entry]).await.expect("publish");
    assert!(
        failed.is_empty(),
        "moto accepts an entry with a TraceHeader"
    );
    let sent = bodies.0.lock().expect("bodies").clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["Entries"][0]["TraceHeader"], TRACE);
    let queue = &route_table().route(Status::Received).expect("route").queue;
    let got = aws
        .queues
        .receive(queue, 10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1, "routed to the received queue");
}
