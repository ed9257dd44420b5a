//! A write's HTTP answer: built from the order the write leaves, served, saved for
//! idempotent retries, and replayed from what was saved.

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use backend::SavedResponse;
use events_schema::Order;

const MESSAGE: &str = "Order processed successfully";

/// Marks a response replayed for a repeated `Idempotency-Key`.
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The body of every successful write.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct WriteResponse {
    /// Always "Order processed successfully" (what seed 000's clients check).
    message: String,
    order: Order,
}

/// A write's answer, in the form both served and saved for idempotent retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, String)>,
    body: String,
    replayed: bool,
}

impl Reply {
    /// `{"message": ..., "order": ...}` with the order's strong ETag (and `Location` when
    /// the order was created).
    pub(crate) fn order(status: StatusCode, order: &Order) -> Reply {
        let body = serde_json::to_string(&WriteResponse {
            message: MESSAGE.into(),
            order: order.clone(),
        })
        .unwrap_or_default();
        let mut headers = vec![(header::ETAG, etag(order.version))];
        if status == StatusCode::CREATED {
            headers.push((header::LOCATION, format!("/orders/{}", order.order_id)));
        }
        Reply {
            status,
            headers,
            body,
            replayed: false,
        }
    }

    /// What an idempotency record keeps of it.
    pub(crate) fn saved(&self) -> SavedResponse {
        SavedResponse {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
                .collect(),
            body: self.body.clone(),
        }
    }

    /// The saved answer of a request with the same `Idempotency-Key`, marked as replayed.
    pub(crate) fn replayed(saved: SavedResponse) -> Reply {
        Reply {
            status: StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK),
            headers: saved
                .headers
                .into_iter()
                .filter_map(|(n, v)| HeaderName::try_from(n).ok().map(|n| (n, v)))
                .collect(),
            body: saved.body,
            replayed: true,
        }
    }
}

/// The strong ETag of an order's version.
pub(crate) fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(name, value);
            }
        }
        if self.replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}
