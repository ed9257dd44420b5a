//! Reading request bodies and fields: a size limit, `Content-Type: application/json` for a
//! body that has content, JSON objects only with each key once, `null` as "not sent",
//! Spanish aliases, unknown fields rejected, and every problem named by field.

use std::{borrow::Cow, collections::HashSet, fmt};

use axum::{
    body::{Body, to_bytes},
    http::{HeaderMap, header},
};
use events_schema::{CustomerId, DeliveryDate, Description, InvalidValue, OrderId, Reason, Status};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::problem::{ApiError, FieldError};

/// Larger bodies get a 413.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longer field names are cut to this many characters when an error names them.
const MAX_NAME_SHOWN: usize = 64;

/// The body's bytes, or a 413 past the limit; a 415 for a body with content that is not
/// declared `application/json` (an empty body needs no content type: `curl -X POST
/// .../start`). A browser can send `text/plain` and form bodies to any address without
/// asking first; it cannot send `application/json` cross-origin without a CORS preflight.
pub(crate) async fn read(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let bytes = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        })?;
    if !bytes.iter().all(u8::is_ascii_whitespace) && !is_json(headers) {
        let sent = headers.get(header::CONTENT_TYPE).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(MAX_NAME_SHOWN)
                .collect::<String>()
        });
        return Err(ApiError::UnsupportedMediaType(match sent {
            Some(ct) => format!(
                "a request body must be sent with Content-Type: application/json, not {ct:?}"
            ),
            None => "a request body must be sent with Content-Type: application/json".into(),
        }));
    }
    Ok(bytes)
}

/// `application/json`, with or without parameters (`; charset=utf-8`), in any letter case.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses a body that must be a JSON object. An empty body is `None`, as is a JSON `null`.
pub(crate) fn object(bytes: &[u8]) -> Result<Option<Map<String, Value>>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => {
            // `Value` keeps the last of repeated keys; a client (or a proxy between) that
            // reads the first would see another request than the one applied.
            if let Ok(FirstRepeated(Some(key))) = serde_json::from_slice::<FirstRepeated>(bytes) {
                let key = shorten(&key);
                return Err(ApiError::field(
                    key.clone(),
                    format!("Duplicate key in the request body: {key}"),
                ));
            }
            Ok(Some(map))
        }
        Ok(Value::Null) => Ok(None),
        Ok(other) => Err(ApiError::bad_request(format!(
            "Request body must be a JSON object, not {}",
            kind(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!("Malformed JSON: {e}"))),
    }
}

/// The first key that a JSON object repeats, if any (top level only: nested values are
/// refused anyway, every field being a string).
struct FirstRepeated(Option<String>);

impl<'de> serde::Deserialize<'de> for FirstRepeated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = FirstRepeated;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstRepeated, A::Error> {
                let mut seen = HashSet::new();
                let mut repeated = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    map.next_value::<IgnoredAny>()?;
                    if repeated.is_none() && !seen.insert(key.clone()) {
                        repeated = Some(key.into_owned());
                    }
                }
                Ok(FirstRepeated(repeated))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// A client's field name as errors show it: at most [`MAX_NAME_SHOWN`] characters.
fn shorten(name: &str) -> String {
    if name.chars().count() <= MAX_NAME_SHOWN {
        name.to_owned()
    } else {
        let head: String = name.chars().take(MAX_NAME_SHOWN).collect();
        format!("{head}...")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Takes fields out of a request object one by one, collecting every problem, so that a
/// client learns about all bad fields at once.
pub(crate) struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    pub(crate) fn new(map: Option<Map<String, Value>>) -> Self {
        Self {
            map: map.unwrap_or_default(),
            errors: Vec::new(),
        }
    }

    /// The value of `name` (or of one of its aliases) as a string; `None` if absent or null.
    /// Returns the name the client used, for messages.
    fn string(
        &mut self,
        name: &'static str,
        aliases: &[&'static str],
    ) -> Option<(&'static str, String)> {
        let mut found: Option<(&'static str, Value)> = None;
        for candidate in std::iter::once(&name).chain(aliases) {
            if let Some(v) = self.map.remove(*candidate) {
                if v.is_null() {
                    continue;
                }
                if let Some((first, _)) = &found {
                    self.errors.push(FieldError::new(
                        *candidate,
                        format!("{candidate} and {first} are the same field; send only one"),
                    ));
                    continue;
                }
                found = Some((candidate, v));
            }
        }
        let (used, value) = found?;
        match value {
            Value::String(s) => Some((used, s)),
            other => {
                self.errors.push(FieldError::new(
                    used,
                    format!("{used} must be a string, not {}", kind(&other)),
                ));
                None
            }
        }
    }

    fn parse<T>(
        &mut self,
        name: &'static str,
        aliases: &[&'static str],
        parse: impl FnOnce(&'static str, &str) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        let (used, raw) = self.string(name, aliases)?;
        match parse(used, &raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors
                    .push(FieldError::new(used, format!("{used} {e}")));
                None
            }
        }
    }

    pub(crate) fn require<T>(&mut self, name: &'static str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.errors.iter().any(|e| e.field == name) {
            self.errors.push(FieldError::new(
                name,
                format!("Missing required field: {name}"),
            ));
        }
        value
    }

    pub(crate) fn order_id(&mut self) -> Option<OrderId> {
        self.parse("orderId", &[], |_, raw| OrderId::parse(raw))
    }

    pub(crate) fn description(&mut self) -> Option<Description> {
        self.parse("description", &["descripcion"], |_, raw| {
            Description::parse(raw)
        })
    }

    pub(crate) fn reason(&mut self) -> Option<Reason> {
        self.parse("reasonForCancellation", &[], |_, raw| Reason::parse(raw))
    }

    pub(crate) fn customer_id(&mut self) -> Option<CustomerId> {
        self.parse("customerId", &[], |_, raw| CustomerId::parse(raw))
    }

    /// `deliveryDate` as an ISO date or RFC 3339; seed 001's `fecha_entrega` also as
    /// `DD/MM/YYYY`.
    pub(crate) fn delivery_date(&mut self) -> Option<DeliveryDate> {
        self.parse("deliveryDate", &["fecha_entrega"], |used, raw| {
            if used == "fecha_entrega" {
                DeliveryDate::parse_spanish(raw)
            } else {
                DeliveryDate::parse(raw)
            }
        })
    }

    pub(crate) fn register_date(&mut self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.parse("registerDate", &[], |_, raw| {
            events_schema::parse_instant(raw).map(|d| d.to_utc())
        })
    }

    pub(crate) fn status(&mut self) -> Option<Status> {
        self.parse("status", &["estado"], |_, raw| {
            raw.parse::<Status>().map_err(|_| {
                InvalidValue(format!(
                    "{raw:?} is not a known status; expected one of received, inprocess, completed, canceled"
                ))
            })
        })
    }

    pub(crate) fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Fails with every collected problem, and with one per field nobody asked for.
    pub(crate) fn finish(mut self) -> Result<(), ApiError> {
        let mut unknown: Vec<String> = self.map.keys().cloned().collect();
        unknown.sort();
        // Each name once (an object's keys are unique), cut short: a client's junk is not
        // echoed back at length.
        for name in unknown.iter().map(|n| shorten(n)) {
            self.errors.push(FieldError::new(
                name.clone(),
                format!("Unknown field: {name}"),
            ));
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::fields(self.errors))
        }
    }
}
