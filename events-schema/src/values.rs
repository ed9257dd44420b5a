//! Validated value types: parse, don't validate. A value of one of these types is known good.

use std::{borrow::Cow, fmt, str::FromStr};

use chrono::{DateTime, NaiveDate};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

/// Why a value was rejected, phrased for the client who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// An order's identity: 1..=128 characters of `[A-Za-z0-9._:-]`, or a server-made UUIDv7.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrderId(String);

impl OrderId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(InvalidValue(format!(
                "must be 1 to {} characters long",
                Self::MAX_LEN
            )));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(InvalidValue(format!(
                "may contain only letters, digits, '.', '_', ':' and '-' (found {bad:?})"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A fresh, time-ordered id for an order whose client did not choose one.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(d)?;
        OrderId::parse(&raw).map_err(|e| serde::de::Error::custom(format!("orderId {e}")))
    }
}

impl JsonSchema for OrderId {
    fn schema_name() -> Cow<'static, str> {
        "OrderId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[A-Za-z0-9._:-]{1,128}$"
        })
    }
}

/// Where an order is in its life. `completed` and `canceled` are terminal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Received,
    Inprocess,
    Completed,
    Canceled,
}

/// A status name that is neither a wire value nor one of the Spanish aliases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; expected one of received, inprocess, completed, canceled")]
pub struct UnknownStatus(pub String);

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Received,
        Status::Inprocess,
        Status::Completed,
        Status::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Inprocess => "inprocess",
            Status::Completed => "completed",
            Status::Canceled => "canceled",
        }
    }

    /// The status machine: the statuses this one may move to.
    pub fn allowed_next(self) -> &'static [Status] {
        match self {
            Status::Received => &[Status::Inprocess, Status::Canceled],
            Status::Inprocess => &[Status::Completed, Status::Canceled],
            Status::Completed | Status::Canceled => &[],
        }
    }

    pub fn can_move_to(self, next: Status) -> bool {
        self.allowed_next().contains(&next)
    }

    pub fn is_terminal(self) -> bool {
        self.allowed_next().is_empty()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownStatus;

    /// Accepts the wire values and seed 001's Spanish names, in any letter case.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let lower = raw.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "received" | "recibida" => Status::Received,
            "inprocess" | "en_proceso" => Status::Inprocess,
            "completed" | "completada" => Status::Completed,
            "canceled" | "cancelada" => Status::Canceled,
            _ => return Err(UnknownStatus(raw.to_owned())),
        })
    }
}

/// Declares a validated free-text newtype: non-blank, at most `$max` characters, no control
/// characters other than newline and tab.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                check_text(raw, Self::MAX_CHARS).map(|()| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = Cow::<str>::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "minLength": 1, "maxLength": $max })
            }
        }
    };
}

fn check_text(raw: &str, max_chars: usize) -> Result<(), InvalidValue> {
    if raw.trim().is_empty() {
        return Err(InvalidValue("must not be empty".into()));
    }
    let chars = raw.chars().count();
    if chars > max_chars {
        return Err(InvalidValue(format!(
            "must be at most {max_chars} characters (got {chars})"
        )));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(InvalidValue("must not contain control characters".into()));
    }
    Ok(())
}

text_value!(
    /// What the order is for: 1..=2000 characters.
    Description,
    2000
);
text_value!(
    /// Why an order was canceled: 1..=2000 characters.
    Reason,
    2000
);
text_value!(
    /// The client's own customer reference: 1..=256 characters.
    CustomerId,
    256
);

/// When the order is due: a calendar date (`YYYY-MM-DD`) or an RFC 3339 instant, kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeliveryDate(String);

impl DeliveryDate {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok() && raw.len() == 10 {
            return Ok(Self(raw.to_owned()));
        }
        if DateTime::parse_from_rfc3339(raw).is_ok() {
            return Ok(Self(raw.to_owned()));
        }
        Err(InvalidValue(format!(
            "{raw:?} is not a date (YYYY-MM-DD) or an RFC 3339 date-time"
        )))
    }

    /// Seed 001's `fecha_entrega`: `DD/MM/YYYY`, stored as `YYYY-MM-DD`.
    pub fn parse_spanish(raw: &str) -> Result<Self, InvalidValue> {
        NaiveDate::parse_from_str(raw, "%d/%m/%Y")
            .map(|d| Self(d.format("%Y-%m-%d").to_string()))
            .or_else(|_| Self::parse(raw))
            .map_err(|_| {
                InvalidValue(format!(
                    "{raw:?} is not a date (DD/MM/YYYY, YYYY-MM-DD or RFC 3339)"
                ))
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DeliveryDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Cow::<str>::deserialize(d)?;
        DeliveryDate::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DeliveryDate {
    fn schema_name() -> Cow<'static, str> {
        "DeliveryDate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A calendar date (YYYY-MM-DD) or an RFC 3339 date-time.",
            "anyOf": [{ "format": "date" }, { "format": "date-time" }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_accepts_the_documented_alphabet_and_length() {
        assert!(OrderId::parse("ORD-001").is_ok());
        assert!(OrderId::parse("a.b_c:d-E9").is_ok());
        assert!(OrderId::parse(&"x".repeat(128)).is_ok());
        assert!(OrderId::parse(&"x".repeat(129)).is_err());
        assert!(OrderId::parse("").is_err());
        assert!(OrderId::parse("has space").is_err());
        assert!(OrderId::parse("slash/").is_err());
        assert!(OrderId::parse("ñ").is_err());
    }

    #[test]
    fn generated_order_ids_are_valid_uuid_v7() {
        let id = OrderId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).expect("a uuid");
        assert_eq!(uuid.get_version_num(), 7);
        assert!(OrderId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn status_parses_wire_values_and_spanish_aliases_in_any_case() {
        assert_eq!("received".parse(), Ok(Status::Received));
        assert_eq!("Recibida".parse(), Ok(Status::Received));
        assert_eq!("en_proceso".parse(), Ok(Status::Inprocess));
        assert_eq!("COMPLETADA".parse(), Ok(Status::Completed));
        assert_eq!("cancelada".parse(), Ok(Status::Canceled));
        assert!("shipped".parse::<Status>().is_err());
        assert!("in process".parse::<Status>().is_err());
    }

    #[test]
    fn status_machine_has_exactly_the_documented_edges() {
        use Status::*;
        let edges: Vec<(Status, Status)> = Status::ALL
            .iter()
            .flat_map(|from| from.allowed_next().iter().map(move |to| (*from, *to)))
            .collect();
        assert_eq!(
            edges,
            vec![
                (Received, Inprocess),
                (Received, Canceled),
                (Inprocess, Completed),
                (Inprocess, Canceled)
            ]
        );
        assert!(Completed.is_terminal() && Canceled.is_terminal());
    }

    #[test]
    fn text_values_reject_blank_overlong_and_control_characters() {
        assert!(Description::parse("Mantenimiento básico").is_ok());
        assert!(Description::parse(&"é".repeat(2000)).is_ok());
        assert!(Description::parse(&"é".repeat(2001)).is_err());
        assert!(Description::parse("   ").is_err());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse("line\nbreak").is_ok());
    }

    #[test]
    fn delivery_dates_accept_iso_dates_and_rfc3339_and_spanish_dd_mm_yyyy() {
        assert!(DeliveryDate::parse("2026-04-10").is_ok());
        assert!(DeliveryDate::parse("2026-04-10T08:00:00Z").is_ok());
        assert!(DeliveryDate::parse("2026-02-30").is_err());
        assert!(DeliveryDate::parse("10/04/2026").is_err());
        assert_eq!(
            DeliveryDate::parse_spanish("10/04/2026").map(|d| d.as_str().to_owned()),
            Ok("2026-04-10".to_owned())
        );
        assert!(DeliveryDate::parse_spanish("31/02/2026").is_err());
    }
}
