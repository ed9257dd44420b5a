//! The operator console over HTTP, without a browser (tests/browser drives it in Chromium):
//! every page is served by `orders dev`, its event stream says hello and then tells of
//! changes, actions go through the API's write path with the page's version (a stale one
//! gets "changed meanwhile" and changes nothing), console posts need same-origin proof, a
//! dead letter is listed with its error and redriven, the audit runs from the page, and
//! open event streams do not hold up a shutdown.

use std::time::{Duration, Instant};

use e2e::{
    TestApp,
    audit::{aws_prefix, bootstrap_aws},
    moto, wait_for,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// What a console page's form post sends (the browser adds `Sec-Fetch-Site`; htmx adds
/// `HX-Request`).
const FORM: [(&str, &str); 3] = [
    ("content-type", "application/x-www-form-urlencoded"),
    ("sec-fetch-site", "same-origin"),
    ("hx-request", "true"),
];

async fn console_post(app: &TestApp, path: &str, form: &str) -> e2e::Resp {
    let r = app.post_with(path, form.to_owned(), &FORM).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r
}

#[tokio::test]
async fn every_console_page_is_html_with_the_console_navigation_and_unknown_api_paths_stay_json() {
    let app = TestApp::spawn();
    app.place("C-1", "Console <script>alert(1)</script>").await;
    app.post("/orders/C-1/start", ()).await;
    app.wait_projected().await;
    for (path, heading) in [
        ("/", "<h1>Overview</h1>"),
        ("/console", "<h1>Overview</h1>"),
        ("/console/orders", "<h1>Orders</h1>"),
        ("/console/orders?status=inprocess", "<h1>Orders</h1>"),
        ("/console/orders?q=C-1", "<h1>Orders</h1>"),
        ("/console/orders/C-1", "<h1>Order C-1</h1>"),
        ("/console/dead-letters", "<h1>Dead letters</h1>"),
        ("/console/audit", "<h1>Audit</h1>"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(r.text.contains(heading), "{path}: {}", r.text);
        assert!(
            r.text.contains(r#"<nav aria-label="Console">"#),
            "{path}: {}",
            r.text
        );
        assert!(!r.text.contains("<script>alert(1)"), "{path}: unescaped");
    }
    let listed = app.get("/console/orders?status=inprocess").await.text;
    assert!(
        listed.contains(r#"<a href="/console/orders/C-1">C-1</a>"#),
        "{listed}"
    );
    let order = app.get("/console/orders/C-1").await.text;
    for text in [
        "OrderPlaced",
        "OrderStarted",
        "linked",
        ">Complete</button>",
        ">Cancel</button>",
    ] {
        assert!(order.contains(text), "{text} in {order}");
    }
    assert!(!order.contains(">Start</button>"), "not from inprocess");
    assert!(!order.contains("broken link"), "{order}");
    let at = app.get("/console/orders/C-1/at?version=1").await.text;
    assert!(at.contains("State at version 1: received"), "{at}");
    let started_at = app.events("C-1").await[1]["occurredAt"]
        .as_str()
        .expect("occurredAt")
        .to_owned();
    let then = app
        .get(&format!("/console/orders/C-1/at?at={started_at}"))
        .await
        .text;
    assert!(then.contains(": version 2, inprocess"), "{then}");

    let page = app.get("/").await.text;
    let htmx = page
        .split('"')
        .find(|s| s.starts_with("/console/static/htmx-"))
        .expect("the page loads htmx from the server");
    let js = app.get(htmx).await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("cache-control")
            .is_some_and(|c| c.contains("immutable"))
    );
    assert!(js.text.contains("htmx"), "the vendored htmx");

    app.get("/console/orders/NOPE").await;
    app.get("/no/such/route").await.expect_problem(404);
}

/// An open `GET /console/events` stream, read raw: the test client reads whole bodies.
struct EventStream {
    tcp: TcpStream,
    seen: String,
}

impl EventStream {
    async fn open(app: &TestApp) -> Self {
        let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
        let request = format!(
            "GET /console/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            app.addr
        );
        tcp.write_all(request.as_bytes()).await.expect("send");
        Self {
            tcp,
            seen: String::new(),
        }
    }

    /// Reads until `needle` has come (after what was already consumed), or panics at the
    /// deadline; returns everything read so far.
    async fn until(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.tcp.read(&mut buf)).await {
                Ok(Ok(0)) => panic!("the stream ended before {needle:?}: {}", self.seen),
                Ok(Ok(n)) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Ok(Err(e)) => panic!("reading the stream: {e}"),
                Err(_) => panic!("no {needle:?} within {within:?}: {}", self.seen),
            }
        }
        let seen = self.seen.clone();
        // What was read is consumed: the next wait looks at what comes after it.
        self.seen.clear();
        seen
    }

    /// Whether the server ends the stream within `within`.
    async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

#[tokio::test]
async fn the_event_stream_says_hello_with_a_token_and_tells_of_a_placed_order() {
    let app = TestApp::spawn();
    let mut stream = EventStream::open(&app).await;
    // The hello event: its data line, then its reconnection delay.
    let hello = stream.until("retry: ", Duration::from_secs(5)).await;
    assert!(hello.contains("content-type: text/event-stream"), "{hello}");
    let token = hello
        .split("event: hello\n")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.strip_prefix("data: ")))
        .expect("a token");
    let page = app.get("/").await.text;
    assert!(
        page.contains(&format!(r#"data-live-token="{token}""#)),
        "the page was rendered from the state the stream greeted with: {token}"
    );
    app.place("C-SSE", "live").await;
    let changed = stream
        .until("event: changed\n", Duration::from_secs(10))
        .await;
    assert!(changed.contains("event: changed"), "{changed}");
}

#[tokio::test]
async fn actions_use_the_shown_version_and_a_stale_page_gets_changed_meanwhile() {
    let app = TestApp::spawn();
    app.place("C-2", "two tabs").await;

    let empty = console_post(&app, "/console/orders/C-2/cancel", "version=1&reason=+").await;
    assert!(
        empty.text.contains("A reason is required"),
        "{}",
        empty.text
    );
    assert!(empty.text.contains(r#"role="alert""#), "{}", empty.text);
    assert_eq!(empty.header("hx-retarget"), Some("#action-result"));

    let started = console_post(&app, "/console/orders/C-2/start", "version=1").await;
    assert!(
        started.text.contains(r#"<div id="order-live">"#),
        "{}",
        started.text
    );
    assert!(
        started.text.contains(">Complete</button>"),
        "{}",
        started.text
    );
    let order = app.order("C-2").await;
    assert_eq!(
        (order["status"].as_str(), order["version"].as_u64()),
        (Some("inprocess"), Some(2))
    );

    // The second tab still shows version 1.
    let stale = console_post(&app, "/console/orders/C-2/cancel", "version=1&reason=twice").await;
    assert!(
        stale
            .text
            .contains("changed meanwhile (now version 2, inprocess)"),
        "{}",
        stale.text
    );
    let order = app.order("C-2").await;
    assert_eq!(
        (order["status"].as_str(), order["version"].as_u64()),
        (Some("inprocess"), Some(2))
    );

    // Without JavaScript the form post gets a whole page saying so, with the way back.
    let plain = app
        .post_with(
            "/console/orders/C-2/start",
            "version=1",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.text);
    assert!(plain.text.contains("<h1>Not done</h1>"), "{}", plain.text);
    assert!(plain.text.contains("changed meanwhile"), "{}", plain.text);
    assert!(
        plain
            .text
            .contains(r#"<a href="/console/orders/C-2">Back to order C-2</a>"#),
        "{}",
        plain.text
    );

    // A page of another site cannot make the browser act.
    let cross = app
        .post_with(
            "/console/orders/C-2/complete",
            "version=2",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.text);
    let no_proof = app
        .post_with(
            "/console/orders/C-2/complete",
            "version=2",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(no_proof.status, 403, "{}", no_proof.text);
    assert_eq!(app.order("C-2").await["status"], "inprocess");

    let canceled = console_post(&app, "/console/orders/C-2/cancel", "version=2&reason=twice").await;
    assert!(
        canceled.text.contains("the order is now canceled"),
        "{}",
        canceled.text
    );
    let events = app.events("C-2").await;
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2]["data"]["reasonForCancellation"], "twice",
        "{:?}",
        events[2]
    );
}

/// The dead letters page once it lists `order_id`'s message.
async fn dead_letters_page_listing(app: &TestApp, order_id: &str) -> String {
    let link = format!(r#"<a href="/console/orders/{order_id}">{order_id}</a>"#);
    wait_for(
        Duration::from_secs(60),
        "the dead letter on the page",
        || async {
            let page = app.get("/console/dead-letters").await.text;
            page.contains(&link).then_some(page)
        },
    )
    .await
}

/// The id in the first redrive form of a dead letters page.
fn first_message_id(page: &str) -> &str {
    page.split(r#"name="message" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a redrive form for the message")
}

/// Redrives one dead letter of order-received from the page; the queue's section as it
/// answers.
async fn redrive_from_the_page(app: &TestApp, message: &str) -> String {
    console_post(
        app,
        "/console/dead-letters/order-received/redrive",
        &format!("message={message}"),
    )
    .await
    .text
}

#[tokio::test]
async fn a_poison_message_is_listed_with_its_error_and_redriven_from_the_page() {
    let app = TestApp::spawn_with(
        &[
            "--visibility-timeout",
            "1",
            "--handler-fail-marker",
            "POISON",
        ],
        &[],
    );
    app.place("C-DLQ", "POISON for the console").await;
    let page = dead_letters_page_listing(&app, "C-DLQ").await;
    assert!(
        page.contains("failure marker"),
        "the handler's error: {page}"
    );
    assert!(
        page.contains(r#"<td class="num">5</td>"#),
        "received 5 times: {page}"
    );
    let message = first_message_id(&page);
    // The live refresh asks with the count it shows: nothing new, nothing sent.
    let same = app
        .get("/console/dead-letters/order-received/messages?shown=1")
        .await;
    assert_eq!(same.status, 204, "{}", same.text);
    let stale = app
        .get("/console/dead-letters/order-received/messages?shown=0")
        .await;
    assert_eq!(stale.status, 200);
    assert!(stale.text.contains(message), "{}", stale.text);
    let moved = redrive_from_the_page(&app, message).await;
    assert!(moved.contains("Moved 1 message back"), "{moved}");
    assert!(!moved.contains(message), "{moved}");
    let gone = redrive_from_the_page(&app, message).await;
    assert!(
        gone.contains("no longer in the dead-letter queue"),
        "{gone}"
    );
}

#[tokio::test]
async fn the_audit_runs_from_the_page_for_one_order_or_all() {
    let app = TestApp::spawn();
    app.place("C-A1", "audited").await;
    app.post("/orders/C-A1/start", ()).await;
    app.place("C-A2", "audited too").await;
    app.wait_projected().await;
    let one = console_post(&app, "/console/audit", "scope=order&order=C-A1").await;
    assert!(
        one.text.contains("OK: 1 order, 2 events checked"),
        "{}",
        one.text
    );
    let all = console_post(&app, "/console/audit", "scope=all").await;
    assert!(
        all.text.contains("OK: 2 orders, 3 events checked"),
        "{}",
        all.text
    );
    let unknown = console_post(&app, "/console/audit", "scope=order&order=C-NONE").await;
    assert!(
        unknown.text.contains("no events and no read model row"),
        "{}",
        unknown.text
    );
}

#[tokio::test]
async fn open_event_streams_end_on_sigterm_and_the_server_exits_promptly() {
    let mut app = TestApp::spawn();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = EventStream::open(&app).await;
        s.until("event: hello\n", Duration::from_secs(5)).await;
        streams.push(s);
    }
    let started = Instant::now();
    let status = app.stop_graceful().await;
    let took = started.elapsed();
    assert!(status.success(), "exit status {status}");
    // The drain deadline is 5 s: streams that held the connections open would reach it.
    assert!(took < Duration::from_secs(3), "took {took:?} to stop");
    for s in &mut streams {
        assert!(
            s.ends_within(Duration::from_secs(1)).await,
            "the stream ended"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_aws_backend_the_console_counts_orders_checks_the_chain_redrives_and_audits() {
    let endpoint = moto::endpoint();
    let env = moto::env(&aws_prefix());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bootstrap_aws(&env);
    let app = TestApp::spawn_with(
        &[
            "--backend",
            "aws",
            "--endpoint",
            endpoint,
            "--visibility-timeout",
            "1",
            "--handler-fail-marker",
            "POISON",
        ],
        &env,
    );
    app.place("CA-1", "on DynamoDB").await;
    console_post(&app, "/console/orders/CA-1/start", "version=1").await;
    app.place("CA-P", "POISON on SQS").await;

    // Counted by the status index: one received (the poison order), one in process.
    wait_for(
        Duration::from_secs(30),
        "the counts on the overview",
        || async {
            let page = app.get("/console").await.text;
            (page.contains(r#"status=received">received</a></th><td class="num">1</td>"#)
                && page.contains(r#"status=inprocess">inprocess</a></th><td class="num">1</td>"#))
            .then_some(())
        },
    )
    .await;
    let order = app.get("/console/orders/CA-1").await.text;
    assert_eq!(order.matches("✓ linked").count(), 2, "{order}");
    let listed = app.get("/console/orders").await.text;
    let (newest, oldest) = (listed.find(">CA-P</a>"), listed.find(">CA-1</a>"));
    assert!(
        newest.is_some() && newest < oldest,
        "newest first: {listed}"
    );

    let page = dead_letters_page_listing(&app, "CA-P").await;
    let moved = redrive_from_the_page(&app, first_message_id(&page)).await;
    assert!(moved.contains("Moved 1 message back"), "{moved}");

    let all = console_post(&app, "/console/audit", "scope=all").await;
    assert!(
        all.text.contains("OK: 2 orders, 3 events checked"),
        "{}",
        all.text
    );
}

/// The API Lambda as API Gateway invokes it (a Runtime API emulator, moto behind it): the
/// console only with `ORDERS_CONSOLE=enabled`, its stream one `hello` with a retry delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lambda_serves_the_console_only_when_the_deployment_turns_it_on() {
    use crate::lambda_edge::{api_function_with, deployment, http_event};

    let aws = deployment().await;
    let mut off = api_function_with(&aws, &[]).await;
    let answer = off
        .invoke(http_event("GET", "/console", &[], None))
        .await
        .response();
    assert_eq!(answer["statusCode"], 404, "{answer}");

    let prefix = aws.config.queue_prefix.clone();
    let mut on = api_function_with(
        &aws,
        &[
            ("ORDERS_CONSOLE", "enabled".to_owned()),
            ("ORDERS_QUEUE_PREFIX", prefix),
        ],
    )
    .await;
    let overview = on
        .invoke(http_event("GET", "/", &[], None))
        .await
        .response();
    assert_eq!(overview["statusCode"], 200, "{overview}");
    let html = overview["body"].as_str().unwrap_or_default();
    assert!(html.contains("<h1>Overview</h1>"), "{html}");
    assert!(html.contains("not available in Lambda"), "{html}");
    // The queues are read through the deployment's names (prefix included).
    assert!(
        html.contains(r#"<th scope="row">order-received</th><td class="num">0</td>"#),
        "{html}"
    );
    let stream = on
        .invoke(http_event("GET", "/console/events", &[], None))
        .await
        .response();
    assert_eq!(stream["statusCode"], 200, "{stream}");
    let body = stream["body"].as_str().unwrap_or_default();
    assert!(body.starts_with("event: hello\n"), "{body}");
    assert!(body.contains("retry: 5000"), "{body}");
}
