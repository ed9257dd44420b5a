//! The status machine over HTTP: received → inprocess → completed, received|inprocess →
//! canceled, terminal orders stay put, and every change is one event in a gapless,
//! hash-chained history.

use e2e::{TestApp, ZERO_HASH, event_types, spawn_app};
use serde_json::{Value, json};

async fn post_cmd(app: &TestApp, id: &str, cmd: &str, body: Value) -> e2e::Resp {
    app.post(&format!("/orders/{id}/{cmd}"), body).await
}

#[tokio::test]
async fn place_start_complete_runs_versions_1_2_3_with_etags() {
    let app = spawn_app();
    let r = app
        .post(
            "/orders",
            json!({"orderId": "L-1", "description": "full run"}),
        )
        .await;
    let placed = r.expect_write(201);
    assert_eq!(
        (placed["status"].as_str(), placed["version"].as_u64()),
        (Some("received"), Some(1))
    );

    let r = app.post("/orders/L-1/start", ()).await;
    let started = r.expect_write(200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(
        (started["status"].as_str(), started["version"].as_u64()),
        (Some("inprocess"), Some(2))
    );
    assert!(
        r.header("location").is_none(),
        "only a creation has a Location"
    );

    let r = app.post("/orders/L-1/complete", json!({})).await;
    let completed = r.expect_write(200);
    assert_eq!(r.header("etag"), Some("\"3\""));
    assert_eq!(
        (completed["status"].as_str(), completed["version"].as_u64()),
        (Some("completed"), Some(3))
    );

    // Unchanged through the run: identity, description, creation time.
    for field in ["orderId", "description", "registerDate", "createdAt"] {
        assert_eq!(completed[field], placed[field], "{field}");
    }
    assert!(completed["updatedAt"].as_str() >= placed["updatedAt"].as_str());

    let got = app.get("/orders/L-1").await.expect_status(200);
    assert_eq!(got.header("etag"), Some("\"3\""));
    assert_eq!(got.json, completed);

    let events = app.events("L-1").await;
    assert_eq!(
        event_types(&events),
        ["OrderPlaced", "OrderStarted", "OrderCompleted"]
    );
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["received", "inprocess", "completed"]);
}

#[tokio::test]
async fn place_then_cancel_with_a_reason() {
    let app = spawn_app();
    app.place("L-c1", "to be canceled").await;
    let r = post_cmd(
        &app,
        "L-c1",
        "cancel",
        json!({"reasonForCancellation": "customer changed their mind"}),
    )
    .await;
    let order = r.expect_write(200);
    assert_eq!(order["status"], "canceled");
    assert_eq!(
        order["reasonForCancellation"],
        "customer changed their mind"
    );
    assert_eq!(order["version"], 2);
    let events = app.events("L-c1").await;
    assert_eq!(event_types(&events), ["OrderPlaced", "OrderCanceled"]);
    assert_eq!(
        events[1]["data"]["reasonForCancellation"],
        "customer changed their mind"
    );

    // From inprocess too, and through PUT.
    app.place("L-c2", "started then canceled").await;
    post_cmd(&app, "L-c2", "start", json!({}))
        .await
        .expect_write(200);
    let order = app
        .put(
            "/orders/L-c2",
            json!({"status": "canceled", "reasonForCancellation": "out of stock"}),
        )
        .await
        .expect_write(200);
    assert_eq!(
        (order["status"].as_str(), order["version"].as_u64()),
        (Some("canceled"), Some(3))
    );
    assert_eq!(order["reasonForCancellation"], "out of stock");
}

#[tokio::test]
async fn put_drives_the_same_transitions() {
    let app = spawn_app();
    app.place("L-p", "via put").await;
    let order = app
        .put("/orders/L-p", json!({"status": "inprocess"}))
        .await
        .expect_write(200);
    assert_eq!(
        (order["status"].as_str(), order["version"].as_u64()),
        (Some("inprocess"), Some(2))
    );
    let order = app
        .put("/orders/L-p", json!({"status": "completed"}))
        .await
        .expect_write(200);
    assert_eq!(
        (order["status"].as_str(), order["version"].as_u64()),
        (Some("completed"), Some(3))
    );
    assert_eq!(
        event_types(&app.events("L-p").await),
        ["OrderPlaced", "OrderStarted", "OrderCompleted"]
    );
}

/// Asserts a 409 whose detail names the current status and each allowed next one, and that
/// the order did not change.
async fn assert_illegal(
    app: &TestApp,
    id: &str,
    request: (&str, &str, Value),
    current: &str,
    allowed: &[&str],
) {
    let before = app.snapshot(id).await;
    let (method, path, body) = request;
    let r = match method {
        "PUT" => app.put(path, body).await,
        _ => app.post(path, body).await,
    };
    r.expect_problem(409);
    let detail = r.detail();
    assert!(
        detail.contains(current),
        "{method} {path}: detail should name the current status {current}: {detail}"
    );
    for next in allowed {
        assert!(
            detail.contains(next),
            "{method} {path}: detail should name the allowed {next}: {detail}"
        );
    }
    if allowed.is_empty() {
        assert!(
            detail.contains("terminal"),
            "{method} {path}: detail should say {current} is terminal: {detail}"
        );
    }
    assert_eq!(
        app.snapshot(id).await,
        before,
        "{method} {path} changed the order"
    );
}

#[tokio::test]
async fn illegal_explicit_commands_are_409_naming_current_and_allowed_statuses() {
    let app = spawn_app();
    app.place("L-i", "illegal moves").await;
    // received: may go to inprocess or canceled.
    assert_illegal(
        &app,
        "L-i",
        ("POST", "/orders/L-i/complete", json!({})),
        "received",
        &["inprocess", "canceled"],
    )
    .await;
    assert_illegal(
        &app,
        "L-i",
        ("PUT", "/orders/L-i", json!({"status": "completed"})),
        "received",
        &["inprocess", "canceled"],
    )
    .await;

    post_cmd(&app, "L-i", "start", json!({}))
        .await
        .expect_write(200);
    // inprocess: may go to completed or canceled; /start again is a 409 (not a silent 200).
    assert_illegal(
        &app,
        "L-i",
        ("POST", "/orders/L-i/start", json!({})),
        "inprocess",
        &["completed", "canceled"],
    )
    .await;
    assert_illegal(
        &app,
        "L-i",
        ("PUT", "/orders/L-i", json!({"status": "received"})),
        "inprocess",
        &["completed", "canceled"],
    )
    .await;
    assert_illegal(
        &app,
        "L-i",
        ("PUT", "/orders/L-i", json!({"estado": "recibida"})),
        "inprocess",
        &["completed", "canceled"],
    )
    .await;
}

#[tokio::test]
async fn completed_orders_refuse_every_transition_and_revision() {
    let app = spawn_app();
    app.place("L-t", "terminal").await;
    post_cmd(&app, "L-t", "start", json!({}))
        .await
        .expect_write(200);
    post_cmd(&app, "L-t", "complete", json!({}))
        .await
        .expect_write(200);
    for (method, path, body) in [
        ("POST", "/orders/L-t/start", json!({})),
        ("POST", "/orders/L-t/complete", json!({})),
        (
            "POST",
            "/orders/L-t/cancel",
            json!({"reasonForCancellation": "too late"}),
        ),
        ("PUT", "/orders/L-t", json!({"status": "received"})),
        ("PUT", "/orders/L-t", json!({"status": "inprocess"})),
        (
            "PUT",
            "/orders/L-t",
            json!({"status": "canceled", "reasonForCancellation": "too late"}),
        ),
    ] {
        assert_illegal(&app, "L-t", (method, path, body), "completed", &[]).await;
    }
    for body in [
        json!({"description": "changed afterwards"}),
        json!({"deliveryDate": "2030-01-01"}),
        json!({"status": "completed", "description": "changed afterwards"}),
    ] {
        let before = app.snapshot("L-t").await;
        let r = app.put("/orders/L-t", &body).await;
        r.expect_problem(409);
        assert!(r.detail().contains("completed"), "{}", r.text);
        assert_eq!(
            app.snapshot("L-t").await,
            before,
            "{body} changed a completed order"
        );
    }
}

#[tokio::test]
async fn canceled_orders_refuse_every_transition_and_revision() {
    let app = spawn_app();
    app.place("L-x", "terminal").await;
    post_cmd(
        &app,
        "L-x",
        "cancel",
        json!({"reasonForCancellation": "first reason"}),
    )
    .await
    .expect_write(200);
    for (method, path, body) in [
        ("POST", "/orders/L-x/start", json!({})),
        ("POST", "/orders/L-x/complete", json!({})),
        (
            "POST",
            "/orders/L-x/cancel",
            json!({"reasonForCancellation": "again"}),
        ),
        ("PUT", "/orders/L-x", json!({"status": "received"})),
        ("PUT", "/orders/L-x", json!({"status": "completed"})),
    ] {
        assert_illegal(&app, "L-x", (method, path, body), "canceled", &[]).await;
    }
    for body in [
        json!({"description": "changed afterwards"}),
        json!({"fecha_entrega": "01/01/2030"}),
        // Same status, another reason: that would rewrite history.
        json!({"status": "canceled", "reasonForCancellation": "second reason"}),
    ] {
        let before = app.snapshot("L-x").await;
        let r = app.put("/orders/L-x", &body).await;
        r.expect_problem(409);
        assert_eq!(
            app.snapshot("L-x").await,
            before,
            "{body} changed a canceled order"
        );
    }
    assert_eq!(
        app.order("L-x").await["reasonForCancellation"],
        "first reason"
    );
}

#[tokio::test]
async fn put_with_the_same_status_and_nothing_else_is_200_without_an_event() {
    let app = spawn_app();
    let placed = app.place("L-s", "steady").await;
    for body in [
        json!({"status": "received"}),
        json!({"estado": "recibida"}),
        json!({}),
        json!({"orderId": "L-s", "status": "received", "description": "steady"}),
    ] {
        let r = app.put("/orders/L-s", &body).await;
        let order = r.expect_write(200);
        assert_eq!(order, placed, "{body}: the order must not change");
        assert_eq!(r.header("etag"), Some("\"1\""));
    }
    app.put("/orders/L-s", ()).await.expect_write(200);
    assert_eq!(
        app.events("L-s").await.len(),
        1,
        "no-op PUTs append nothing"
    );

    // The same for terminal states: a completed order PUT as completed is a no-op.
    post_cmd(&app, "L-s", "start", json!({}))
        .await
        .expect_write(200);
    post_cmd(&app, "L-s", "complete", json!({}))
        .await
        .expect_write(200);
    let r = app
        .put(
            "/orders/L-s",
            json!({"status": "completed", "description": "steady"}),
        )
        .await;
    assert_eq!(r.expect_write(200)["version"], 3);
    assert_eq!(app.events("L-s").await.len(), 3);
}

#[tokio::test]
async fn put_revisions_change_details_and_record_only_what_changed() {
    let app = spawn_app();
    app.post(
        "/orders",
        json!({"orderId": "L-r", "description": "first", "deliveryDate": "2026-06-01", "customerId": "C-9"}),
    )
    .await
    .expect_write(201);
    let order = app
        .put(
            "/orders/L-r",
            json!({"description": "second", "deliveryDate": "2026-06-01"}),
        )
        .await
        .expect_write(200);
    assert_eq!(
        (order["description"].as_str(), order["version"].as_u64()),
        (Some("second"), Some(2))
    );
    assert_eq!(order["deliveryDate"], "2026-06-01");
    assert_eq!(order["customerId"], "C-9");
    let order = app
        .put("/orders/L-r", json!({"deliveryDate": "2026-07-15"}))
        .await
        .expect_write(200);
    assert_eq!(
        (order["deliveryDate"].as_str(), order["version"].as_u64()),
        (Some("2026-07-15"), Some(3))
    );
    assert_eq!(order["description"], "second");

    // A revision and a transition in one PUT: two events, the revision first.
    let order = app
        .put(
            "/orders/L-r",
            json!({"status": "inprocess", "description": "third"}),
        )
        .await
        .expect_write(200);
    assert_eq!(
        (order["status"].as_str(), order["version"].as_u64()),
        (Some("inprocess"), Some(5))
    );
    let events = app.events("L-r").await;
    assert_eq!(
        event_types(&events),
        [
            "OrderPlaced",
            "OrderDetailsRevised",
            "OrderDetailsRevised",
            "OrderDetailsRevised",
            "OrderStarted"
        ]
    );
    assert_eq!(
        events[1]["data"],
        json!({"description": "second"}),
        "only the changed field is recorded"
    );
    assert_eq!(events[2]["data"], json!({"deliveryDate": "2026-07-15"}));
    assert_eq!(events[3]["status"], "received");
    assert_eq!(events[4]["status"], "inprocess");
    // Events of one command share their time and correlation.
    assert_eq!(events[3]["occurredAt"], events[4]["occurredAt"]);
    assert_eq!(
        events[3]["metadata"]["correlationId"],
        events[4]["metadata"]["correlationId"]
    );
}

#[tokio::test]
async fn a_refused_multi_event_put_appends_nothing() {
    let app = spawn_app();
    app.place("L-a", "atomic").await;
    // The revision alone would be fine, the transition is not: nothing at all happens.
    let before = app.snapshot("L-a").await;
    app.put(
        "/orders/L-a",
        json!({"description": "new text", "status": "completed"}),
    )
    .await
    .expect_problem(409);
    assert_eq!(app.snapshot("L-a").await, before);
}

#[tokio::test]
async fn events_form_a_gapless_hash_chain() {
    let app = spawn_app();
    app.place("L-h", "chained").await;
    app.put("/orders/L-h", json!({"description": "chained 2"}))
        .await
        .expect_write(200);
    post_cmd(&app, "L-h", "start", json!({}))
        .await
        .expect_write(200);
    app.put("/orders/L-h", json!({"deliveryDate": "2027-01-01"}))
        .await
        .expect_write(200);
    post_cmd(&app, "L-h", "cancel", json!({"reasonForCancellation": "r"}))
        .await
        .expect_write(200);

    let r = app.get("/orders/L-h/events").await.expect_status(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let events = r.json["items"].as_array().unwrap().clone();
    // `events` checks the same (and recomputes each hash); spelled out here as well.
    e2e::assert_chain("L-h", &events);
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert_eq!(events[0]["prevHash"], ZERO_HASH);
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"]);
    }
    for e in &events {
        let hash = e["hash"].as_str().unwrap();
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "lowercase hex: {hash}"
        );
        assert_eq!(e["schemaVersion"], 1);
        assert!(e["occurredAt"].is_string() && e["metadata"].is_object() && e["data"].is_object());
    }
    assert_eq!(
        event_types(&events),
        [
            "OrderPlaced",
            "OrderDetailsRevised",
            "OrderStarted",
            "OrderDetailsRevised",
            "OrderCanceled"
        ]
    );
    // The last event's status and the order's agree.
    assert_eq!(app.order("L-h").await["status"], events[4]["status"]);
    assert_eq!(app.order("L-h").await["version"], 5);
}

#[tokio::test]
async fn correlation_and_idempotency_key_are_carried_into_event_metadata() {
    let app = spawn_app();
    let r = app
        .post_with(
            "/orders",
            json!({"orderId": "L-m", "description": "traced"}),
            &[
                ("x-correlation-id", "corr-123"),
                ("idempotency-key", "idem-L-m"),
            ],
        )
        .await;
    r.expect_write(201);
    assert_eq!(r.header("x-correlation-id"), Some("corr-123"));
    let r = app
        .post_with("/orders/L-m/start", (), &[("x-correlation-id", "corr-456")])
        .await;
    r.expect_write(200);
    let events = app.events("L-m").await;
    assert_eq!(events[0]["metadata"]["correlationId"], "corr-123");
    assert_eq!(events[0]["metadata"]["idempotencyKey"], "idem-L-m");
    assert_eq!(events[1]["metadata"]["correlationId"], "corr-456");
    // Without a header the server makes one and returns it.
    let r = app.post("/orders/L-m/complete", ()).await;
    r.expect_write(200);
    let made = r
        .header("x-correlation-id")
        .expect("a correlation id")
        .to_owned();
    assert_eq!(
        app.events("L-m").await[2]["metadata"]["correlationId"],
        made.as_str()
    );
}

#[tokio::test]
async fn reads_and_writes_agree_on_the_order() {
    let app = spawn_app();
    let mut last = app.place("L-g", "agree").await;
    for (path, body) in [
        ("/orders/L-g", json!({"description": "agree 2"})),
        ("/orders/L-g/start", json!({})),
        ("/orders/L-g", json!({"deliveryDate": "2026-12-24"})),
        ("/orders/L-g/complete", json!({})),
    ] {
        let r = if path.ends_with("L-g") {
            app.put(path, body).await
        } else {
            app.post(path, body).await
        };
        let order = r.expect_write(200);
        assert_eq!(
            order["version"].as_u64(),
            last["version"].as_u64().map(|v| v + 1)
        );
        let got = app.get("/orders/L-g").await.expect_status(200);
        assert_eq!(got.json, order, "GET after {path}");
        last = order;
    }
}
