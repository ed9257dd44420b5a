//! The intake message's published JSON Schema is generated from the Rust type and checked
//! in; these tests fail when the two drift, and check that the schema accepts and refuses
//! the same messages as the type. Regenerate with
//! `UPDATE_SCHEMA=1 cargo test -p events-schema --test it intake`.

use events_schema::*;
use serde_json::{Value, json};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/intake-message.schema.json"
);

#[test]
fn checked_in_intake_schema_matches_the_rust_type() {
    let generated = serde_json::to_string_pretty(&intake_message_schema()).expect("json") + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(PATH, &generated).expect("write schema");
    }
    let checked_in = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{PATH} is stale; run UPDATE_SCHEMA=1 cargo test -p events-schema --test it intake"
    );
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&intake_message_schema()).expect("the schema compiles")
}

/// Whether the Rust type reads `message` and its framing rules (which command takes which
/// members) hold: what the intake handler checks before it parses the body.
fn rust_accepts(message: &Value) -> bool {
    match serde_json::from_value::<IntakeMessage>(message.clone()) {
        Ok(m) => {
            m.command.needs_order() == m.order_id.is_some()
                && (m.command.needs_order() || m.expected_version.is_none())
        }
        Err(_) => false,
    }
}

#[test]
fn the_schema_and_the_rust_type_accept_the_same_messages() {
    let valid = [
        json!({"channel": "atm", "requestId": "T17-000042", "command": "place",
               "body": {"descripcion": "Retiro de tarjeta", "fecha_entrega": "24/12/2026"}}),
        json!({"channel": "web", "requestId": "w-1", "command": "place",
               "body": {"orderId": "ORD-1", "description": "Basic maintenance"}}),
        json!({"channel": "mobile", "requestId": "m:9", "command": "start", "orderId": "ORD-1"}),
        json!({"channel": "mobile", "requestId": "m:10", "command": "complete", "orderId": "ORD-1",
               "expectedVersion": 2, "body": null}),
        json!({"channel": "kiosk", "requestId": "k.1", "command": "cancel", "orderId": "ORD-1",
               "body": {"reasonForCancellation": "duplicate"}}),
        json!({"channel": "web", "requestId": "w-2", "command": "revise", "orderId": "ORD-1",
               "body": {"estado": "en_proceso"}}),
    ];
    let invalid = [
        json!({"channel": "atm", "requestId": "T1", "command": "ship", "orderId": "A"}),
        json!({"channel": "ATM", "requestId": "T1", "command": "place", "body": {}}),
        json!({"channel": "atm", "requestId": "a/b", "command": "place", "body": {}}),
        json!({"channel": "atm", "command": "place", "body": {}}),
        json!({"channel": "atm", "requestId": "T1", "command": "start"}),
        json!({"channel": "atm", "requestId": "T1", "command": "place", "orderId": "A"}),
        json!({"channel": "atm", "requestId": "T1", "command": "place", "expectedVersion": 1}),
        json!({"channel": "atm", "requestId": "T1", "command": "start", "orderId": "A",
               "expectedVersion": 0}),
        json!({"channel": "atm", "requestId": "T1", "command": "start", "orderId": "a b"}),
        json!({"channel": "atm", "requestId": "T1", "command": "place", "body": {}, "extra": 1}),
        json!({"channel": "atm", "requestId": "T1", "command": "place", "body": [1]}),
    ];
    let schema = validator();
    for m in &valid {
        assert!(schema.is_valid(m), "the schema refuses {m}");
        assert!(rust_accepts(m), "the Rust type refuses {m}");
    }
    for m in &invalid {
        assert!(!schema.is_valid(m), "the schema accepts {m}");
        // The type defers the order id's and the body's own rules to the API's parser.
        let body_or_id_rule =
            m["orderId"] == "a b" || m["body"].is_array() || m["expectedVersion"] == 0;
        if !body_or_id_rule {
            assert!(!rust_accepts(m), "the Rust type accepts {m}");
        }
    }
}
