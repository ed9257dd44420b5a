//! `Idempotency-Key`: scoped to the caller, and limited to a charset that cannot spell a
//! key of another namespace (see `backend::ledger_key`).

use axum::body::Body;
use command_api::Actor;

use crate::support::{Answer, app, send};

fn place(key: &str, actor: Option<&str>) -> http::Request<Body> {
    let mut req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(r#"{"description":"two chairs"}"#))
        .expect("request");
    if let Some(actor) = actor {
        req.extensions_mut().insert(Actor(actor.to_owned()));
    }
    req
}

fn order_id(a: &Answer) -> String {
    let json: serde_json::Value = serde_json::from_str(&a.text).expect("json");
    json["order"]["orderId"]
        .as_str()
        .expect("an order id")
        .to_owned()
}

#[tokio::test]
async fn the_same_key_from_two_actors_gets_two_independent_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let mut placed = Vec::new();
    for actor in [Some("alice"), Some("bob"), None] {
        let a = send(&app, place("shared-key-1", actor)).await;
        assert_eq!(a.status, 201, "{actor:?}: {}", a.text);
        assert!(a.headers.get("idempotent-replayed").is_none(), "{actor:?}");
        placed.push(order_id(&a));
    }
    placed.sort();
    placed.dedup();
    assert_eq!(placed.len(), 3, "three orders, one per caller: {placed:?}");

    // Each caller's retry gets its own first answer.
    for actor in [Some("alice"), Some("bob"), None] {
        let again = send(&app, place("shared-key-1", actor)).await;
        assert_eq!(again.status, 201, "{}", again.text);
        assert_eq!(
            again
                .headers
                .get("idempotent-replayed")
                .map(|v| v.as_bytes()),
            Some(&b"true"[..]),
            "{actor:?}"
        );
        assert!(placed.contains(&order_id(&again)), "{actor:?}");
    }
}

#[tokio::test]
async fn a_key_outside_the_charset_is_a_400_and_records_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let long = "k".repeat(256);
    for (i, key) in [
        "handler/received/0193a0b4-7c5e-7d2a-9f1e-3b4c5d6e7f80",
        "api/anonymous/x",
        "with space",
        "a#b",
        "\"\"",
        long.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("ORD-KEY-{i}");
        let req = http::Request::post("/orders")
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(format!(
                r#"{{"orderId":"{id}","description":"two chairs"}}"#
            )))
            .expect("request");
        let a = send(&app, req).await;
        assert_eq!(a.status, 400, "{key:?}: {}", a.text);
        assert_eq!(
            a.headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let problem: serde_json::Value = serde_json::from_str(&a.text).expect("json");
        assert_eq!(
            problem["type"],
            "https://ordersource.dev/problems/invalid-idempotency-key"
        );
        assert_eq!(problem["title"], "The Idempotency-Key header is not valid");
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("A-Z, a-z, 0-9")),
            "{problem}"
        );
        let read = send(
            &app,
            http::Request::get(format!("/orders/{id}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(read.status, 404, "{key:?} recorded {id}");
    }
}

#[tokio::test]
async fn a_key_sent_as_a_quoted_string_is_the_same_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _e) = app(dir.path());
    let first = send(
        &app,
        place("\"8e03978e-40d5-43e8-bc93-6894a57f9324\"", None),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = send(&app, place("8e03978e-40d5-43e8-bc93-6894a57f9324", None)).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(order_id(&again), order_id(&first));
    assert!(again.headers.get("idempotent-replayed").is_some());
}
