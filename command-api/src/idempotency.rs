//! Idempotency keys around a write: claim the key (in the API's namespace, scoped to the
//! caller), hand back a saved response to replay, refuse a reused or busy key, and release
//! the claim when the request fails or is dropped. What a replayed response looks like on
//! the wire is the routes' business.

use std::sync::Arc;

use backend::{Claim, IdempotencyKey, IdempotencyStore, LedgerKey, SavedResponse};
use sha2::{Digest, Sha256};

use crate::service::{Claimed, CommandError};

/// A claim on a key, released on drop unless the request completed (its response saved).
pub(crate) struct ClaimGuard {
    store: Arc<dyn IdempotencyStore>,
    pub(crate) claimed: Claimed,
    armed: bool,
}

impl ClaimGuard {
    pub(crate) fn completed(mut self) {
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
pub(crate) fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json_canonicalizer::to_vec(&v).ok());
    let mut hasher = Sha256::new();
    hasher.update(method);
    hasher.update(b" ");
    hasher.update(path);
    hasher.update(b"\n");
    hasher.update(canonical.as_deref().unwrap_or(body));
    hex::encode(hasher.finalize())
}

pub(crate) enum Begin {
    /// Run the write, under the claim when the request carries a key.
    Proceed(Option<ClaimGuard>),
    /// The same request completed before: answer with its response.
    Replay(SavedResponse),
}

/// `fingerprint` is only computed when the request carries a key. The same key from two
/// actors (or from an actor and an anonymous caller) is two keys.
pub(crate) async fn begin(
    store: &Arc<dyn IdempotencyStore>,
    actor: Option<&str>,
    key: Option<&IdempotencyKey>,
    fingerprint: impl FnOnce() -> String,
) -> Result<Begin, CommandError> {
    let Some(key) = key else {
        return Ok(Begin::Proceed(None));
    };
    claim(
        store,
        LedgerKey::api(actor, key),
        fingerprint(),
        crate::service::IDEMPOTENCY_TTL,
    )
    .await
}

/// Claims `key` for a request with `fingerprint`, its outcome to be kept for `ttl`: the
/// API's keys and the intake's alike.
pub(crate) async fn claim(
    store: &Arc<dyn IdempotencyStore>,
    key: LedgerKey,
    fingerprint: String,
    ttl: chrono::Duration,
) -> Result<Begin, CommandError> {
    match store
        .claim(&key, &fingerprint, crate::service::now())
        .await?
    {
        Claim::Acquired => Ok(Begin::Proceed(Some(ClaimGuard {
            store: store.clone(),
            claimed: Claimed {
                key,
                fingerprint,
                ttl,
            },
            armed: true,
        }))),
        Claim::Replay(saved) => Ok(Begin::Replay(saved)),
        Claim::InProgress => Err(CommandError::KeyInProgress),
        Claim::Mismatch => Err(CommandError::KeyReused),
    }
}
