//! Every error the API returns: an `application/problem+json` document (RFC 9457) that also
//! carries `error` (= `detail`) for seed 000's clients, and field errors in `errors`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use backend::StoreError;
use events_schema::Rejection;
use serde::Serialize;

use crate::{reply::etag, service::CommandError};

/// One problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request is malformed; `errors` names each offending field.
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// The `Idempotency-Key` header is not one the service accepts.
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("request body is larger than the {limit} byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unprocessable(String),
    /// An event the command would record is larger than a published event may be.
    #[error("{0}")]
    TooLarge(String),
    /// The order has as many events as it may have, but for its remaining status changes.
    #[error("{0}")]
    HistoryFull(String),
    /// A write's body is not declared `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A browser write from an origin that is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The backing store failed or is overloaded: the request changed nothing; retry.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub(crate) fn fields(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::BadRequest { detail, errors }
    }

    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::fields(vec![FieldError::new(field, message)])
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::InvalidIdempotencyKey(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::HistoryFull(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) | ApiError::TooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => ("invalid-request", "The request is invalid"),
            ApiError::InvalidIdempotencyKey(_) => (
                "invalid-idempotency-key",
                "The Idempotency-Key header is not valid",
            ),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            ApiError::Conflict(_) => ("conflict", "The request conflicts with the order's state"),
            ApiError::PreconditionFailed(_) => ("precondition-failed", "The order has changed"),
            ApiError::PayloadTooLarge { .. } => {
                ("payload-too-large", "The request body is too large")
            }
            ApiError::Unprocessable(_) => (
                "idempotency-key-reused",
                "The Idempotency-Key was used for another request",
            ),
            ApiError::TooLarge(_) => ("event-too-large", "The event would be too large"),
            ApiError::HistoryFull(_) => (
                "order-history-full",
                "The order has reached its limit of events",
            ),
            ApiError::UnsupportedMediaType(_) => (
                "unsupported-media-type",
                "The request body must be application/json",
            ),
            ApiError::Forbidden(_) => ("forbidden-origin", "Cross-origin writes are not allowed"),
            ApiError::Unavailable(_) => {
                ("unavailable", "The service cannot complete the request now")
            }
        }
    }
}

/// The problem document, as served and as described in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// The same text as `detail`, for clients that read `error`.
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (slug, title) = self.slug_and_title();
        let detail = self.to_string();
        if status.is_server_error() {
            tracing::warn!(%status, detail, "request failed");
        }
        let problem = Problem {
            kind: format!("https://ordersource.dev/problems/{slug}"),
            title: title.into(),
            status: status.as_u16(),
            error: detail.clone(),
            detail,
            errors: match self {
                ApiError::BadRequest { errors, .. } => errors,
                ApiError::InvalidIdempotencyKey(message) => {
                    vec![FieldError::new("Idempotency-Key", message)]
                }
                _ => Vec::new(),
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound(order_id) => {
                ApiError::NotFound(format!("order {order_id} does not exist"))
            }
            CommandError::Stale { order_id, current } => ApiError::PreconditionFailed(format!(
                "order {order_id} is at version {current}, which If-Match does not name; read it again and retry with ETag {}",
                etag(current)
            )),
            CommandError::ChangedMeanwhile(order_id) => ApiError::PreconditionFailed(format!(
                "order {order_id} changed while this request was being applied; read it again and retry with its new ETag"
            )),
            CommandError::Rejected(r) => r.into(),
            CommandError::Contended(order_id) => ApiError::Unavailable(format!(
                "order {order_id} is being changed by many writers at once; retry"
            )),
            CommandError::KeyInProgress => ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry later".into(),
            ),
            CommandError::KeyReused => ApiError::Unprocessable(
                "this Idempotency-Key was already used with a different request; use a new key"
                    .into(),
            ),
            CommandError::Unavailable(e) => e.into(),
            CommandError::Corrupt(e) => {
                tracing::error!(error = %e, "an order's stored history does not fold");
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match &r {
            Rejection::NotFound(_) => ApiError::NotFound(r.to_string()),
            Rejection::AlreadyExists(_) => {
                ApiError::Conflict(format!("{r}; choose another orderId"))
            }
            Rejection::IllegalTransition { .. } | Rejection::RevisionOfTerminal { .. } => {
                ApiError::Conflict(r.to_string())
            }
            Rejection::MissingReason => ApiError::field(
                "reasonForCancellation",
                "Missing required field: reasonForCancellation",
            ),
            Rejection::ReasonWithoutCancel => {
                ApiError::field("reasonForCancellation", r.to_string())
            }
            Rejection::TooLarge { .. } => {
                ApiError::TooLarge(format!("{r}; send shorter values (nothing was recorded)"))
            }
            Rejection::HistoryFull { .. } => ApiError::HistoryFull(format!(
                "{r}; nothing was recorded. Its status can still be changed; place a new order for further revisions"
            )),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, retryable = e.is_retryable(), "store failure");
        ApiError::Unavailable(if e.is_retryable() {
            format!(
                "the order store is busy ({}); retry shortly (with the same Idempotency-Key, a retried write is applied once)",
                e.context
            )
        } else {
            format!(
                "the order store failed ({}); a write may or may not have been applied: read the order, or retry with the same Idempotency-Key",
                e.context
            )
        })
    }
}
