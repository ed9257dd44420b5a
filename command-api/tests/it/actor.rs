//! An authenticated caller, given to the router as an [`Actor`] extension (the Lambda main
//! takes it from the JWT authorizer), is recorded in the metadata of the events it causes.

use axum::body::Body;
use command_api::Actor;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::support::app;

async fn events_of(app: axum::Router, order_id: &str) -> serde_json::Value {
    let res = app
        .oneshot(
            http::Request::get(format!("/orders/{order_id}/events"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("served");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("json")
}

fn place(order_id: &str, actor: Option<&str>) -> http::Request<Body> {
    let mut req = http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"orderId":"{order_id}","description":"two chairs"}}"#
        )))
        .expect("request");
    if let Some(actor) = actor {
        req.extensions_mut().insert(Actor(actor.to_owned()));
    }
    req
}

#[tokio::test]
async fn events_record_the_authenticated_actor_and_none_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _embedded) = app(dir.path());

    let res = app
        .clone()
        .oneshot(place("ORD-ACTOR", Some("user-42")))
        .await
        .expect("served");
    assert_eq!(res.status(), 201);
    let events = events_of(app.clone(), "ORD-ACTOR").await;
    assert_eq!(events["items"][0]["metadata"]["actor"], "user-42");

    let res = app
        .clone()
        .oneshot(place("ORD-ANON", None))
        .await
        .expect("served");
    assert_eq!(res.status(), 201);
    let events = events_of(app, "ORD-ANON").await;
    assert!(events["items"][0]["metadata"].get("actor").is_none());
}

#[tokio::test]
async fn a_client_header_cannot_set_the_actor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _embedded) = app(dir.path());
    let mut req = place("ORD-FORGED", None);
    req.headers_mut()
        .insert("x-actor", http::HeaderValue::from_static("admin"));
    let res = app.clone().oneshot(req).await.expect("served");
    assert_eq!(res.status(), 201);
    let events = events_of(app, "ORD-FORGED").await;
    assert!(events["items"][0]["metadata"].get("actor").is_none());
}
