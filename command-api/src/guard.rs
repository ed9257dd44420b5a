//! What a server on a local port adds in front of the API (`orders dev`): browser writes
//! from other origins refused, and a deadline on every request.
//!
//! A web page the user visits can send requests to `127.0.0.1`; the browser attaches an
//! `Origin` header to them. Requests without one (curl, SDKs, the seeds' clients) and
//! same-origin ones are not affected.

use std::time::Duration;

use axum::{
    extract::Request,
    http::{HeaderMap, Method, header},
    middleware::{self, Next},
    response::IntoResponse,
};

use crate::problem::ApiError;

/// The guard's settings.
#[derive(Debug, Clone)]
pub struct LocalGuard {
    /// Origins (`scheme://host[:port]`) whose pages may write; `*` allows any. Empty: only
    /// requests without `Origin` or from the server's own origin may write.
    pub allow_origins: Vec<String>,
    /// The longest a request may take, from its headers to its response (body included).
    pub request_timeout: Duration,
}

impl LocalGuard {
    /// Wraps `router` with the origin check and the request deadline.
    pub fn wrap(self, router: axum::Router) -> axum::Router {
        let origins: std::sync::Arc<[String]> =
            self.allow_origins.iter().map(|o| normalize(o)).collect();
        let timeout = self.request_timeout;
        router
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                async move {
                    match tokio::time::timeout(timeout, next.run(req)).await {
                        Ok(response) => response,
                        Err(_) => ApiError::Unavailable(format!(
                            "the request took longer than {} s; a write may or may not have been applied: read the order, or retry with the same Idempotency-Key",
                            timeout.as_secs_f64()
                        ))
                        .into_response(),
                    }
                }
            }))
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                let origins = origins.clone();
                async move {
                    match refused_origin(req.method(), req.headers(), &origins) {
                        Some(origin) => ApiError::Forbidden(format!(
                            "writes from origin {origin:?} are not allowed; start the server with --allow-origin {origin} to allow them"
                        ))
                        .into_response(),
                        None => next.run(req).await,
                    }
                }
            }))
    }
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The `Origin` of a write that is neither same-origin nor allowed (cut to 100 characters).
fn refused_origin(method: &Method, headers: &HeaderMap, allowed: &[String]) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = normalize(&String::from_utf8_lossy(origin.as_bytes()));
    if is_host(&origin, headers) || allowed.iter().any(|a| a == "*" || *a == origin) {
        return None;
    }
    Some(origin.chars().take(100).collect())
}

/// Whether `origin` (normalized) is the server's own, by the request's `Host`.
fn is_host(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase());
    host.is_some_and(|host| {
        origin == format!("http://{host}") || origin == format!("https://{host}")
    })
}

/// Whether a browser request provably comes from a page of this server: the console's
/// form posts must, wherever the console is served (`--allow-origin` does not extend to
/// them). `Sec-Fetch-Site: same-origin` is set by the browser and cannot be forged by a
/// page; without it (older browsers), an `Origin` that is this server's. A request with
/// neither is not taken as the console's.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    headers
        .get(header::ORIGIN)
        .is_some_and(|o| is_host(&normalize(&String::from_utf8_lossy(o.as_bytes())), headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("origin"));
        }
        h
    }

    #[test]
    fn cross_origin_writes_are_refused_unless_allowed() {
        let none: Vec<String> = Vec::new();
        let evil = headers(Some("https://evil.example"));
        assert_eq!(
            refused_origin(&Method::POST, &evil, &none),
            Some("https://evil.example".into())
        );
        assert_eq!(
            refused_origin(&Method::PUT, &headers(Some("null")), &none),
            Some("null".into())
        );
        assert_eq!(refused_origin(&Method::GET, &evil, &none), None);
        assert_eq!(refused_origin(&Method::POST, &headers(None), &none), None);
        assert_eq!(
            refused_origin(
                &Method::POST,
                &headers(Some("http://127.0.0.1:3000")),
                &none
            ),
            None
        );
        let allowed = vec![normalize("https://Evil.example/")];
        assert_eq!(refused_origin(&Method::POST, &evil, &allowed), None);
        assert_eq!(refused_origin(&Method::POST, &evil, &["*".into()]), None);
    }

    #[test]
    fn console_writes_need_proof_of_the_same_origin() {
        let mut fetch_same = headers(None);
        fetch_same.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&fetch_same));
        // The browser's word wins over an Origin that would pass.
        let mut cross = headers(Some("http://127.0.0.1:3000"));
        cross.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&cross));
        assert!(same_origin(&headers(Some("http://127.0.0.1:3000"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        // curl and the like: no proof at all.
        assert!(!same_origin(&headers(None)));
    }
}
