//! What each endpoint accepts, parsed into domain commands and validated values.

use axum::http::{HeaderMap, HeaderName};
use backend::IdempotencyKey;
use base64::Engine;
use chrono::{DateTime, Utc};
use events_schema::{Command, OrderId, OrderPlaced, PlaceOrder, Status, UpdateOrder};
use serde_json::{Map, Value};

use crate::{
    body::Fields,
    problem::{ApiError, FieldError},
};

/// `POST /orders`: a new order, and which optional fields the client actually sent, so
/// that a retry can be recognised by comparing only those.
#[derive(Debug, Clone)]
pub(crate) struct PlaceRequest {
    pub(crate) order_id: Option<OrderId>,
    pub(crate) place: PlaceOrder,
    register_date_sent: bool,
}

impl PlaceRequest {
    pub(crate) fn parse(
        body: Option<Map<String, Value>>,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        if body.is_none() {
            return Err(ApiError::field(
                "description",
                "Missing required field: description",
            ));
        }
        let mut f = Fields::new(body);
        let order_id = f.order_id();
        let description = f.description();
        let description = f.require("description", description);
        let register_date = f.register_date();
        let delivery_date = f.delivery_date();
        let customer_id = f.customer_id();
        if let Some(status) = f.status()
            && status != Status::Received
        {
            f.error(
                "status",
                format!("a new order's status must be received, not {status}"),
            );
        }
        if f.reason().is_some() {
            f.error(
                "reasonForCancellation",
                "reasonForCancellation is only accepted together with status canceled",
            );
        }
        f.finish()?;
        let description = description
            .ok_or_else(|| ApiError::field("description", "Missing required field: description"))?;
        Ok(Self {
            order_id,
            register_date_sent: register_date.is_some(),
            place: PlaceOrder {
                description,
                register_date: register_date.unwrap_or(now),
                delivery_date,
                customer_id,
            },
        })
    }

    /// Whether `placed` (an existing order's first event) is what this request asks for,
    /// looking only at the fields the client sent.
    pub(crate) fn matches(&self, placed: &OrderPlaced) -> bool {
        placed.description == self.place.description
            && (!self.register_date_sent || placed.register_date == self.place.register_date)
            && (self.place.delivery_date.is_none()
                || placed.delivery_date == self.place.delivery_date)
            && (self.place.customer_id.is_none() || placed.customer_id == self.place.customer_id)
    }
}

/// `PUT /orders/{orderId}`: seed 000's shape.
pub(crate) fn parse_update(
    path_id: &OrderId,
    body: Option<Map<String, Value>>,
) -> Result<Command, ApiError> {
    let mut f = Fields::new(body);
    if let Some(body_id) = f.order_id()
        && body_id != *path_id
    {
        f.error(
            "orderId",
            format!("orderId in the body ({body_id}) does not match the path ({path_id})"),
        );
    }
    let update = UpdateOrder {
        status: f.status(),
        reason_for_cancellation: f.reason(),
        description: f.description(),
        delivery_date: f.delivery_date(),
    };
    f.finish()?;
    Ok(Command::Update(update))
}

/// `POST /orders/{orderId}/cancel`.
pub(crate) fn parse_cancel(body: Option<Map<String, Value>>) -> Result<Command, ApiError> {
    let mut f = Fields::new(body);
    let reason = f.reason();
    let reason = f.require("reasonForCancellation", reason);
    f.finish()?;
    reason
        .map(|reason| Command::Cancel { reason })
        .ok_or_else(|| {
            ApiError::field(
                "reasonForCancellation",
                "Missing required field: reasonForCancellation",
            )
        })
}

/// `/start` and `/complete` take no fields; an empty body, `{}` or `null` will do.
pub(crate) fn parse_empty(
    body: Option<Map<String, Value>>,
    command: Command,
) -> Result<Command, ApiError> {
    Fields::new(body).finish().map(|()| command)
}

pub(crate) fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|e| ApiError::field("orderId", format!("orderId {e}")))
}

/// `If-Match`: which versions the client believes current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IfMatch {
    Any,
    Versions(Vec<u64>),
}

impl IfMatch {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(raw) = headers.get(axum::http::header::IF_MATCH) else {
            return Ok(None);
        };
        let invalid = || {
            ApiError::field(
                "If-Match",
                "If-Match must be * or quoted versions such as \"3\"",
            )
        };
        let raw = raw.to_str().map_err(|_| invalid())?.trim();
        if raw == "*" {
            return Ok(Some(IfMatch::Any));
        }
        let mut versions = Vec::new();
        for tag in raw.split(',').map(str::trim) {
            // A weak tag never matches under If-Match's strong comparison.
            if tag.starts_with("W/") {
                continue;
            }
            let inner = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(invalid)?;
            versions.push(inner.parse::<u64>().map_err(|_| invalid())?);
        }
        Ok(Some(IfMatch::Versions(versions)))
    }

    pub(crate) fn matches(&self, version: u64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(v) => v.contains(&version),
        }
    }
}

pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub(crate) const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// What the OpenAPI document says of `Idempotency-Key` on every write.
pub(crate) const IDEMPOTENCY_KEY_DOC: &str = "Makes retries safe: the same key and body get \
    the first answer for 24 h. 1 to 255 characters of A-Z, a-z, 0-9 and - . _ ~ : + = (a UUID \
    fits), bare or as a quoted string; anything else is a 400 (type invalid-idempotency-key). \
    Keys are scoped to the authenticated caller: two callers' equal keys are different keys.";

/// `Idempotency-Key`, as [`IdempotencyKey`] allows it.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    // Not visible ASCII: refused by the charset in any case, named by the same message.
    let raw = String::from_utf8_lossy(raw.as_bytes());
    IdempotencyKey::parse(&raw)
        .map(Some)
        .map_err(|e| ApiError::InvalidIdempotencyKey(e.to_string()))
}

/// Query parameters, with unknown or repeated ones rejected.
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("Malformed query string: {e}")))?;
        let mut errors = Vec::new();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                errors.push(FieldError::new(
                    name.clone(),
                    format!("Unknown query parameter: {name}"),
                ));
            } else if pairs[..i].iter().any(|(n, _)| n == name) {
                errors.push(FieldError::new(
                    name.clone(),
                    format!("{name} may be given only once"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(Self(pairs))
        } else {
            Err(ApiError::fields(errors))
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET /orders/{orderId}?version=&at=`: which past state to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AsOf {
    Latest,
    Version(u64),
    At(DateTime<Utc>),
}

impl AsOf {
    pub(crate) fn parse(q: &QueryParams) -> Result<Self, ApiError> {
        match (q.get("version"), q.get("at")) {
            (Some(_), Some(_)) => Err(ApiError::bad_request("Give either version or at, not both")),
            (Some(v), None) => v
                .parse::<u64>()
                .ok()
                .filter(|v| *v >= 1)
                .map(AsOf::Version)
                .ok_or_else(|| {
                    ApiError::field("version", "version must be a whole number of at least 1")
                }),
            (None, Some(at)) => events_schema::parse_instant(at)
                .map(|d| AsOf::At(d.to_utc()))
                .map_err(|e| {
                    ApiError::field(
                        "at",
                        format!(
                            "at must be an RFC 3339 date-time such as 2026-01-31T08:00:00Z: {e}"
                        ),
                    )
                }),
            (None, None) => Ok(AsOf::Latest),
        }
    }
}

/// `GET /orders?status=&limit=&cursor=`.
#[derive(Debug, Clone)]
pub(crate) struct ListRequest {
    pub(crate) status: Option<Status>,
    pub(crate) limit: usize,
    pub(crate) after: Option<backend::ListCursor>,
}

pub(crate) const DEFAULT_LIMIT: usize = 20;
pub(crate) const MAX_LIMIT: usize = 100;

impl ListRequest {
    pub(crate) fn parse(q: &QueryParams) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let status = match q.get("status") {
            None => None,
            Some(raw) => match raw.parse::<Status>() {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.push(FieldError::new("status", e.to_string()));
                    None
                }
            },
        };
        let limit = parse_limit(q, DEFAULT_LIMIT, &mut errors);
        let after = match q.get("cursor") {
            None => None,
            Some(raw) => match decode_cursor(raw) {
                Some(c) => Some(c),
                None => {
                    errors.push(FieldError::new(
                        "cursor",
                        "cursor is not one this service issued; use nextCursor from a previous page",
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Self {
                status,
                limit,
                after,
            })
        } else {
            Err(ApiError::fields(errors))
        }
    }
}

/// `limit`: 1..=[`MAX_LIMIT`], `default` when absent.
fn parse_limit(q: &QueryParams, default: usize, errors: &mut Vec<FieldError>) -> usize {
    match q.get("limit") {
        None => default,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                ));
                default
            }
        },
    }
}

/// Clients written before the events were paged read `items` alone: a page as long as
/// allowed keeps every order of up to 100 events (nearly all) whole for them.
pub(crate) const DEFAULT_EVENTS_LIMIT: usize = MAX_LIMIT;

/// `GET /orders/{orderId}/events?limit=&cursor=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventsRequest {
    pub(crate) limit: usize,
    /// The version the page starts after (0: from the first event).
    pub(crate) after: u64,
}

impl EventsRequest {
    pub(crate) fn parse(q: &QueryParams, order_id: &OrderId) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let limit = parse_limit(q, DEFAULT_EVENTS_LIMIT, &mut errors);
        let after = match q.get("cursor") {
            None => 0,
            Some(raw) => decode_events_cursor(raw, order_id).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "cursor",
                    format!(
                        "cursor is not one this service issued for order {order_id}; use nextCursor from a previous page of its events"
                    ),
                ));
                0
            }),
        };
        if errors.is_empty() {
            Ok(Self { limit, after })
        } else {
            Err(ApiError::fields(errors))
        }
    }
}

/// Event cursors are opaque to clients: base64url of `<version>:<orderId>`, so that one
/// order's cursor is refused for another's events.
pub(crate) fn encode_events_cursor(version: u64, order_id: &OrderId) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{version}:{order_id}"))
}

fn decode_events_cursor(raw: &str, order_id: &OrderId) -> Option<u64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (version, id) = text.split_once(':')?;
    let version = version.parse::<u64>().ok().filter(|v| *v >= 1)?;
    (id == order_id.as_str()).then_some(version)
}

/// Cursors are opaque to clients: base64url of `<created µs>:<orderId>`.
pub(crate) fn encode_cursor(c: &backend::ListCursor) -> String {
    let raw = format!("{}:{}", c.created_at.timestamp_micros(), c.order_id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub(crate) fn decode_cursor(raw: &str) -> Option<backend::ListCursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once(':')?;
    Some(backend::ListCursor {
        created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        order_id: OrderId::parse(id).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn if_match(raw: &str) -> Result<Option<IfMatch>, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::IF_MATCH,
            HeaderValue::from_str(raw).expect("header"),
        );
        IfMatch::from_headers(&h)
    }

    #[test]
    fn if_match_accepts_star_and_quoted_versions_and_never_matches_weak_tags() {
        assert_eq!(if_match("*"), Ok(Some(IfMatch::Any)));
        assert_eq!(if_match("\"3\""), Ok(Some(IfMatch::Versions(vec![3]))));
        assert_eq!(
            if_match("\"3\", \"4\""),
            Ok(Some(IfMatch::Versions(vec![3, 4])))
        );
        let weak = if_match("W/\"3\"").expect("parses").expect("present");
        assert!(!weak.matches(3));
        assert!(if_match("3").is_err());
        assert!(if_match("\"three\"").is_err());
        assert_eq!(IfMatch::from_headers(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_rejected() {
        let cursor = backend::ListCursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("time"),
            order_id: OrderId::parse("ORD:1").expect("id"),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)), Some(cursor));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        assert_eq!(decode_cursor(""), None);
    }

    #[test]
    fn event_cursors_round_trip_for_their_order_only() {
        let order = OrderId::parse("ORD:1").expect("id");
        let other = OrderId::parse("ORD:2").expect("id");
        let cursor = encode_events_cursor(100, &order);
        let parse = |raw: &str, id: &OrderId| {
            let q =
                QueryParams::parse(Some(&format!("cursor={raw}")), &["cursor"]).expect("params");
            EventsRequest::parse(&q, id)
        };
        assert_eq!(
            parse(&cursor, &order),
            Ok(EventsRequest {
                limit: DEFAULT_EVENTS_LIMIT,
                after: 100
            })
        );
        for (raw, id) in [
            (cursor.as_str(), &other),
            ("not-a-cursor", &order),
            ("", &order),
            (&encode_events_cursor(0, &order), &order),
        ] {
            let err = parse(raw, id).expect_err(raw);
            assert!(err.to_string().contains("cursor is not one"), "{err}");
        }
    }

    #[test]
    fn list_limits_outside_one_to_one_hundred_are_rejected() {
        for bad in ["0", "101", "x", "-1"] {
            let q = QueryParams::parse(Some(&format!("limit={bad}")), &["limit"]).expect("params");
            assert!(ListRequest::parse(&q).is_err(), "limit={bad}");
        }
        let q = QueryParams::parse(Some("limit=100&status=cancelada"), &["limit", "status"])
            .expect("params");
        let req = ListRequest::parse(&q).expect("valid");
        assert_eq!((req.limit, req.status), (100, Some(Status::Canceled)));
        assert!(QueryParams::parse(Some("limit=1&limit=2"), &["limit"]).is_err());
        assert!(QueryParams::parse(Some("colour=red"), &["limit"]).is_err());
    }

    #[test]
    fn a_repeated_placement_matches_only_on_the_fields_the_client_sent() {
        let body = |v: serde_json::Value| v.as_object().cloned();
        let now = Utc::now();
        let first = PlaceRequest::parse(
            body(serde_json::json!({"description": "a", "customerId": "c1"})),
            now,
        )
        .expect("valid");
        let placed = OrderPlaced {
            description: first.place.description.clone(),
            register_date: now,
            delivery_date: None,
            customer_id: first.place.customer_id.clone(),
        };
        let later = now + chrono::Duration::seconds(5);
        let same = PlaceRequest::parse(body(serde_json::json!({"description": "a"})), later)
            .expect("valid");
        assert!(
            same.matches(&placed),
            "registerDate and customerId were not sent"
        );
        let other = PlaceRequest::parse(body(serde_json::json!({"description": "b"})), later)
            .expect("valid");
        assert!(!other.matches(&placed));
        let other_customer = PlaceRequest::parse(
            body(serde_json::json!({"description": "a", "customerId": "c2"})),
            later,
        )
        .expect("valid");
        assert!(!other_customer.matches(&placed));
    }
}
