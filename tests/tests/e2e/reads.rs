//! Reads: time travel on the event history, the eventually consistent list from the read
//! model with cursor paging, `/health` and `/openapi.json`.

use std::collections::HashSet;

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use e2e::{PROJECTION_TIMEOUT, TestApp, spawn_app, wait_until};
use serde_json::{Value, json};

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|o| o["orderId"].as_str().unwrap().to_owned())
        .collect()
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An order with four versions: placed, revised, started, completed.
async fn order_with_history(app: &TestApp, id: &str) -> Vec<Value> {
    app.post(
        "/orders",
        json!({"orderId": id, "description": "v1 text", "deliveryDate": "2026-05-01"}),
    )
    .await
    .expect_write(201);
    app.put(&format!("/orders/{id}"), json!({"description": "v2 text"}))
        .await
        .expect_write(200);
    app.post(&format!("/orders/{id}/start"), ())
        .await
        .expect_write(200);
    app.post(&format!("/orders/{id}/complete"), ())
        .await
        .expect_write(200);
    app.events(id).await
}

#[tokio::test]
async fn get_with_version_returns_the_state_as_of_that_version() {
    let app = spawn_app();
    order_with_history(&app, "R-v").await;
    let latest = app.order("R-v").await;
    let expected = [
        (1, "received", "v1 text"),
        (2, "received", "v2 text"),
        (3, "inprocess", "v2 text"),
        (4, "completed", "v2 text"),
    ];
    for (version, status, description) in expected {
        let r = app
            .get(&format!("/orders/R-v?version={version}"))
            .await
            .expect_status(200);
        assert_eq!(r.json["version"], version);
        assert_eq!(r.json["status"], status, "version {version}");
        assert_eq!(r.json["description"], description, "version {version}");
        assert_eq!(r.json["orderId"], "R-v");
        assert_eq!(r.header("etag"), Some(format!("\"{version}\"").as_str()));
    }
    assert_eq!(app.get("/orders/R-v?version=4").await.json, latest);
    let r = app.get("/orders/R-v?version=5").await;
    r.expect_problem(404);
    assert!(
        r.detail().contains('4'),
        "the 404 should tell the latest version: {}",
        r.text
    );
    app.get("/orders/R-v?version=18446744073709551615")
        .await
        .expect_problem(404);
    app.get("/orders/R-none?version=1")
        .await
        .expect_problem(404);
}

#[tokio::test]
async fn get_with_at_returns_the_state_as_of_that_time() {
    let app = spawn_app();
    let events = order_with_history(&app, "R-at").await;
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| instant(&e["occurredAt"])).collect();
    for (i, t) in times.iter().enumerate() {
        // At the very instant of an event, that event has happened.
        let r = app
            .get(&format!("/orders/R-at?at={}", rfc3339(*t)))
            .await
            .expect_status(200);
        let version = r.json["version"].as_u64().unwrap();
        assert!(
            version as usize > i,
            "at event {i}'s time: version {version}"
        );
        assert_eq!(
            r.json,
            app.get(&format!("/orders/R-at?version={version}"))
                .await
                .json
        );
        // Just before it, it has not.
        let before = *t - ChronoDuration::microseconds(1);
        let r = app
            .get(&format!("/orders/R-at?at={}", rfc3339(before)))
            .await;
        if i == 0 {
            r.expect_problem(404);
        } else {
            let v = r.expect_status(200).json["version"].as_u64().unwrap();
            assert!((v as usize) < i + 1, "just before event {i}: version {v}");
        }
    }
    // Long after: the latest state. Long before: not there yet.
    let r = app
        .get("/orders/R-at?at=2999-01-01T00:00:00Z")
        .await
        .expect_status(200);
    assert_eq!(r.json, app.order("R-at").await);
    let r = app.get("/orders/R-at?at=2000-01-01T00:00:00Z").await;
    r.expect_problem(404);
    // The same instant written with an offset.
    let t1 = times[0].with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap());
    let with_offset = t1
        .to_rfc3339_opts(SecondsFormat::Micros, false)
        .replace('+', "%2B");
    let r = app
        .get(&format!("/orders/R-at?at={with_offset}"))
        .await
        .expect_status(200);
    assert_eq!(r.json["version"], 1);
}

#[tokio::test]
async fn at_before_creation_is_404_even_with_an_older_register_date() {
    let app = spawn_app();
    // The client says the order was registered in 2025; it entered this service now.
    let placed = app
        .post("/orders", json!({"orderId": "R-old", "description": "old", "registerDate": "2025-01-31T08:00:00Z"}))
        .await
        .expect_write(201);
    let created = instant(&placed["createdAt"]);
    let r = app.get("/orders/R-old?at=2025-06-01T00:00:00Z").await;
    r.expect_problem(404);
    let r = app
        .get(&format!("/orders/R-old?at={}", rfc3339(created)))
        .await
        .expect_status(200);
    assert_eq!(r.json, placed);
}

#[tokio::test]
async fn version_and_at_together_are_400() {
    let app = spawn_app();
    app.place("R-both", "both").await;
    let r = app
        .get("/orders/R-both?version=1&at=2999-01-01T00:00:00Z")
        .await;
    r.expect_problem(400);
    let r = app
        .get("/orders/R-both?at=2999-01-01T00:00:00Z&version=1")
        .await;
    r.expect_problem(400);
}

/// Places `n` orders `{prefix}-{i}` in order.
async fn place_many(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i:02}");
        app.place(&id, &format!("order {i}")).await;
        out.push(id);
    }
    out
}

#[tokio::test]
async fn paging_by_status_sees_every_order_exactly_once() {
    let app = spawn_app();
    let received = place_many(&app, "P-rcv", 7).await;
    let started = place_many(&app, "P-run", 3).await;
    for id in &started {
        app.post(&format!("/orders/{id}/start"), ())
            .await
            .expect_write(200);
    }
    let canceled = place_many(&app, "P-cnl", 2).await;
    for id in &canceled {
        app.post(
            &format!("/orders/{id}/cancel"),
            json!({"reasonForCancellation": "r"}),
        )
        .await
        .expect_write(200);
    }
    app.wait_projected().await;

    // Page by page, by hand, to check the page sizes and the last cursor.
    let mut seen = Vec::new();
    let mut path = "/orders?status=received&limit=2".to_string();
    let mut pages = 0;
    loop {
        let r = app.get(&path).await.expect_status(200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let items = r.json["items"].as_array().unwrap();
        assert!(items.len() <= 2, "limit=2 returned {}", items.len());
        pages += 1;
        seen.extend(ids(items));
        match r.json["nextCursor"].as_str() {
            Some(c) => path = format!("/orders?status=received&limit=2&cursor={c}"),
            None => {
                assert!(
                    r.json.get("nextCursor").is_some(),
                    "nextCursor must be present (null) on the last page"
                );
                break;
            }
        }
        assert!(pages < 20, "paging does not end");
    }
    assert_eq!(
        seen, received,
        "each received order once, in creation order"
    );
    assert!(
        (4..=5).contains(&pages),
        "7 items at 2 per page: {pages} pages"
    );

    assert_eq!(
        ids(&app.list_all("status=inprocess&limit=2").await),
        started
    );
    assert_eq!(
        ids(&app.list_all("status=canceled&limit=1").await),
        canceled
    );
    assert!(app.list_all("status=completed").await.is_empty());
    let all = ids(&app.list_all("limit=5").await);
    let expected: Vec<String> = received
        .iter()
        .chain(&started)
        .chain(&canceled)
        .cloned()
        .collect();
    assert_eq!(all, expected);
    assert_eq!(ids(&app.list_all("").await), expected);
}

#[tokio::test]
async fn list_default_limit_is_20_and_items_equal_the_orders() {
    let app = spawn_app();
    let placed = place_many(&app, "P-def", 23).await;
    app.post("/orders/P-def-03/start", ())
        .await
        .expect_write(200);
    app.put("/orders/P-def-04", json!({"description": "revised"}))
        .await
        .expect_write(200);
    app.wait_projected().await;
    let r = app.get("/orders").await.expect_status(200);
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(r.json["nextCursor"].is_string());
    let r100 = app.get("/orders?limit=100").await.expect_status(200);
    assert_eq!(ids(r100.json["items"].as_array().unwrap()), placed);
    assert!(r100.json["nextCursor"].is_null());
    // The read model holds the same order objects as the strongly consistent read.
    for item in r100.json["items"].as_array().unwrap() {
        let id = item["orderId"].as_str().unwrap();
        assert_eq!(item, &app.order(id).await, "read model vs events for {id}");
    }
}

#[tokio::test]
async fn paging_while_orders_change_never_repeats_an_order() {
    let app = spawn_app();
    let first = place_many(&app, "P-chg", 6).await;
    app.wait_projected().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut round = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/orders?status=received&limit=2&cursor={c}"),
            None => "/orders?status=received&limit=2".into(),
        };
        let r = app.get(&path).await.expect_status(200);
        seen.extend(ids(r.json["items"].as_array().unwrap()));
        // Between pages: an order already seen moves on, and a new one arrives.
        if round < 2 {
            app.post(&format!("/orders/{}/start", seen[0]), ()).await;
            app.place(&format!("P-new-{round}"), "late").await;
            app.wait_projected().await;
        }
        round += 1;
        match r.json["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(round < 20);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "an order appeared twice: {seen:?}"
    );
    for id in &first[1..] {
        assert!(
            seen.contains(id),
            "{id} stayed received but was skipped: {seen:?}"
        );
    }
    for late in ["P-new-0", "P-new-1"] {
        assert!(
            seen.contains(&late.to_string()),
            "{late} was created after the cursor but not listed: {seen:?}"
        );
    }
}

#[tokio::test]
async fn the_read_model_follows_status_changes() {
    let app = spawn_app();
    app.place("P-mv", "moving").await;
    let in_status = |status: &'static str| {
        let app = &app;
        async move {
            let r = app
                .get(&format!("/orders?status={status}&limit=100"))
                .await
                .expect_status(200);
            ids(r.json["items"].as_array().unwrap()).contains(&"P-mv".to_string())
        }
    };
    wait_until(PROJECTION_TIMEOUT, "P-mv listed as received", || {
        in_status("received")
    })
    .await;
    app.post("/orders/P-mv/start", ()).await.expect_write(200);
    wait_until(PROJECTION_TIMEOUT, "P-mv listed as inprocess", || {
        in_status("inprocess")
    })
    .await;
    assert!(
        !in_status("received").await,
        "P-mv still listed as received"
    );
    app.post("/orders/P-mv/complete", ())
        .await
        .expect_write(200);
    wait_until(PROJECTION_TIMEOUT, "P-mv listed as completed", || {
        in_status("completed")
    })
    .await;
    assert!(!in_status("inprocess").await);
    app.wait_projected().await;
    let listed = app.list_all("status=completed").await;
    assert_eq!(listed, vec![app.order("P-mv").await]);
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let app = spawn_app();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("limit=2.5", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=%00%01", "cursor"),
        ("status=shipped", "status"),
        ("status=", "status"),
    ] {
        let r = app.get(&format!("/orders?{query}")).await;
        r.expect_field_error(400, field);
    }
    app.get("/orders?limit=1").await.expect_status(200);
    app.get("/orders?limit=100").await.expect_status(200);
}

#[tokio::test]
async fn health_reports_ok_and_the_projector_lag() {
    let app = spawn_app();
    let r = app.get("/health").await.expect_status(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json["status"], "ok");
    assert!(r.json["projectorLag"].is_u64(), "{}", r.text);
    app.place("H-1", "lag").await;
    app.wait_projected().await;
}

const SERVED: [(&str, &[&str]); 8] = [
    ("/orders", &["get", "post"]),
    ("/orders/{orderId}", &["get", "put"]),
    ("/orders/{orderId}/start", &["post"]),
    ("/orders/{orderId}/complete", &["post"]),
    ("/orders/{orderId}/cancel", &["post"]),
    ("/orders/{orderId}/events", &["get"]),
    ("/health", &["get"]),
    ("/openapi.json", &["get"]),
];

#[tokio::test]
async fn openapi_document_is_json_and_documents_every_served_path() {
    let app = spawn_app();
    let r = app.get("/openapi.json").await.expect_status(200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    let doc = &r.json;
    assert!(
        doc.is_object(),
        "not JSON: {}",
        &r.text[..r.text.len().min(200)]
    );
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "openapi version"
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in SERVED {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in methods {
            let op = item
                .get(*m)
                .unwrap_or_else(|| panic!("{m} {path} is not documented"));
            assert!(
                op["responses"].is_object(),
                "{m} {path} documents no responses"
            );
        }
    }
    // Every documented operation is really served (no "no route" 404, no 405).
    app.place("O-1", "openapi").await;
    for (path, item) in paths {
        let concrete = path.replace("{orderId}", "O-1");
        for method in item.as_object().unwrap().keys() {
            let Ok(m) = method.to_uppercase().parse::<http::Method>() else {
                continue;
            };
            if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m.as_str()) {
                continue;
            }
            let r = app.send(m.clone(), &concrete, json!({}), &[]).await;
            assert!(
                r.status != 405,
                "{m} {path} is documented but not allowed: {}",
                r.text
            );
            assert!(
                !(r.status == 404 && r.detail().starts_with("no route")),
                "{m} {path} is documented but not routed: {}",
                r.text
            );
            assert!(r.status < 500, "{m} {concrete}: {} {}", r.status, r.text);
        }
    }
    // Problem documents are described.
    let text = &r.text;
    assert!(text.contains("application/problem+json"));
}

/// Places `id` and revises it until it has `versions` events.
async fn revised_order(app: &TestApp, id: &str, versions: u64) {
    app.post("/orders", json!({"orderId": id, "description": "v1"}))
        .await
        .expect_write(201);
    for v in 2..=versions {
        app.put(
            &format!("/orders/{id}"),
            json!({"description": format!("v{v}")}),
        )
        .await
        .expect_write(200);
    }
}

#[tokio::test]
async fn events_are_paged_with_limit_and_next_cursor_each_once_in_version_order() {
    let app = spawn_app();
    revised_order(&app, "E-pages", 250).await;
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut path = "/orders/E-pages/events?limit=100".to_owned();
    loop {
        let r = app.get(&path).await.expect_status(200);
        pages.push(r.json["items"].as_array().expect("items").clone());
        match r.json["nextCursor"].as_str() {
            Some(cursor) => path = format!("/orders/E-pages/events?limit=100&cursor={cursor}"),
            None => {
                assert!(r.json["nextCursor"].is_null(), "{}", r.text);
                break;
            }
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    let events = pages.concat();
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=250).collect::<Vec<u64>>());
    // The pages join into one unbroken chain.
    e2e::assert_chain("E-pages", &events);

    // Without a limit, a page is as long as allowed: clients that read `items` alone see
    // every event of an order of up to 100.
    let first = app.get("/orders/E-pages/events").await.expect_status(200);
    assert_eq!(first.json["items"].as_array().map(Vec::len), Some(100));
    assert!(first.json["nextCursor"].is_string(), "{}", first.text);
    revised_order(&app, "E-short", 3).await;
    let short = app.get("/orders/E-short/events").await.expect_status(200);
    assert_eq!(short.json["items"].as_array().map(Vec::len), Some(3));
    assert!(short.json["nextCursor"].is_null(), "{}", short.text);
    app.get("/orders/E-none/events").await.expect_problem(404);
}

#[tokio::test]
async fn bad_event_page_parameters_are_400_naming_the_parameter() {
    let app = spawn_app();
    revised_order(&app, "E-bad", 3).await;
    revised_order(&app, "E-other", 3).await;
    let next = app
        .get("/orders/E-other/events?limit=1")
        .await
        .expect_status(200);
    let others = next.json["nextCursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("limit=", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=%00%01", "cursor"),
        (&format!("cursor={others}"), "cursor"),
        ("after=1", "after"),
    ] {
        let r = app.get(&format!("/orders/E-bad/events?{query}")).await;
        r.expect_field_error(400, field);
    }
    let own = app
        .get("/orders/E-bad/events?limit=1")
        .await
        .expect_status(200);
    let cursor = own.json["nextCursor"].as_str().expect("a cursor");
    let rest = app
        .get(&format!("/orders/E-bad/events?cursor={cursor}"))
        .await
        .expect_status(200);
    assert_eq!(rest.json["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn an_order_at_its_event_limit_refuses_revisions_with_a_409_and_can_still_finish() {
    let app = spawn_app();
    app.post("/orders", json!({"orderId": "E-full", "description": "v1"}))
        .await
        .expect_write(201);
    let mut refused = None;
    for v in 2..=1_001 {
        let r = app
            .put("/orders/E-full", json!({"description": format!("v{v}")}))
            .await;
        if r.status != 200 {
            refused = Some((v, r));
            break;
        }
    }
    let (v, r) = refused.expect("a revision is refused before 1,001 events");
    // Room is kept for starting and completing: 998 events, not 1,000.
    assert_eq!(v, 999, "the revision that would have been version {v}");
    let problem = r.expect_problem(409);
    assert_eq!(
        problem["type"],
        "https://ordersource.dev/problems/order-history-full"
    );
    assert!(
        r.detail().contains("limit of 1000 events") && r.detail().contains("place a new order"),
        "{}",
        r.text
    );
    let order = app.order("E-full").await;
    assert_eq!(
        (order["version"].as_u64(), &order["description"]),
        (Some(998), &json!("v998"))
    );
    // Nothing was appended.
    let r = app.get("/orders/E-full?version=999").await;
    r.expect_problem(404);

    app.post("/orders/E-full/start", ()).await.expect_write(200);
    let done = app
        .post("/orders/E-full/complete", ())
        .await
        .expect_write(200);
    assert_eq!(done["version"], 1000);
    assert_eq!(done["status"], "completed");
}
