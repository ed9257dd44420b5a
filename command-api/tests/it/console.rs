//! The console in the router: served with the API unless left out (the API Lambda without
//! `ORDERS_CONSOLE=enabled`), and where no shutdown signal is wired (the API Lambda) its
//! event stream is one `hello` with a `retry:` delay, ending at once.

use axum::body::Body;
use command_api::{App, router};

use crate::support::{self, send};

fn get(path: &str) -> http::Request<Body> {
    http::Request::get(path)
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn without_the_console_its_paths_are_the_apis_json_404() {
    let dir = tempfile::tempdir().expect("temp dir");
    let e = support::embedded(dir.path());
    let app = router(
        App::new(&e.ports(), events_schema::route_table())
            .without_pipeline()
            .without_console(),
    );
    for path in ["/", "/console", "/console/orders", "/console/events"] {
        let r = send(&app, get(path)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("application/problem+json")),
            "{path}: {:?}",
            r.headers
        );
    }
}

#[tokio::test]
async fn with_the_console_the_root_is_the_overview_and_unknown_paths_stay_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, _e) = support::app(dir.path());
    let r = send(&app, get("/")).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("<h1>Overview</h1>"), "{}", r.text);
    assert!(
        r.headers["content-security-policy"]
            .to_str()
            .is_ok_and(|c| c.contains("default-src 'self'")),
        "no external requests: {:?}",
        r.headers
    );
    let unknown = send(&app, get("/nothing/here")).await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.text.contains("no route for GET /nothing/here"),
        "{}",
        unknown.text
    );
}

#[tokio::test]
async fn in_lambda_the_event_stream_is_one_hello_with_a_retry_and_the_overview_says_what_it_cannot_show()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let e = support::embedded(dir.path());
    let app = router(App::new(&e.ports(), events_schema::route_table()).without_pipeline());
    // `send` reads the whole body: a stream that did not end would hang the test here.
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        send(&app, get("/console/events")),
    )
    .await
    .expect("the stream ends by itself");
    assert_eq!(r.status, 200);
    assert!(r.text.starts_with("event: hello\n"), "{}", r.text);
    assert!(r.text.contains("retry: 5000"), "{}", r.text);
    assert!(!r.text.contains("event: changed"), "{}", r.text);
    let overview = send(&app, get("/console")).await.text;
    assert!(overview.contains("not available in Lambda"), "{overview}");
    assert!(overview.contains("<caption>Queues</caption>"), "{overview}");
}

#[tokio::test]
async fn a_live_stream_says_hello_then_ends_when_the_shutdown_signal_flips() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let e = support::embedded(dir.path());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let app = router(App::new(&e.ports(), events_schema::route_table()).with_shutdown(stopped));
    let res = app.oneshot(get("/console/events")).await.expect("served");
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = body
        .frame()
        .await
        .expect("a first frame")
        .expect("readable")
        .into_data()
        .expect("data");
    assert!(
        String::from_utf8_lossy(&first).starts_with("event: hello\n"),
        "{first:?}"
    );
    stop.send(true).expect("signal");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        // Whatever comes before the end (a keep-alive, a change) is read past.
        while let Some(frame) = body.frame().await {
            frame.expect("readable");
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended on the shutdown signal");
}
