//! The Lambda entrypoint's trace header, given to the router as a [`TraceHeader`]
//! extension, is recorded in the metadata of the events it causes; every write is counted
//! in the embedded metric format by command and outcome.

use axum::body::Body;
use command_api::TraceHeader;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::support::app;

const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

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

fn post(path: &str, body: &str, correlation_id: &str) -> http::Request<Body> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .header("x-correlation-id", correlation_id)
        .body(Body::from(body.to_owned()))
        .expect("request")
}

#[tokio::test]
async fn events_record_the_trace_header_the_entrypoint_gives_and_not_a_clients() {
    backend::emf::capture_in_memory();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _embedded) = app(dir.path());

    let mut traced = post(
        "/orders",
        r#"{"orderId":"ORD-TRACED","description":"d"}"#,
        "t-1",
    );
    traced
        .extensions_mut()
        .insert(TraceHeader::new(TRACE).expect("a trace header"));
    let res = app.clone().oneshot(traced).await.expect("served");
    assert_eq!(res.status(), 201);
    let events = events_of(app.clone(), "ORD-TRACED").await;
    assert_eq!(events["items"][0]["metadata"]["traceHeader"], TRACE);
    // The command's metric names the trace too.
    let traced_metrics: Vec<_> = backend::emf::captured()
        .into_iter()
        .filter(|d| d["correlationId"] == "t-1")
        .map(|d| d["traceHeader"].clone())
        .collect();
    assert_eq!(traced_metrics, [serde_json::json!(TRACE)]);

    // The router itself (orders dev) takes no trace from the client.
    let mut untraced = post(
        "/orders",
        r#"{"orderId":"ORD-UNTRACED","description":"d"}"#,
        "t-2",
    );
    untraced
        .headers_mut()
        .insert("x-amzn-trace-id", http::HeaderValue::from_static(TRACE));
    let res = app.clone().oneshot(untraced).await.expect("served");
    assert_eq!(res.status(), 201);
    let events = events_of(app, "ORD-UNTRACED").await;
    assert!(events["items"][0]["metadata"].get("traceHeader").is_none());
}

/// The `(Command, Outcome)` of each `Commands` document for this correlation id, and the
/// `Kind` of each `Duplicates` one.
fn counted(correlation_id: &str) -> (Vec<(String, String)>, Vec<String>) {
    let docs = backend::emf::captured();
    let mine = docs.iter().filter(|d| d["correlationId"] == correlation_id);
    let mut commands = Vec::new();
    let mut duplicates = Vec::new();
    for d in mine {
        if d["Commands"] == 1.0 {
            let dim = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            commands.push((dim("Command"), dim("Outcome")));
        }
        if d["Duplicates"] == 1.0 {
            duplicates.push(d["Kind"].as_str().unwrap_or_default().to_owned());
        }
    }
    (commands, duplicates)
}

fn pair(command: &str, outcome: &str) -> (String, String) {
    (command.to_owned(), outcome.to_owned())
}

#[tokio::test]
async fn each_write_is_counted_by_command_and_outcome_and_replays_as_duplicates() {
    backend::emf::capture_in_memory();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _embedded) = app(dir.path());
    let place = r#"{"orderId":"ORD-EMF","description":"d"}"#;

    let res = app
        .clone()
        .oneshot(post("/orders", place, "emf-1"))
        .await
        .expect("served");
    assert_eq!(res.status(), 201);
    assert_eq!(
        counted("emf-1"),
        (vec![pair("PlaceOrder", "Accepted")], vec![])
    );

    // The same placement again: answered with the order, and a duplicate.
    let res = app
        .clone()
        .oneshot(post("/orders", place, "emf-2"))
        .await
        .expect("served");
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        counted("emf-2"),
        (
            vec![pair("PlaceOrder", "Accepted")],
            vec!["SamePlacement".to_owned()]
        )
    );

    let start = || {
        let mut req = post("/orders/ORD-EMF/start", "", "emf-3");
        req.headers_mut().insert(
            "idempotency-key",
            http::HeaderValue::from_static("start-once"),
        );
        req
    };
    let res = app.clone().oneshot(start()).await.expect("served");
    assert_eq!(res.status(), 200);
    let res = app.clone().oneshot(start()).await.expect("served");
    assert_eq!(res.status(), 200);
    assert_eq!(
        counted("emf-3"),
        (
            vec![
                pair("StartOrder", "Accepted"),
                pair("StartOrder", "Replayed")
            ],
            vec!["IdempotencyKey".to_owned()]
        )
    );

    // Starting again without the key is an illegal transition: rejected.
    let res = app
        .clone()
        .oneshot(post("/orders/ORD-EMF/start", "", "emf-4"))
        .await
        .expect("served");
    assert_eq!(res.status(), 409);
    assert_eq!(
        counted("emf-4"),
        (vec![pair("StartOrder", "Rejected")], vec![])
    );
}
