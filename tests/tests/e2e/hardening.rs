//! The local server is not an open door: a web page's `text/plain` or form POST is refused
//! (415), cross-origin browser writes are refused unless allowed (403), slow clients are
//! cut off by the header-read and request timeouts, and connections are limited. Clients
//! that send no body (`curl -X POST .../start`) or no `Origin` are unaffected.

use std::time::Duration;

use e2e::TestApp;
use http::Method;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[tokio::test]
async fn a_write_body_that_is_not_declared_json_is_415_and_a_bodiless_post_needs_no_content_type() {
    let app = TestApp::spawn();
    let body = json!({"orderId": "H-1", "description": "d"}).to_string();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        app.post_with("/orders", body.clone(), &[("content-type", ct)])
            .await
            .expect_problem(415);
    }
    app.get("/orders/H-1").await.expect_problem(404);
    app.post("/orders", json!({"orderId": "H-1", "description": "d"}))
        .await
        .expect_write(201);
    // As `curl -X POST localhost:3000/orders/H-1/start` sends it: no body, no content type.
    let r = app.post("/orders/H-1/start", ()).await;
    r.expect_write(200);
}

#[tokio::test]
async fn cross_origin_browser_writes_are_403_unless_the_origin_is_allowed() {
    let app = TestApp::spawn();
    let evil = [("origin", "https://evil.example")];
    app.post_with(
        "/orders",
        json!({"orderId": "H-O", "description": "d"}),
        &evil,
    )
    .await
    .expect_problem(403);
    app.get("/orders/H-O").await.expect_problem(404);
    app.place("H-O", "d").await;
    // Reads are not writes; the server's own origin is not cross-origin.
    app.get_with("/orders/H-O", &evil).await.expect_status(200);
    let own = format!("http://{}", app.addr);
    app.send(
        Method::POST,
        "/orders/H-O/start",
        (),
        &[("origin", own.as_str())],
    )
    .await
    .expect_write(200);

    let allowing = TestApp::spawn_with(&["--allow-origin", "https://evil.example"], &[]);
    allowing
        .post_with(
            "/orders",
            json!({"orderId": "H-O", "description": "d"}),
            &evil,
        )
        .await
        .expect_write(201);
    allowing
        .post_with(
            "/orders/H-O/start",
            (),
            &[("origin", "https://other.example")],
        )
        .await
        .expect_problem(403);
}

/// Reads what the server sends until it closes the connection or `within` passes; `None`
/// if it is still open then.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_disconnected() {
    let app = TestApp::spawn_with(&["--header-read-timeout", "1"], &[]);
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial headers");
    let closed = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the connection is still open 5 s after a 1 s header timeout"
    );
    app.get("/health").await.expect_status(200);
}

#[tokio::test]
async fn a_request_whose_body_never_finishes_is_answered_at_the_request_timeout() {
    let app = TestApp::spawn_with(&["--request-timeout", "1"], &[]);
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    tcp.write_all(
        b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"desc",
    )
    .await
    .expect("a partial body");
    let started = std::time::Instant::now();
    let answer = read_until_closed(&mut tcp, Duration::from_secs(6)).await;
    let answer = answer.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(
        answer.contains("may or may not have been applied"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let app = TestApp::spawn_with(
        &["--max-connections", "2", "--header-read-timeout", "30"],
        &[],
    );
    let first = TcpStream::connect(app.addr).await.expect("connect");
    let second = TcpStream::connect(app.addr).await.expect("connect");
    // Both slots are held by idle connections: a third client is not served...
    let waiting = tokio::spawn({
        let client = app.client;
        async move { client.get("/health").await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past a limit of 2"
    );
    // ...until one of them closes.
    drop(first);
    let r = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot is free")
        .expect("the task");
    r.expect_status(200);
    drop(second);
}
