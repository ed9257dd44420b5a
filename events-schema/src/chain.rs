//! The tamper-evident hash chain over an order's events.
//!
//! `hash` = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of the envelope
//! without its `hash` member; that JSON includes `prevHash`, which is the previous event's
//! `hash`, or 64 zeros for version 1. Anyone can recompute it with any JCS implementation.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::event::Envelope;

/// The `prevHash` of every order's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash([u8; 32]);

impl ChainHash {
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn parse(hex_digits: &str) -> Option<Self> {
        if hex_digits.len() != 64 || hex_digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn of_canonical(canonical: &[u8]) -> Self {
        Self(Sha256::digest(canonical).into())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(d)?;
        ChainHash::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lowercase hex digits"))
    }
}

impl JsonSchema for ChainHash {
    fn schema_name() -> Cow<'static, str> {
        "ChainHash".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[0-9a-f]{64}$" })
    }
}

/// The hash `envelope` must carry, computed from its other fields.
pub fn hash_of(envelope: &Envelope) -> ChainHash {
    ChainHash::of_canonical(&canonical(envelope))
}

/// The SHA-256 of bytes that are already an envelope's [`canonical`] form (for callers
/// that keep the canonical bytes, e.g. to compare them with stored text).
pub fn hash_of_canonical(canonical: &[u8]) -> ChainHash {
    ChainHash::of_canonical(canonical)
}

/// The RFC 8785 form of an envelope without `hash`, written directly: every object below is
/// serialized with its members already in JCS order (the payload and metadata structs
/// declare their fields sorted), and serde_json's compact output escapes strings and writes
/// integers exactly as JCS does. A property test pins this against a generic JCS encoder.
pub fn canonical(envelope: &Envelope) -> Vec<u8> {
    use crate::event::OrderEvent;

    #[derive(Serialize)]
    struct NoFields {}

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Data<'a> {
        Placed(&'a crate::event::OrderPlaced),
        Canceled(&'a crate::event::OrderCanceled),
        Revised(&'a crate::event::OrderDetailsRevised),
        Empty(NoFields),
    }

    // Members in JCS (UTF-16 code unit) order; all names are ASCII.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Canonical<'a> {
        data: Data<'a>,
        event_id: &'a uuid::Uuid,
        metadata: &'a crate::event::Metadata,
        occurred_at: &'a chrono::DateTime<chrono::Utc>,
        order_id: &'a crate::values::OrderId,
        prev_hash: &'a ChainHash,
        schema_version: u32,
        status: crate::values::Status,
        #[serde(rename = "type")]
        kind: &'static str,
        version: u64,
    }

    let data = match &envelope.event {
        OrderEvent::OrderPlaced(p) => Data::Placed(p),
        OrderEvent::OrderCanceled(c) => Data::Canceled(c),
        OrderEvent::OrderDetailsRevised(r) => Data::Revised(r),
        OrderEvent::OrderStarted {} | OrderEvent::OrderCompleted {} => Data::Empty(NoFields {}),
    };
    let view = Canonical {
        data,
        event_id: &envelope.event_id,
        metadata: &envelope.metadata,
        occurred_at: &envelope.occurred_at,
        order_id: &envelope.order_id,
        prev_hash: &envelope.prev_hash,
        schema_version: envelope.schema_version,
        status: envelope.status,
        kind: envelope.event.type_name(),
        version: envelope.version,
    };
    // Plain data (strings, integers, maps with string keys): serializing cannot fail.
    serde_json::to_vec(&view).unwrap_or_default()
}

/// The hash of a stored envelope's JSON, ignoring (and removing) its `hash` member.
fn hash_of_value(value: &mut serde_json::Value) -> Option<ChainHash> {
    value.as_object_mut()?.remove("hash");
    let canonical = serde_json_canonicalizer::to_vec(value).ok()?;
    Some(ChainHash::of_canonical(&canonical))
}

/// A property of an order's stored history that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error(
        "version {found} found where version {expected} was expected (versions must run 1, 2, 3, ... without gaps)"
    )]
    VersionGap { expected: u64, found: u64 },
    #[error("version {version}: stored hash {stored} does not match the recomputed {computed}")]
    HashMismatch {
        version: u64,
        stored: String,
        computed: ChainHash,
    },
    #[error("version {version}: prevHash {found} is not the previous event's hash {expected}")]
    PrevHashMismatch {
        version: u64,
        expected: ChainHash,
        found: String,
    },
    #[error("event #{index} is not a readable envelope: {reason}")]
    Unreadable { index: usize, reason: String },
}

/// Checks an order's stored events, given as their JSON text in version order: versions
/// gapless from 1, each `hash` recomputed, each `prevHash` linking to the previous `hash`.
/// Works on the raw JSON so that any changed byte is caught, even one a parser would hide.
pub fn verify_chain<'a>(raw_events: impl IntoIterator<Item = &'a str>) -> Vec<ChainBreak> {
    let mut breaks = Vec::new();
    let mut prev = ChainHash::GENESIS;
    for (index, raw) in raw_events.into_iter().enumerate() {
        let expected_version = index as u64 + 1;
        let mut value: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                breaks.push(ChainBreak::Unreadable {
                    index: index + 1,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let field = |name: &str| value.get(name).cloned();
        let version = field("version").and_then(|v| v.as_u64());
        let stored = field("hash").and_then(|v| v.as_str().map(str::to_owned));
        let prev_field = field("prevHash").and_then(|v| v.as_str().map(str::to_owned));
        let (Some(version), Some(stored), Some(prev_field)) = (version, stored, prev_field) else {
            breaks.push(ChainBreak::Unreadable {
                index: index + 1,
                reason: "missing version, hash or prevHash".into(),
            });
            continue;
        };
        if version != expected_version {
            breaks.push(ChainBreak::VersionGap {
                expected: expected_version,
                found: version,
            });
        }
        if ChainHash::parse(&prev_field) != Some(prev) {
            breaks.push(ChainBreak::PrevHashMismatch {
                version,
                expected: prev,
                found: prev_field,
            });
        }
        let Some(computed) = hash_of_value(&mut value) else {
            breaks.push(ChainBreak::Unreadable {
                index: index + 1,
                reason: "not a JSON object".into(),
            });
            continue;
        };
        let stored_hash = ChainHash::parse(&stored);
        if stored_hash != Some(computed) {
            breaks.push(ChainBreak::HashMismatch {
                version,
                stored,
                computed,
            });
        }
        // Continue the chain from what was stored, so one bad event is reported once.
        prev = stored_hash.unwrap_or(computed);
    }
    breaks
}
