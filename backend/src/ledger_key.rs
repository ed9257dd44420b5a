//! The keys of the idempotency ledger. One store (the embedded `idempotency` table, the AWS
//! ledger table) keeps the command API's idempotency keys and the handlers' claims on
//! events, so each kind of key has its own namespace, and nothing a client sends can name a
//! key of another namespace (or of another caller):
//!
//! | key | whose |
//! |---|---|
//! | `api/<scope>/<Idempotency-Key>` | a client's key; `<scope>` is `anonymous`, or `actor-` and the SHA-256 (hex) of the authenticated actor |
//! | `handler/<handler>/<eventId>` | a status handler's claim on one event |
//! | `intake/<channel>/<requestId>` | a command from the intake queue, by its channel and the channel's request id |
//!
//! [`LedgerKey`] is the only way to make a key, and the stores take nothing else. An
//! [`IdempotencyKey`] has no `/`, a handler name comes from the route table, an event id
//! is a UUID, and a channel and a request id are validated types without `/`, so no part
//! can reach past its segment. The actor is hashed because a JWT `sub`
//! may be any text of any length; the hash keeps the scope short and of one alphabet.
//!
//! On AWS each function's role may only touch its own prefix of the ledger table
//! (`dynamodb:LeadingKeys` in `cdk/lib/ordersource-stack.ts`): the prefixes below are also
//! IAM policy values, so change both together.

use events_schema::{Channel, RequestId};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The prefix of the command API's keys.
pub const API_PREFIX: &str = "api/";
/// The prefix of the handlers' claims.
pub const HANDLER_PREFIX: &str = "handler/";
/// The prefix of the intake's commands.
pub const INTAKE_PREFIX: &str = "intake/";
/// The scope of requests without an authenticated actor.
const ANONYMOUS: &str = "anonymous";

/// A key of the idempotency ledger, in its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LedgerKey(String);

impl LedgerKey {
    /// A client's `Idempotency-Key`, scoped to its caller: the same key sent by two actors
    /// (or by an actor and an anonymous caller) is two keys.
    pub fn api(actor: Option<&str>, key: &IdempotencyKey) -> Self {
        let key = key.as_str();
        Self(match actor {
            None => format!("{API_PREFIX}{ANONYMOUS}/{key}"),
            Some(actor) => {
                let actor = hex::encode(Sha256::digest(actor.as_bytes()));
                format!("{API_PREFIX}actor-{actor}/{key}")
            }
        })
    }

    /// A handler's claim on one event (`handler` is the route table's handler name).
    pub fn handler(handler: &str, event_id: Uuid) -> Self {
        Self(format!("{HANDLER_PREFIX}{handler}/{event_id}"))
    }

    /// A command from the intake queue: the same request id on the same channel is the
    /// same command, whichever message carried it.
    pub fn intake(channel: &Channel, request_id: &RequestId) -> Self {
        Self(format!("{INTAKE_PREFIX}{channel}/{request_id}"))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's `Idempotency-Key`: 1 to [`IdempotencyKey::MAX_LEN`] characters of
/// `A-Z a-z 0-9 - . _ ~ : + =` (UUIDs, ULIDs, base64url and the like), sent bare or as a
/// quoted string (the IETF draft's structured-field form), which is the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Idempotency-Key must be 1 to {max} characters of A-Z, a-z, 0-9 and - . _ ~ : + = ({reason})",
    max = IdempotencyKey::MAX_LEN
)]
pub struct InvalidIdempotencyKey {
    reason: String,
}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, InvalidIdempotencyKey> {
        let invalid = |reason: String| Err(InvalidIdempotencyKey { reason });
        let key = raw
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(raw);
        if key.is_empty() {
            return invalid("it is empty".into());
        }
        if key.len() > Self::MAX_LEN {
            return invalid(format!("it has {} characters", key.len()));
        }
        if let Some(c) = key.chars().find(|c| !Self::allowed(*c)) {
            return invalid(format!("it contains {c:?}"));
        }
        Ok(Self(key.to_owned()))
    }

    fn allowed(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | ':' | '+' | '=')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> IdempotencyKey {
        IdempotencyKey::parse(raw).expect("valid key")
    }

    #[test]
    fn keys_clients_send_are_valid() {
        for raw in [
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
            "01JDQ8Z5X3K9V7W2M4N6P8R0ST",
            "key-C-k1",
            "idem-L-m",
            "handled:completed:0193a0b4-7c5e-7d2a-9f1e-3b4c5d6e7f80",
            "dGhlIGtleQ==",
            "a.b_c~d+e",
        ] {
            assert_eq!(key(raw).as_str(), raw);
        }
        assert_eq!(key(&"k".repeat(255)).as_str().len(), 255);
    }

    #[test]
    fn a_quoted_key_is_the_same_key() {
        assert_eq!(key("\"abc-1\""), key("abc-1"));
    }

    #[test]
    fn bad_keys_are_refused_saying_why() {
        for (raw, why) in [
            ("", "it is empty"),
            ("\"\"", "it is empty"),
            (&"k".repeat(256), "it has 256 characters"),
            ("handler/completed/x", "it contains '/'"),
            ("a b", "it contains ' '"),
            ("a\"b", "it contains '\"'"),
            ("clé", "it contains 'é'"),
            ("a#b", "it contains '#'"),
        ] {
            let err = IdempotencyKey::parse(raw).expect_err(raw);
            assert!(err.to_string().contains(why), "{raw:?}: {err}");
        }
    }

    #[test]
    fn namespaces_and_scopes_give_distinct_keys_for_the_same_text() {
        let event = Uuid::parse_str("0193a0b4-7c5e-7d2a-9f1e-3b4c5d6e7f80").expect("uuid");
        let handler = LedgerKey::handler("completed", event);
        assert_eq!(
            handler.as_str(),
            "handler/completed/0193a0b4-7c5e-7d2a-9f1e-3b4c5d6e7f80"
        );
        let spelled = key(&format!("handled:completed:{event}"));
        let anonymous = LedgerKey::api(None, &spelled);
        assert_eq!(
            anonymous.as_str(),
            format!("api/anonymous/handled:completed:{event}")
        );
        let alice = LedgerKey::api(Some("alice"), &spelled);
        let bob = LedgerKey::api(Some("bob"), &spelled);
        assert_eq!(
            alice.as_str(),
            format!(
                "api/actor-{}/handled:completed:{event}",
                hex::encode(Sha256::digest(b"alice"))
            )
        );
        let intake = LedgerKey::intake(
            &Channel::parse("atm").expect("channel"),
            &RequestId::parse(&format!("handled:completed:{event}")).expect("request id"),
        );
        assert_eq!(
            intake.as_str(),
            format!("intake/atm/handled:completed:{event}")
        );
        let all = [&handler, &anonymous, &alice, &bob, &intake];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // An actor named like the anonymous scope is still an actor.
        assert_ne!(LedgerKey::api(Some("anonymous"), &spelled), anonymous);
    }

    #[test]
    fn a_long_actor_makes_a_short_scope() {
        let k = LedgerKey::api(Some(&"a".repeat(70_000)), &key("k"));
        assert_eq!(k.as_str().len(), "api/actor-".len() + 64 + "/k".len());
    }
}
