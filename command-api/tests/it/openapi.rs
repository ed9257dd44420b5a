//! `/openapi.json` matches the routes: every documented operation is served, and every
//! operation the brief names is documented.

use std::collections::BTreeSet;

use axum::body::Body;
use command_api::openapi;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::support::app;

fn documented() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(openapi()).expect("json");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn every_endpoint_of_the_brief_is_documented() {
    let expected: BTreeSet<(String, String)> = [
        ("POST", "/orders"),
        ("GET", "/orders"),
        ("GET", "/orders/{orderId}"),
        ("PUT", "/orders/{orderId}"),
        ("POST", "/orders/{orderId}/start"),
        ("POST", "/orders/{orderId}/complete"),
        ("POST", "/orders/{orderId}/cancel"),
        ("GET", "/orders/{orderId}/events"),
        ("GET", "/orders/{orderId}/documents"),
        ("GET", "/orders/{orderId}/documents/{name}"),
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented(), expected);
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _e) = app(dir.path());
    for (method, path) in documented() {
        let uri = path
            .replace("{orderId}", "ORD-X")
            .replace("{name}", "x.json");
        let req = axum::http::Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .body(Body::from("{}"))
            .expect("request");
        let res = router.clone().oneshot(req).await.expect("response");
        let status = res.status();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert_ne!(status, 405, "{method} {uri} is documented but not routed");
        assert!(
            !text.contains("no route for"),
            "{method} {uri} is documented but not routed: {text}"
        );
        assert!(status.as_u16() < 500, "{method} {uri}: {status} {text}");
    }
}

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _e) = app(dir.path());
    let req = axum::http::Request::get("/openapi.json")
        .body(Body::empty())
        .expect("request");
    let res = router.oneshot(req).await.expect("response");
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let served: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(served, serde_json::to_value(openapi()).expect("json"));
}
