//! Validated value types: parse, don't validate. A value of one of these types is known good.

use std::{borrow::Cow, fmt, str::FromStr};

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, Timelike};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

/// Why a value was rejected, phrased for the client who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// An order's identity: 1..=128 characters of `[A-Za-z0-9._:-]` other than `.` and `..`
/// (which are path segments, not names), or a server-made UUIDv7.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrderId(String);

impl OrderId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw == "." || raw == ".." {
            return Err(InvalidValue(format!(
                "must not be {raw:?}: it names a path segment, not an order"
            )));
        }
        Self::parse_stored(raw)
    }

    /// The rules ids were stored under before `.` and `..` were refused: for reading back.
    fn parse_stored(raw: &str) -> Result<Self, InvalidValue> {
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
        OrderId::parse_stored(&raw).map_err(|e| serde::de::Error::custom(format!("orderId {e}")))
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
            "pattern": "^[A-Za-z0-9._:-]{1,128}$",
            "not": { "enum": [".", ".."] }
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
/// characters other than newline and tab, no bidirectional overrides or zero-width
/// characters (see [`INVISIBLE`]).
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                check_text(raw, Self::MAX_CHARS)?;
                check_visible(raw).map(|()| Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Stored events were accepted under the rules of their day: read them back
                // under the rules that do not depend on when they were written.
                let raw = Cow::<str>::deserialize(d)?;
                check_text(&raw, $name::MAX_CHARS)
                    .map(|()| $name(raw.into_owned()))
                    .map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": $max,
                    "description": concat!(
                        "1 to ", stringify!($max), " characters; no control characters other ",
                        "than newline and tab, no bidirectional overrides (U+202A..U+202E, ",
                        "U+2066..U+2069) or zero-width characters (U+200B..U+200D, U+2060, U+FEFF)"
                    )
                })
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

/// Characters refused in text: bidirectional embeddings, overrides and isolates
/// (U+202A..U+202E, U+2066..U+2069), which make text display otherwise than it reads, and
/// zero-width characters (U+200B..U+200D, U+2060, U+FEFF), which hide in it.
pub const INVISIBLE: &[(char, char)] = &[
    ('\u{200B}', '\u{200D}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2060}'),
    ('\u{2066}', '\u{2069}'),
    ('\u{FEFF}', '\u{FEFF}'),
];

fn check_visible(raw: &str) -> Result<(), InvalidValue> {
    match raw
        .chars()
        .find(|c| INVISIBLE.iter().any(|(lo, hi)| (lo..=hi).contains(&c)))
    {
        Some(c) => Err(InvalidValue(format!(
            "must not contain bidirectional-override or zero-width characters (found U+{:04X})",
            u32::from(c)
        ))),
        None => Ok(()),
    }
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

/// The longest RFC 3339 instant accepted: `YYYY-MM-DDTHH:MM:SS`, 9 fractional digits and
/// an offset fit in 35 characters.
pub const MAX_INSTANT_CHARS: usize = 35;
/// The most fractional-second digits an instant may have (nanoseconds); stored to the
/// microsecond.
pub const MAX_FRACTION_DIGITS: usize = 9;

/// Parses an RFC 3339 instant of at most [`MAX_INSTANT_CHARS`] characters and at most
/// [`MAX_FRACTION_DIGITS`] fractional-second digits, truncated to the microsecond (what every
/// store keeps exactly). The offset is kept.
pub fn parse_instant(raw: &str) -> Result<DateTime<FixedOffset>, InvalidValue> {
    if fraction_digits(raw) > MAX_FRACTION_DIGITS {
        return Err(InvalidValue(format!(
            "{} has more than {MAX_FRACTION_DIGITS} fractional-second digits",
            shown(raw)
        )));
    }
    let not_instant = || InvalidValue(format!("{} is not an RFC 3339 date-time", shown(raw)));
    if raw.len() > MAX_INSTANT_CHARS {
        return Err(not_instant());
    }
    let parsed = DateTime::parse_from_rfc3339(raw).map_err(|_| not_instant())?;
    Ok(parsed
        .with_nanosecond(parsed.nanosecond() / 1_000 * 1_000)
        .unwrap_or(parsed))
}

/// How many digits follow the seconds' decimal point (0 without one).
fn fraction_digits(raw: &str) -> usize {
    raw.split_once('.').map_or(0, |(_, rest)| {
        rest.bytes().take_while(u8::is_ascii_digit).count()
    })
}

/// A client's value in an error message, cut short if long.
fn shown(raw: &str) -> String {
    const SHOWN: usize = 40;
    if raw.chars().count() <= SHOWN {
        format!("{raw:?}")
    } else {
        let head: String = raw.chars().take(SHOWN).collect();
        format!("{head:?}... ({} characters)", raw.chars().count())
    }
}

/// When the order is due: a calendar date (`YYYY-MM-DD`, kept as a date) or an RFC 3339
/// instant, normalized: to the microsecond, `T` and `Z` upper case, the offset kept, at
/// most [`MAX_INSTANT_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeliveryDate(String);

impl DeliveryDate {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.len() == 10 && NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok() {
            return Ok(Self(raw.to_owned()));
        }
        match parse_instant(raw) {
            Ok(instant) => Ok(Self(instant.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
            Err(e) if fraction_digits(raw) > MAX_FRACTION_DIGITS => Err(e),
            Err(_) => Err(InvalidValue(format!(
                "{} is not a date (YYYY-MM-DD) or an RFC 3339 date-time",
                shown(raw)
            ))),
        }
    }

    /// A value read back from a stored event: kept exactly as stored (events written before
    /// dates were normalized hold them as sent, and their hashes cover that text).
    fn parse_stored(raw: &str) -> Result<Self, InvalidValue> {
        if NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok()
            || DateTime::parse_from_rfc3339(raw).is_ok()
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(format!("{} is not a date", shown(raw))))
        }
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
        DeliveryDate::parse_stored(&raw).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DeliveryDate {
    fn schema_name() -> Cow<'static, str> {
        "DeliveryDate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A calendar date (YYYY-MM-DD) or an RFC 3339 date-time, stored to the microsecond (at most 9 fractional-second digits accepted; 35 characters at most).",
            "maxLength": 35,
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

    #[test]
    fn order_ids_dot_and_dot_dot_are_refused_with_a_clear_message() {
        for bad in [".", ".."] {
            let e = OrderId::parse(bad).expect_err(bad);
            assert!(e.0.contains("path segment"), "{e}");
        }
        assert!(OrderId::parse("...").is_ok());
        assert!(OrderId::parse(".a").is_ok());
    }

    #[test]
    fn text_values_refuse_bidi_overrides_and_zero_width_characters() {
        for c in [
            '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200D}', '\u{2060}',
            '\u{FEFF}',
        ] {
            let raw = format!("pay{c}ment");
            assert!(Description::parse(&raw).is_err(), "U+{:04X}", u32::from(c));
            assert!(Reason::parse(&raw).is_err());
            assert!(CustomerId::parse(&raw).is_err());
        }
        assert!(Description::parse("العربية and עברית").is_ok());
        // Events stored before the rule still read back.
        let stored: Description = serde_json::from_str("\"a\\u200bb\"").expect("stored text");
        assert_eq!(stored.as_str(), "a\u{200B}b");
    }

    #[test]
    fn delivery_instants_are_normalized_to_the_microsecond_and_bounded() {
        let norm = |raw: &str| DeliveryDate::parse(raw).map(|d| d.as_str().to_owned());
        assert_eq!(norm("2026-04-10"), Ok("2026-04-10".into()));
        assert_eq!(
            norm("2026-04-10T08:00:00Z"),
            Ok("2026-04-10T08:00:00Z".into())
        );
        assert_eq!(
            norm("2026-04-10t08:00:00.123456789+02:00"),
            Ok("2026-04-10T08:00:00.123456+02:00".into())
        );
        assert_eq!(
            norm("2026-04-10T08:00:00.100+00:00"),
            Ok("2026-04-10T08:00:00.100Z".into())
        );
        let long = format!("2026-04-10T08:00:00.{}Z", "1".repeat(1_000_000));
        let e = DeliveryDate::parse(&long).expect_err("a million digits");
        assert!(e.0.contains("more than 9 fractional-second digits"), "{e}");
        assert!(
            e.0.len() < 200,
            "the error quotes a bounded prefix: {}",
            e.0.len()
        );
        assert!(DeliveryDate::parse("2026-04-10T08:00:00.1234567890Z").is_err());
        assert!(parse_instant(&format!("2026-04-10T08:00:00Z{}", " ".repeat(40))).is_err());
        assert_eq!(
            parse_instant("2026-04-10T08:00:00.999999999Z").map(|d| d.timestamp_subsec_nanos()),
            Ok(999_999_000)
        );
    }

    #[test]
    fn delivery_dates_stored_before_normalization_read_back_as_stored() {
        let stored: DeliveryDate =
            serde_json::from_str("\"2026-04-10T08:00:00.000Z\"").expect("stored date");
        assert_eq!(stored.as_str(), "2026-04-10T08:00:00.000Z");
    }
}
