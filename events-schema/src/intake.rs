//! The intake queue's message: a command that arrives from a channel (web, mobile app, ATM
//! terminal...) on the `order-intake` queue instead of over HTTP, with the channel's own
//! request id, which makes it idempotent. The command's `body` is the same JSON the HTTP
//! API takes for that command, parsed by the API's own parser; this type only frames it.
//!
//! Its JSON Schema is generated from this type and checked in as
//! `events-schema/schema/intake-message.schema.json` (a test fails on drift).

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::values::InvalidValue;

/// The channel a command came in through: `web`, `mobile`, `atm`, or any other name of
/// 1..=32 lowercase letters, digits and `-`, starting with a letter (the set is open: a new
/// channel needs no release).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Channel(String);

impl Channel {
    pub const MAX_LEN: usize = 32;
    /// The channels the product was built for; others are accepted as well.
    pub const KNOWN: [&'static str; 3] = ["web", "mobile", "atm"];

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let valid = raw.len() <= Self::MAX_LEN
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "channel must be 1 to {} lowercase letters, digits and '-', starting with a letter (such as {}), not {:?}",
                Self::MAX_LEN,
                Self::KNOWN.join(", "),
                shorten(raw)
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(d)?;
        Channel::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Channel {
    fn schema_name() -> Cow<'static, str> {
        "Channel".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "The channel the command came in through: web, mobile, atm, or another name of lowercase letters, digits and '-'.",
            "pattern": "^[a-z][a-z0-9-]{0,31}$",
            "examples": ["web", "mobile", "atm"]
        })
    }
}

/// The channel's own id of the request: 1..=128 characters of `[A-Za-z0-9._:-]`. The same
/// request id on the same channel is the same command: it is applied once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        if valid && raw != "." && raw != ".." {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "requestId must be 1 to {} letters, digits, '.', '_', ':' and '-' (such as T17-000042), not {:?}",
                Self::MAX_LEN,
                shorten(raw)
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(d)?;
        RequestId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for RequestId {
    fn schema_name() -> Cow<'static, str> {
        "RequestId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "The channel's own id of the request; the same id on the same channel is applied once.",
            "pattern": "^[A-Za-z0-9._:-]{1,128}$",
            "not": { "enum": [".", ".."] }
        })
    }
}

/// Which command the message carries, each the twin of an HTTP endpoint whose body it
/// takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntakeCommand {
    /// `POST /orders`.
    Place,
    /// `POST /orders/{orderId}/start`.
    Start,
    /// `POST /orders/{orderId}/complete`.
    Complete,
    /// `POST /orders/{orderId}/cancel`.
    Cancel,
    /// `PUT /orders/{orderId}`: a transition and/or revised details.
    Revise,
}

impl IntakeCommand {
    pub const ALL: [IntakeCommand; 5] = [
        IntakeCommand::Place,
        IntakeCommand::Start,
        IntakeCommand::Complete,
        IntakeCommand::Cancel,
        IntakeCommand::Revise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IntakeCommand::Place => "place",
            IntakeCommand::Start => "start",
            IntakeCommand::Complete => "complete",
            IntakeCommand::Cancel => "cancel",
            IntakeCommand::Revise => "revise",
        }
    }

    /// Whether the command acts on an existing order, named by `orderId`.
    pub fn needs_order(self) -> bool {
        self != IntakeCommand::Place
    }
}

impl fmt::Display for IntakeCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message of the intake queue.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    title = "OrderIntakeMessage",
    extend("allOf" = [
        {
            "if": { "properties": { "command": { "const": "place" } } },
            "then": { "not": { "anyOf": [ { "required": ["orderId"] }, { "required": ["expectedVersion"] } ] } },
            "else": { "required": ["orderId"] }
        }
    ])
)]
pub struct IntakeMessage {
    pub channel: Channel,
    pub request_id: RequestId,
    pub command: IntakeCommand,
    /// The order a `start`, `complete`, `cancel` or `revise` acts on (required for them);
    /// a `place` names its order in the body (`orderId`), as `POST /orders` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::OrderId>")]
    pub order_id: Option<String>,
    /// Applies the command only if the order is at this version (the HTTP API's
    /// `If-Match: "<version>"`); not for a `place`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub expected_version: Option<u64>,
    /// The JSON body the HTTP API takes for the command (the body of `POST /orders` for a
    /// `place`, Spanish shape included), kept as sent so that the API's parser reads it
    /// exactly as it would read the request. Absent or `null` for a command without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub body: Option<Box<RawValue>>,
}

/// The JSON Schema of [`IntakeMessage`], as checked in at `events-schema/schema/`.
pub fn intake_message_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(IntakeMessage).to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            "https://ordersource.dev/schemas/order-intake-message/v1.json".into(),
        );
    }
    schema
}

/// At most this many characters of a rejected value are repeated in the error.
fn shorten(raw: &str) -> String {
    const SHOWN: usize = 40;
    if raw.chars().count() > SHOWN {
        format!("{}...", raw.chars().take(SHOWN).collect::<String>())
    } else {
        raw.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_new_channels_are_accepted_and_odd_ones_refused_saying_why() {
        for ok in ["web", "mobile", "atm", "kiosk-2", "a"] {
            assert_eq!(Channel::parse(ok).expect(ok).as_str(), ok);
        }
        for bad in ["", "ATM", "2fa", "web/x", "w b", &"a".repeat(33)] {
            let err = Channel::parse(bad).expect_err(bad);
            assert!(err.0.contains("channel must be"), "{err}");
        }
    }

    #[test]
    fn request_ids_are_one_path_segment_of_the_ledger_key() {
        assert_eq!(
            RequestId::parse("T17-000042").expect("ok").as_str(),
            "T17-000042"
        );
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(RequestId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_message_keeps_its_body_exactly_as_sent() {
        let raw = r#"{"channel":"atm","requestId":"T1","command":"place","body":{"descripcion": "Caja",  "descripcion":"x"}}"#;
        let m: IntakeMessage = serde_json::from_str(raw).expect("parses");
        assert_eq!(m.command, IntakeCommand::Place);
        assert_eq!(
            m.body.expect("body").get(),
            r#"{"descripcion": "Caja",  "descripcion":"x"}"#
        );
    }

    #[test]
    fn unknown_members_and_bad_values_are_refused() {
        for raw in [
            r#"{"channel":"atm","requestId":"T1","command":"place","extra":1}"#,
            r#"{"channel":"ATM","requestId":"T1","command":"place"}"#,
            r#"{"channel":"atm","requestId":"T1","command":"ship"}"#,
            r#"{"channel":"atm","command":"place"}"#,
        ] {
            assert!(serde_json::from_str::<IntakeMessage>(raw).is_err(), "{raw}");
        }
    }
}
