//! Many writers at once, `If-Match`, `Idempotency-Key` and repeated placements: no lost
//! update, no duplicated event, versions gapless.

use std::collections::{BTreeSet, HashSet};

use e2e::{Client, Resp, event_types, spawn_app};
use http::Method;
use serde_json::{Value, json};

/// Sends `n` requests at once (each from its own task and connection) and returns the
/// responses in task order.
async fn burst(
    client: Client,
    n: usize,
    make: impl Fn(usize) -> (Method, String, Value, Vec<(String, String)>),
) -> Vec<Resp> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (method, path, body, headers) = make(i);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                barrier.wait().await;
                client.send(method, &path, body, &headers).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

fn statuses(rs: &[Resp]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_put_revisions_all_succeed_and_versions_stay_gapless() {
    let app = spawn_app();
    app.place("C-rev", "original").await;
    let rs = burst(app.client, 20, |i| {
        (
            Method::PUT,
            "/orders/C-rev".into(),
            json!({"description": format!("revision {i}")}),
            vec![],
        )
    })
    .await;
    let mut versions = BTreeSet::new();
    for r in &rs {
        let order = r.expect_write(200);
        versions.insert(order["version"].as_u64().unwrap());
    }
    assert_eq!(
        versions,
        (2..=21).collect(),
        "each writer got its own version"
    );

    let events = app.events("C-rev").await;
    assert_eq!(
        events.len(),
        21,
        "exactly one event per writer, none lost: {:?}",
        event_types(&events)
    );
    let written: HashSet<String> = events[1..]
        .iter()
        .map(|e| e["data"]["description"].as_str().unwrap().to_owned())
        .collect();
    let sent: HashSet<String> = (0..20).map(|i| format!("revision {i}")).collect();
    assert_eq!(written, sent, "every revision is recorded exactly once");
    let order = app.order("C-rev").await;
    assert_eq!(order["version"], 21);
    assert_eq!(
        order["description"], events[20]["data"]["description"],
        "the last event wins"
    );
    // Each response reported the state right after its own event.
    for r in &rs {
        let v = r.json["order"]["version"].as_u64().unwrap() as usize;
        assert_eq!(
            r.json["order"]["description"],
            events[v - 1]["data"]["description"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_with_the_same_if_match_exactly_one_wins() {
    let app = spawn_app();
    app.place("C-im", "optimistic").await;
    let rs = burst(app.client, 10, |i| {
        (
            Method::PUT,
            "/orders/C-im".into(),
            json!({"description": format!("writer {i}")}),
            vec![("if-match".into(), "\"1\"".into())],
        )
    })
    .await;
    let ok: Vec<&Resp> = rs.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "exactly one writer may win: {:?}",
        statuses(&rs)
    );
    for r in rs.iter().filter(|r| r.status != 200) {
        r.expect_problem(412);
    }
    let events = app.events("C-im").await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1]["data"]["description"],
        ok[0].json["order"]["description"]
    );
}

#[tokio::test]
async fn if_match_stale_is_412_matching_is_200_unknown_order_is_404() {
    let app = spawn_app();
    app.place("C-etag", "etag").await;
    app.put("/orders/C-etag", json!({"description": "v2"}))
        .await
        .expect_write(200);

    let before = app.snapshot("C-etag").await;
    for stale in ["\"1\"", "W/\"2\"", "\"3\"", "\"1\", \"3\""] {
        let r = app
            .put_with(
                "/orders/C-etag",
                json!({"description": "stale"}),
                &[("if-match", stale)],
            )
            .await;
        r.expect_problem(412);
        let r = app
            .post_with("/orders/C-etag/start", (), &[("if-match", stale)])
            .await;
        r.expect_problem(412);
        let r = app
            .post_with(
                "/orders/C-etag/cancel",
                json!({"reasonForCancellation": "r"}),
                &[("if-match", stale)],
            )
            .await;
        r.expect_problem(412);
    }
    assert_eq!(
        app.snapshot("C-etag").await,
        before,
        "a 412 changes nothing"
    );
    let r = app
        .put_with(
            "/orders/C-etag",
            json!({"description": "stale"}),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert!(
        r.detail().contains('2'),
        "the 412 should tell the current version: {}",
        r.text
    );

    // The ETag of a read is what If-Match takes.
    let etag = app
        .get("/orders/C-etag")
        .await
        .expect_status(200)
        .header("etag")
        .unwrap()
        .to_owned();
    assert_eq!(etag, "\"2\"");
    let r = app
        .put_with(
            "/orders/C-etag",
            json!({"description": "v3"}),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.expect_write(200)["version"], 3);
    let r = app
        .post_with("/orders/C-etag/start", (), &[("if-match", "\"2\", \"3\"")])
        .await;
    assert_eq!(r.expect_write(200)["version"], 4);
    let r = app
        .post_with("/orders/C-etag/complete", (), &[("if-match", "*")])
        .await;
    assert_eq!(r.expect_write(200)["version"], 5);

    // If-Match on an order that does not exist.
    for if_match in ["\"1\"", "*"] {
        app.put_with(
            "/orders/C-none",
            json!({"description": "x"}),
            &[("if-match", if_match)],
        )
        .await
        .expect_problem(404);
        app.post_with("/orders/C-none/start", (), &[("if-match", if_match)])
            .await
            .expect_problem(404);
    }
}

#[tokio::test]
async fn same_idempotency_key_and_body_replays_the_first_answer() {
    let app = spawn_app();
    let body = json!({"orderId": "C-k1", "description": "keyed"});
    let key = [("idempotency-key", "key-C-k1")];
    let first = app.post_with("/orders", &body, &key).await;
    first.expect_write(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = app.post_with("/orders", &body, &key).await;
    assert_eq!(second.status, first.status);
    assert_eq!(second.text, first.text, "byte-identical body");
    for h in ["etag", "location", "content-type"] {
        assert_eq!(second.header(h), first.header(h), "{h}");
    }
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.events("C-k1").await.len(), 1);

    // PUT and explicit commands too, even after the order has moved on.
    let put_key = [("idempotency-key", "key-C-k1-put")];
    let p1 = app
        .put_with("/orders/C-k1", json!({"description": "keyed 2"}), &put_key)
        .await;
    p1.expect_write(200);
    let start_key = [("idempotency-key", "key-C-k1-start")];
    let s1 = app.post_with("/orders/C-k1/start", (), &start_key).await;
    assert_eq!(s1.expect_write(200)["version"], 3);
    app.post("/orders/C-k1/complete", ())
        .await
        .expect_write(200);

    let p2 = app
        .put_with("/orders/C-k1", json!({"description": "keyed 2"}), &put_key)
        .await;
    assert_eq!((p2.status, &p2.text), (200, &p1.text), "PUT replay");
    assert_eq!(p2.header("idempotent-replayed"), Some("true"));
    let s2 = app.post_with("/orders/C-k1/start", (), &start_key).await;
    assert_eq!(
        (s2.status, &s2.text),
        (200, &s1.text),
        "a retried /start gets its first answer, not a 409"
    );
    assert_eq!(s2.header("etag"), Some("\"3\""));
    assert_eq!(app.events("C-k1").await.len(), 4);
}

#[tokio::test]
async fn same_idempotency_key_with_another_body_or_path_is_422() {
    let app = spawn_app();
    let key = [("idempotency-key", "key-C-k2")];
    app.post_with(
        "/orders",
        json!({"orderId": "C-k2", "description": "first"}),
        &key,
    )
    .await
    .expect_write(201);
    let before = app.snapshot("C-k2").await;
    let r = app
        .post_with(
            "/orders",
            json!({"orderId": "C-k2", "description": "second"}),
            &key,
        )
        .await;
    r.expect_problem(422);
    let r = app
        .post_with(
            "/orders",
            json!({"orderId": "C-k2b", "description": "first"}),
            &key,
        )
        .await;
    r.expect_problem(422);
    app.get("/orders/C-k2b").await.expect_problem(404);
    // The same key on another endpoint is another request.
    let r = app
        .put_with("/orders/C-k2", json!({"description": "first"}), &key)
        .await;
    r.expect_problem(422);
    let r = app.post_with("/orders/C-k2/start", (), &key).await;
    r.expect_problem(422);
    assert_eq!(app.snapshot("C-k2").await, before);
    // And the original request still replays.
    let r = app
        .post_with(
            "/orders",
            json!({"orderId": "C-k2", "description": "first"}),
            &key,
        )
        .await;
    r.expect_write(201);
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn same_order_id_and_content_posted_twice_returns_the_first_answer() {
    let app = spawn_app();
    let body = json!({"orderId": "C-dup", "description": "twice", "deliveryDate": "2026-09-01", "customerId": "K-1"});
    let first = app.post("/orders", &body).await;
    let order = first.expect_write(201);
    assert_eq!(order["version"], 1);
    let second = app.post("/orders", &body).await;
    assert_eq!(
        second.expect_write(201),
        order,
        "the retry gets the first answer"
    );
    assert_eq!(second.header("location"), Some("/orders/C-dup"));
    assert_eq!(second.header("etag"), Some("\"1\""));
    // Only the fields the client sent are compared.
    let fewer = app
        .post(
            "/orders",
            json!({"orderId": "C-dup", "description": "twice"}),
        )
        .await;
    assert_eq!(fewer.expect_write(201), order);
    assert_eq!(app.events("C-dup").await.len(), 1, "retries append nothing");

    // Even after the order moved on, a retry of the placement is answered as the placement.
    app.post("/orders/C-dup/start", ()).await.expect_write(200);
    let late = app.post("/orders", &body).await;
    assert_eq!(late.expect_write(201), order);
    assert_eq!(app.events("C-dup").await.len(), 2);
}

#[tokio::test]
async fn same_order_id_with_other_content_is_409() {
    let app = spawn_app();
    app.post(
        "/orders",
        json!({"orderId": "C-clash", "description": "mine", "deliveryDate": "2026-09-01", "registerDate": "2026-01-01T00:00:00Z"}),
    )
    .await
    .expect_write(201);
    let before = app.snapshot("C-clash").await;
    for body in [
        json!({"orderId": "C-clash", "description": "yours"}),
        json!({"orderId": "C-clash", "description": "mine", "deliveryDate": "2026-09-02"}),
        json!({"orderId": "C-clash", "description": "mine", "registerDate": "2026-01-01T00:00:01Z"}),
        json!({"orderId": "C-clash", "description": "mine", "customerId": "K-2"}),
    ] {
        let r = app.post("/orders", &body).await;
        r.expect_problem(409);
        assert!(r.detail().contains("C-clash"), "{}", r.text);
    }
    assert_eq!(app.snapshot("C-clash").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_posts_with_one_idempotency_key_make_one_order() {
    let app = spawn_app();
    let rs = burst(app.client, 30, |_| {
        (
            Method::POST,
            "/orders".into(),
            json!({"orderId": "C-burst", "description": "one of thirty"}),
            vec![("idempotency-key".into(), "key-C-burst".into())],
        )
    })
    .await;
    let created: Vec<&Resp> = rs.iter().filter(|r| r.status == 201).collect();
    assert!(
        !created.is_empty(),
        "at least the first must succeed: {:?}",
        statuses(&rs)
    );
    for r in &rs {
        match r.status {
            201 => {
                r.expect_write(201);
                assert_eq!(r.text, created[0].text, "every 201 is the same answer");
            }
            409 => {
                r.expect_problem(409);
            }
            other => panic!("expected 201 or 409, got {other}: {}", r.text),
        }
    }
    assert_eq!(app.events("C-burst").await.len(), 1, "exactly one event");
    let after = app
        .post_with(
            "/orders",
            json!({"orderId": "C-burst", "description": "one of thirty"}),
            &[("idempotency-key", "key-C-burst")],
        )
        .await;
    assert_eq!((after.status, &after.text), (201, &created[0].text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_posts_of_the_same_order_without_a_key_make_one_order() {
    let app = spawn_app();
    let rs = burst(app.client, 30, |_| {
        (
            Method::POST,
            "/orders".into(),
            json!({"orderId": "C-same", "description": "same content"}),
            vec![],
        )
    })
    .await;
    let first = rs[0].expect_write(201);
    for r in &rs {
        assert_eq!(
            r.expect_write(201),
            first,
            "every retry gets the first answer"
        );
    }
    assert_eq!(app.events("C-same").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_posts_of_one_order_id_with_different_content_one_wins() {
    let app = spawn_app();
    let rs = burst(app.client, 30, |i| {
        (
            Method::POST,
            "/orders".into(),
            json!({"orderId": "C-race", "description": format!("contender {i}")}),
            vec![],
        )
    })
    .await;
    let winners: Vec<&Resp> = rs.iter().filter(|r| r.status == 201).collect();
    assert_eq!(winners.len(), 1, "{:?}", statuses(&rs));
    for r in rs.iter().filter(|r| r.status != 201) {
        r.expect_problem(409);
    }
    let events = app.events("C-race").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["data"]["description"],
        winners[0].json["order"]["description"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transitions_only_one_of_each_conflicting_command_wins() {
    let app = spawn_app();
    app.place("C-tr", "racing").await;
    let rs = burst(app.client, 10, |_| {
        (Method::POST, "/orders/C-tr/start".into(), json!({}), vec![])
    })
    .await;
    assert_eq!(
        rs.iter().filter(|r| r.status == 200).count(),
        1,
        "{:?}",
        statuses(&rs)
    );
    for r in rs.iter().filter(|r| r.status != 200) {
        r.expect_problem(409);
    }
    // complete and cancel race: one of them, not both.
    let rs = burst(app.client, 10, |i| {
        if i % 2 == 0 {
            (
                Method::POST,
                "/orders/C-tr/complete".into(),
                json!({}),
                vec![],
            )
        } else {
            (
                Method::POST,
                "/orders/C-tr/cancel".into(),
                json!({"reasonForCancellation": "race"}),
                vec![],
            )
        }
    })
    .await;
    assert_eq!(
        rs.iter().filter(|r| r.status == 200).count(),
        1,
        "{:?}",
        statuses(&rs)
    );
    let events = app.events("C-tr").await;
    assert_eq!(events.len(), 3, "{:?}", event_types(&events));
    assert_eq!(app.order("C-tr").await["status"], events[2]["status"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_with_one_idempotency_key_apply_once() {
    let app = spawn_app();
    app.place("C-kput", "keyed put").await;
    let rs = burst(app.client, 20, |_| {
        (
            Method::PUT,
            "/orders/C-kput".into(),
            json!({"description": "applied once"}),
            vec![("idempotency-key".into(), "key-C-kput".into())],
        )
    })
    .await;
    for r in &rs {
        assert!(
            r.status == 200 || r.status == 409,
            "{} {}",
            r.status,
            r.text
        );
        if r.status == 409 {
            r.expect_problem(409);
        }
    }
    assert!(rs.iter().any(|r| r.status == 200));
    let events = app.events("C-kput").await;
    assert_eq!(events.len(), 2, "{:?}", event_types(&events));
    assert_eq!(events[1]["metadata"]["idempotencyKey"], "key-C-kput");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_with_one_key_and_different_bodies_make_one_order() {
    let app = spawn_app();
    let rs = burst(app.client, 20, |i| {
        (
            Method::POST,
            "/orders".into(),
            json!({"orderId": format!("C-kd-{i}"), "description": "one key, many bodies"}),
            vec![("idempotency-key".into(), "key-C-kd".into())],
        )
    })
    .await;
    let winners: Vec<&Resp> = rs.iter().filter(|r| r.status == 201).collect();
    assert_eq!(winners.len(), 1, "{:?}", statuses(&rs));
    for r in rs.iter().filter(|r| r.status != 201) {
        assert!(
            r.status == 409 || r.status == 422,
            "{} {}",
            r.status,
            r.text
        );
        r.expect_problem(r.status);
    }
    let winner = winners[0].json["order"]["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..20 {
        let id = format!("C-kd-{i}");
        let r = app.get(&format!("/orders/{id}")).await;
        assert_eq!(
            r.status,
            if id == winner { 200 } else { 404 },
            "{id}: {}",
            r.text
        );
    }
}
