//! `Idempotency-Key` handling around a write: claim the key, replay a saved response,
//! refuse a reused or busy key, and release the claim when the request fails or is dropped.

use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use backend::{Claim, IdempotencyStore, SavedResponse};
use sha2::{Digest, Sha256};

use crate::{
    problem::ApiError,
    service::{Claimed, Reply},
};

/// A claim on a key, released on drop unless the request completed (its response saved).
pub struct ClaimGuard {
    store: Arc<dyn IdempotencyStore>,
    pub claimed: Claimed,
    armed: bool,
}

impl ClaimGuard {
    pub fn completed(mut self) {
        self.armed = false;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.armed {
            let store = self.store.clone();
            let key = self.claimed.key.clone();
            // Also runs when the client hangs up mid-request and axum drops the handler.
            tokio::spawn(async move {
                if let Err(e) = store.release(&key).await {
                    tracing::warn!(error = %e, "could not release an idempotency key");
                }
            });
        }
    }
}

/// The request's identity for idempotency: method, path and body (as canonical JSON when
/// it is JSON, so that formatting differences do not count as a different request).
pub fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json_canonicalizer::to_vec(&v).ok());
    let mut hasher = Sha256::new();
    hasher.update(method.as_str());
    hasher.update(b" ");
    hasher.update(path);
    hasher.update(b"\n");
    hasher.update(canonical.as_deref().unwrap_or(body));
    hex::encode(hasher.finalize())
}

pub enum Begin {
    Proceed(Option<ClaimGuard>),
    Answer(Response),
}

/// `fingerprint` is only computed when the request carries a key.
pub async fn begin(
    store: &Arc<dyn IdempotencyStore>,
    key: Option<String>,
    fingerprint: impl FnOnce() -> String,
) -> Result<Begin, ApiError> {
    let Some(key) = key else {
        return Ok(Begin::Proceed(None));
    };
    let fingerprint = fingerprint();
    match store
        .claim(&key, &fingerprint, crate::service::now())
        .await?
    {
        Claim::Acquired => Ok(Begin::Proceed(Some(ClaimGuard {
            store: store.clone(),
            claimed: Claimed { key, fingerprint },
            armed: true,
        }))),
        Claim::Replay(saved) => Ok(Begin::Answer(replayed(saved))),
        Claim::InProgress => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still being processed; retry later".into(),
        )),
        Claim::Mismatch => Err(ApiError::Unprocessable(
            "this Idempotency-Key was already used with a different request; use a new key".into(),
        )),
    }
}

fn replayed(saved: SavedResponse) -> Response {
    let mut response = Reply::from(saved).into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

impl From<SavedResponse> for Reply {
    fn from(saved: SavedResponse) -> Self {
        Reply {
            status: StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK),
            headers: saved
                .headers
                .into_iter()
                .filter_map(|(n, v)| axum::http::HeaderName::try_from(n).ok().map(|n| (n, v)))
                .collect(),
            body: saved.body,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(name, value);
            }
        }
        response
    }
}
