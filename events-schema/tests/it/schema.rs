//! The published JSON Schema of the EventBridge detail is generated from the Rust types and
//! checked in; this test fails when the two drift. Regenerate with
//! `UPDATE_SCHEMA=1 cargo test -p events-schema --test it schema`.

use crate::support::*;
use events_schema::*;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/order-event-detail.schema.json"
);

#[test]
fn checked_in_detail_schema_matches_the_rust_types() {
    let generated = serde_json::to_string_pretty(&detail_schema()).expect("json") + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(PATH, &generated).expect("write schema");
    }
    let checked_in = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{PATH} is stale; run UPDATE_SCHEMA=1 cargo test -p events-schema --test it schema"
    );
}

#[test]
fn published_details_round_trip_through_the_contract_types() {
    let h = History::given(&[place("a"), Command::Start, cancel("late")]);
    for r in &h.recorded {
        let detail = EventDetail {
            event: r.envelope.clone(),
            order: r.order.clone(),
            replayed: false,
        };
        let json = serde_json::to_value(&detail).expect("json");
        assert_eq!(json["event"]["type"], r.envelope.event.type_name());
        assert!(json.get("replayed").is_none());
        let back: EventDetail = serde_json::from_value(json).expect("parses");
        assert_eq!(back, detail);
    }
}

#[test]
fn schema_requires_event_and_order_and_documents_replayed() {
    let schema = detail_schema();
    let required = schema["required"].as_array().expect("required");
    assert!(required.contains(&"event".into()) && required.contains(&"order".into()));
    assert_eq!(schema["properties"]["replayed"]["type"], "boolean");
}
