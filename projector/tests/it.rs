//! The projector core on its own (fakes for the read model and the bus), and its Lambda
//! edge with real-shaped DynamoDB stream events.

use std::sync::Mutex;

use async_trait::async_trait;
use aws_lambda_events::dynamodb;
use backend::{BusEntry, EventPublisher, ListQuery, Page, ReadModel, StoreError, item};
use chrono::{TimeZone, Utc};
use events_schema::*;
use projector::{Failed, Projector, lambda};
use proptest::prelude::*;

// ---- Recorded events of every type.

fn ctx(n: u32) -> EventContext {
    EventContext {
        occurred_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, n / 60 % 60, n % 60)
            .single()
            .expect("a date"),
        metadata: Metadata {
            correlation_id: format!("corr-{n}"),
            actor: n.is_multiple_of(2).then(|| format!("user-{n}")),
            ..Metadata::default()
        },
    }
}

/// Records `commands` in turn on one order, skipping those the order refuses.
fn history(order: &str, description: &str, commands: &[Command]) -> Vec<Recorded> {
    let id = OrderId::parse(order).expect("an order id");
    let place = Command::Place(PlaceOrder {
        description: Description::parse(description).expect("a description"),
        register_date: Utc
            .with_ymd_and_hms(2025, 1, 31, 8, 0, 0)
            .single()
            .expect("a date"),
        delivery_date: DeliveryDate::parse("2025-02-14").ok(),
        customer_id: CustomerId::parse("C-1").ok(),
    });
    let mut recorded: Vec<Recorded> = Vec::new();
    for command in std::iter::once(&place).chain(commands) {
        let state = recorded.last().map(|r| (&r.order, &r.envelope.hash));
        let Ok(events) = decide(&id, state.map(|(o, _)| o), command) else {
            continue;
        };
        let n = recorded.len() as u32;
        recorded.extend(record(&id, state, events, &ctx(n), uuid::Uuid::now_v7).expect("records"));
    }
    recorded
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Start),
        Just(Command::Complete),
        "[a-zñ ]{1,20}".prop_map(|r| Command::Cancel {
            reason: Reason::parse(&format!("r {r}")).expect("a reason"),
        }),
        ("[a-zA-Z0-9 áé]{1,40}", proptest::option::of(1u32..28)).prop_map(|(d, day)| {
            Command::Update(UpdateOrder {
                description: Description::parse(&format!("d {d}")).ok(),
                delivery_date: day
                    .and_then(|day| DeliveryDate::parse(&format!("2025-03-{day:02}")).ok()),
                ..UpdateOrder::default()
            })
        }),
    ]
}

/// A DynamoDB Streams INSERT record as Lambda delivers it: the stored item as its new
/// image, through Lambda's JSON.
fn stream_record(recorded: &Recorded, seq: u64) -> dynamodb::EventRecord {
    let mut change = dynamodb::StreamRecord::default();
    change.new_image = item::to_item(recorded).expect("an item");
    change.keys = serde_dynamo::to_item(serde_json::json!({
        "orderId": recorded.envelope.order_id.as_str(),
        "version": recorded.envelope.version,
    }))
    .expect("keys");
    change.sequence_number = Some(format!("{seq:021}"));
    change.stream_view_type = Some(dynamodb::StreamViewType::NewImage);
    let mut record = dynamodb::EventRecord::default();
    record.event_name = "INSERT".into();
    record.event_source = Some("aws:dynamodb".into());
    record.aws_region = "eu-west-1".into();
    record.change = change;
    let json = serde_json::to_string(&record).expect("Lambda's JSON");
    serde_json::from_str(&json).expect("decodes as Lambda's runtime does")
}

proptest! {
    #[test]
    fn decoding_the_stream_image_of_any_recorded_event_gives_back_the_same_record(
        description in "[a-zA-Z0-9ñáü.,:-][a-zA-Z0-9 ñáü.,:-]{0,59}",
        commands in proptest::collection::vec(command(), 0..6),
    ) {
        for (i, recorded) in history("ORD-P.1:x", &description, &commands).iter().enumerate() {
            let decoded = lambda::decode(&stream_record(recorded, i as u64)).expect("an event");
            prop_assert_eq!(&decoded, recorded);
        }
    }
}

#[test]
fn every_event_type_round_trips_through_a_stream_image() {
    let mut seen = std::collections::BTreeSet::new();
    let revise = Command::Update(UpdateOrder {
        description: Description::parse("revised").ok(),
        ..UpdateOrder::default()
    });
    let cancel = Command::Cancel {
        reason: Reason::parse("no longer needed").expect("a reason"),
    };
    for recorded in history("A", "one", &[revise, Command::Start, Command::Complete])
        .iter()
        .chain(&history("B", "two", &[cancel]))
    {
        seen.insert(recorded.envelope.event.type_name());
        assert_eq!(
            &lambda::decode(&stream_record(recorded, 1)).expect("an event"),
            recorded
        );
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "OrderCanceled",
            "OrderCompleted",
            "OrderDetailsRevised",
            "OrderPlaced",
            "OrderStarted"
        ]
    );
}

// ---- Fakes.

#[derive(Default)]
struct FakeReadModel {
    fail: bool,
    applied: Mutex<Vec<Order>>,
}

#[async_trait]
impl ReadModel for FakeReadModel {
    async fn apply(&self, orders: &[Order]) -> Result<(), StoreError> {
        if self.fail {
            return Err(StoreError::new("updating the read model", "disk full"));
        }
        self.applied.lock().unwrap().extend_from_slice(orders);
        Ok(())
    }
    async fn get(&self, _: &OrderId) -> Result<Option<Order>, StoreError> {
        Ok(None)
    }
    async fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
        Ok(Page {
            items: Vec::new(),
            next: None,
        })
    }
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        Ok(Vec::new())
    }
}

enum Bus {
    Accepts,
    RefusesEntries(Vec<usize>),
    Unreachable,
}

struct FakeBus {
    behaviour: Bus,
    published: Mutex<Vec<BusEntry>>,
}

impl FakeBus {
    fn new(behaviour: Bus) -> Self {
        Self {
            behaviour,
            published: Mutex::default(),
        }
    }
}

#[async_trait]
impl EventPublisher for FakeBus {
    async fn publish(&self, entries: &[BusEntry]) -> Result<Vec<usize>, StoreError> {
        match &self.behaviour {
            Bus::Unreachable => Err(StoreError::new("publishing", "connection refused")),
            Bus::Accepts => {
                self.published.lock().unwrap().extend_from_slice(entries);
                Ok(Vec::new())
            }
            Bus::RefusesEntries(failed) => {
                self.published.lock().unwrap().extend_from_slice(entries);
                Ok(failed.clone())
            }
        }
    }
}

fn lifecycle() -> Vec<Recorded> {
    history("ORD-7", "seven", &[Command::Start, Command::Complete])
}

// ---- The core.

fn projector<'a>(read_model: &'a FakeReadModel, bus: &'a FakeBus) -> Projector<'a> {
    Projector {
        read_model,
        publisher: bus,
        source: "s",
    }
}

#[tokio::test]
async fn a_batch_is_folded_into_the_read_model_then_published_in_order() {
    let (read_model, bus) = (FakeReadModel::default(), FakeBus::new(Bus::Accepts));
    let records = lifecycle();
    let projector = Projector {
        read_model: &read_model,
        publisher: &bus,
        source: "test.orders",
    };
    projector.project(&records).await.expect("projected");
    let applied = read_model.applied.lock().unwrap();
    assert_eq!(
        applied.iter().map(|o| o.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let published = bus.published.lock().unwrap();
    assert_eq!(
        published
            .iter()
            .map(|e| e.detail_type.as_str())
            .collect::<Vec<_>>(),
        ["OrderPlaced", "OrderStarted", "OrderCompleted"]
    );
    let detail: EventDetail = serde_json::from_str(&published[2].detail).expect("a detail");
    assert_eq!(detail.order.status, Status::Completed);
    assert_eq!(
        detail,
        EventDetail {
            event: records[2].envelope.clone(),
            order: records[2].order.clone(),
            replayed: false
        }
    );
    assert!(published.iter().all(|e| e.source == "test.orders"));
}

#[tokio::test]
async fn a_failed_read_model_update_fails_the_batch_from_its_first_record_and_publishes_nothing() {
    let read_model = FakeReadModel {
        fail: true,
        ..FakeReadModel::default()
    };
    let bus = FakeBus::new(Bus::Accepts);
    let projector = projector(&read_model, &bus);
    let failed = projector.project(&lifecycle()).await.unwrap_err();
    assert_eq!(failed.first, 0);
    assert!(failed.reason.contains("disk full"), "{failed}");
    assert!(bus.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn entries_the_bus_refuses_fail_the_batch_from_the_first_refused_one() {
    let read_model = FakeReadModel::default();
    let bus = FakeBus::new(Bus::RefusesEntries(vec![2, 1]));
    let projector = projector(&read_model, &bus);
    let failed: Failed = projector.project(&lifecycle()).await.unwrap_err();
    assert_eq!(failed.first, 1);
}

#[tokio::test]
async fn an_unreachable_bus_fails_the_whole_batch() {
    let read_model = FakeReadModel::default();
    let bus = FakeBus::new(Bus::Unreachable);
    let projector = projector(&read_model, &bus);
    let failed = projector.project(&lifecycle()).await.unwrap_err();
    assert_eq!(failed.first, 0);
    assert!(failed.reason.contains("connection refused"), "{failed}");
}

#[tokio::test]
async fn an_empty_batch_touches_nothing() {
    let read_model = FakeReadModel {
        fail: true,
        ..FakeReadModel::default()
    };
    let bus = FakeBus::new(Bus::Unreachable);
    let projector = projector(&read_model, &bus);
    assert_eq!(projector.project(&[]).await, Ok(()));
}

// ---- The Lambda edge.

fn event(records: Vec<dynamodb::EventRecord>) -> dynamodb::Event {
    let mut event = dynamodb::Event::default();
    event.records = records;
    event
}

fn failures(response: &aws_lambda_events::streams::DynamoDbEventResponse) -> Vec<Option<String>> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn the_lambda_edge_reports_the_sequence_number_of_the_first_failed_record() {
    let read_model = FakeReadModel::default();
    let bus = FakeBus::new(Bus::RefusesEntries(vec![1]));
    let projector = projector(&read_model, &bus);
    let records = lifecycle()
        .iter()
        .enumerate()
        .map(|(i, r)| stream_record(r, 10 + i as u64))
        .collect();
    let response = lambda::handle(&projector, event(records)).await;
    assert_eq!(failures(&response), [Some(format!("{:021}", 11))]);
}

#[tokio::test]
async fn the_lambda_edge_projects_what_precedes_an_unreadable_record_and_reports_that_record() {
    let read_model = FakeReadModel::default();
    let bus = FakeBus::new(Bus::Accepts);
    let projector = projector(&read_model, &bus);
    let lifecycle = lifecycle();
    let mut bad = stream_record(&lifecycle[1], 21);
    bad.change.new_image =
        serde_dynamo::to_item(serde_json::json!({"orderId": "ORD-7", "version": 2}))
            .expect("an item");
    let mut ignored = stream_record(&lifecycle[0], 19);
    ignored.event_name = "REMOVE".into();
    let records = vec![
        ignored,
        stream_record(&lifecycle[0], 20),
        bad,
        stream_record(&lifecycle[2], 22),
    ];
    let response = lambda::handle(&projector, event(records)).await;
    assert_eq!(failures(&response), [Some(format!("{:021}", 21))]);
    assert_eq!(
        bus.published.lock().unwrap().len(),
        1,
        "only the record before the unreadable one"
    );
}

#[tokio::test]
async fn the_lambda_edge_answers_a_whole_success_with_no_failures() {
    let read_model = FakeReadModel::default();
    let bus = FakeBus::new(Bus::Accepts);
    let projector = projector(&read_model, &bus);
    let records = lifecycle()
        .iter()
        .enumerate()
        .map(|(i, r)| stream_record(r, i as u64))
        .collect();
    let response = lambda::handle(&projector, event(records)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(bus.published.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_lambda_edge_publishes_each_event_under_the_trace_header_it_was_written_in() {
    const TRACE: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let (read_model, bus) = (FakeReadModel::default(), FakeBus::new(Bus::Accepts));
    let mut records = lifecycle();
    records[0].envelope.metadata.trace_header = Some(TRACE.to_owned());
    let stream = records
        .iter()
        .enumerate()
        .map(|(i, r)| stream_record(r, 20 + i as u64))
        .collect();
    let response = lambda::handle(&projector(&read_model, &bus), event(stream)).await;
    assert!(failures(&response).is_empty());
    let published = bus.published.lock().unwrap();
    let traces: Vec<_> = published
        .iter()
        .map(|e| e.trace_header.as_deref())
        .collect();
    assert_eq!(traces, [Some(TRACE), None, None]);
    // Re-published history is not attached to the original request's trace.
    let republished = projector::bus_entry("s", &records[0], true).expect("an entry");
    assert_eq!(republished.trace_header, None);
}
