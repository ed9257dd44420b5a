//! Bad input and abuse, through the router: bodies that are not declared JSON, repeated
//! keys, unknown fields echoed at length, unbounded dates, `.` ids, invisible characters,
//! events too large to publish, and cross-origin browser writes.

use std::time::Duration;

use axum::body::Body;
use command_api::{Actor, LocalGuard};
use serde_json::Value;

use crate::support::{Answer, app, send};

fn post(path: &str, content_type: Option<&str>, body: &str) -> http::Request<Body> {
    let mut b = http::Request::post(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Body::from(body.to_owned())).expect("request")
}

fn json(a: &Answer) -> Value {
    serde_json::from_str(&a.text).expect("a JSON body")
}

async fn place(app: &axum::Router, id: &str) {
    let a = send(
        app,
        post(
            "/orders",
            Some("application/json"),
            &format!(r#"{{"orderId":"{id}","description":"d"}}"#),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
}

#[tokio::test]
async fn a_write_body_without_content_type_application_json_is_415_and_an_empty_body_needs_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let body = r#"{"orderId":"ORD-CT","description":"d"}"#;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let a = send(&app, post("/orders", ct, body)).await;
        assert_eq!(a.status, 415, "{ct:?}: {}", a.text);
        assert_eq!(
            a.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        assert!(
            json(&a)["detail"]
                .as_str()
                .unwrap_or("")
                .contains("application/json")
        );
    }
    let a = send(
        &app,
        post("/orders", Some("Application/JSON; charset=utf-8"), body),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    // `curl -X POST .../start`: no body, no content type.
    let a = send(&app, post("/orders/ORD-CT/start", None, "")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(
        &app,
        http::Request::put("/orders/ORD-CT")
            .header("content-type", "text/plain")
            .body(Body::from(r#"{"status":"completed"}"#))
            .expect("request"),
    )
    .await;
    assert_eq!(a.status, 415, "{}", a.text);
}

#[tokio::test]
async fn duplicate_json_keys_are_400_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let a = send(
        &app,
        post(
            "/orders",
            Some("application/json"),
            r#"{"orderId":"ORD-DUP","description":"a","description":"b"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text);
    let body = json(&a);
    assert_eq!(body["errors"][0]["field"], "description");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Duplicate key"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_field_names_are_echoed_once_and_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let long = "x".repeat(10_000);
    let a = send(
        &app,
        post(
            "/orders",
            Some("application/json"),
            &format!(r#"{{"description":"a","{long}":1}}"#),
        ),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        a.text.len() < 1_000,
        "the error echoes {} bytes",
        a.text.len()
    );
    let body = json(&a);
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1));
    let field = body["errors"][0]["field"].as_str().unwrap_or("");
    assert!(field.starts_with("xxxx") && field.len() <= 67, "{field}");
}

#[tokio::test]
async fn dates_with_unbounded_fractions_are_refused_and_others_stored_to_the_microsecond() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let digits = "9".repeat(100_000);
    for field in ["deliveryDate", "registerDate"] {
        let a = send(
            &app,
            post(
                "/orders",
                Some("application/json"),
                &format!(r#"{{"description":"a","{field}":"2026-04-10T08:00:00.{digits}Z"}}"#),
            ),
        )
        .await;
        assert_eq!(a.status, 400, "{field}");
        assert!(
            a.text.len() < 1_000,
            "{field}: echoes {} bytes",
            a.text.len()
        );
        assert!(
            a.text.contains("more than 9 fractional-second digits"),
            "{}",
            a.text
        );
    }
    let a = send(
        &app,
        post(
            "/orders",
            Some("application/json"),
            r#"{"orderId":"ORD-DATE","description":"a","deliveryDate":"2026-04-10t08:00:00.123456789+02:00","registerDate":"2026-01-01T00:00:00.987654321Z"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let order = &json(&a)["order"];
    assert_eq!(order["deliveryDate"], "2026-04-10T08:00:00.123456+02:00");
    assert_eq!(order["registerDate"], "2026-01-01T00:00:00.987654Z");
    let a = send(
        &app,
        http::Request::get(format!(
            "/orders/ORD-DATE?at=2030-01-01T00:00:00.{}Z",
            &digits[..2_000]
        ))
        .body(Body::empty())
        .expect("request"),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        a.text.len() < 1_000 && a.text.contains("fractional-second"),
        "{}",
        &a.text[..200.min(a.text.len())]
    );
}

#[tokio::test]
async fn order_ids_dot_and_dot_dot_are_400() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    for id in [".", ".."] {
        let a = send(
            &app,
            post(
                "/orders",
                Some("application/json"),
                &format!(r#"{{"orderId":"{id}","description":"a"}}"#),
            ),
        )
        .await;
        assert_eq!(a.status, 400, "{id}: {}", a.text);
        assert!(a.text.contains("path segment"), "{}", a.text);
    }
    let a = send(
        &app,
        http::Request::get("/orders/%2E%2E")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text);
}

#[tokio::test]
async fn bidi_overrides_and_zero_width_characters_in_text_are_400() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    for text in [
        "abc\u{202E}cba",
        "in\u{200B}visible",
        "\u{FEFF}bom",
        "iso\u{2066}late",
    ] {
        let body = serde_json::json!({"description": text}).to_string();
        let a = send(&app, post("/orders", Some("application/json"), &body)).await;
        assert_eq!(a.status, 400, "{text:?}: {}", a.text);
        assert!(a.text.contains("zero-width"), "{}", a.text);
    }
}

#[tokio::test]
async fn an_event_too_large_to_publish_is_422_naming_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let mut req = post(
        "/orders",
        Some("application/json"),
        r#"{"orderId":"ORD-BIG","description":"a"}"#,
    );
    req.extensions_mut().insert(Actor("a".repeat(70_000)));
    let a = send(&app, req).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(a.text.contains("65536 byte limit"), "{}", a.text);
    let a = send(
        &app,
        http::Request::get("/orders/ORD-BIG")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(a.status, 404, "nothing was recorded");
}

fn guarded(app: axum::Router, allow: &[&str]) -> axum::Router {
    LocalGuard {
        allow_origins: allow.iter().map(|s| (*s).to_owned()).collect(),
        request_timeout: Duration::from_secs(5),
    }
    .wrap(app)
}

#[tokio::test]
async fn cross_origin_browser_writes_are_403_unless_the_origin_is_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let closed = guarded(app.clone(), &[]);
    let from = |origin: Option<&str>, id: &str| {
        let mut b = http::Request::post("/orders")
            .header("host", "127.0.0.1:3000")
            .header("content-type", "application/json");
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(Body::from(format!(
            r#"{{"orderId":"{id}","description":"d"}}"#
        )))
        .expect("request")
    };
    let a = send(&closed, from(Some("https://evil.example"), "ORD-O1")).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(a.text.contains("--allow-origin"), "{}", a.text);
    assert_eq!(send(&closed, from(None, "ORD-O2")).await.status, 201);
    assert_eq!(
        send(&closed, from(Some("http://127.0.0.1:3000"), "ORD-O3"))
            .await
            .status,
        201
    );
    let reads = send(
        &closed,
        http::Request::get("/orders/ORD-O2")
            .header("origin", "https://evil.example")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reads.status, 200);
    let open = guarded(app, &["https://evil.example"]);
    assert_eq!(
        send(&open, from(Some("https://evil.example"), "ORD-O4"))
            .await
            .status,
        201
    );
    place(&open, "ORD-O5").await;
}
