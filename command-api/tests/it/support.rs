//! What the suites share: the router on an embedded backend in a temporary directory.

use axum::body::Body;
use backend::{Ports, embedded::Embedded};
use command_api::{App, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The whole API on an embedded backend in `dir`; keep the `Embedded` alive meanwhile.
pub fn app(dir: &std::path::Path) -> (axum::Router, Embedded) {
    let e = embedded(dir);
    (app_on(&e.ports()), e)
}

pub fn embedded(dir: &std::path::Path) -> Embedded {
    Embedded::open(dir, events_schema::route_table()).expect("opens")
}

/// The whole API on `ports` (an embedded backend's, some of them wrapped).
pub fn app_on(ports: &Ports) -> axum::Router {
    router(App::new(ports, events_schema::route_table()))
}

/// A response's status, headers and body text.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub text: String,
}

pub async fn send(app: &axum::Router, req: http::Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.expect("served");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
    }
}
