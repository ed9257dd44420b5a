//! Bad input: every refusal is an `application/problem+json` document with `type`, `title`,
//! `status`, `detail` and `error` (= `detail`), naming the field at fault where there is
//! one; never a 5xx; and nothing changes.

use e2e::{Resp, TestApp, spawn_app};
use http::Method;
use serde_json::{Value, json};

/// An app with one existing order, `V-1` (received, version 1).
async fn app_with_order() -> TestApp {
    let app = spawn_app();
    app.place("V-1", "existing order").await;
    app
}

/// Sends a POST that must be refused with `status`, and checks that neither `V-1` nor the
/// order it would have created (`NEW`) changed.
async fn refused_post(app: &TestApp, body: impl Into<e2e::Payload>, status: u16) -> Resp {
    let before = app.snapshot("V-1").await;
    let r = app.post("/orders", body).await;
    r.expect_problem(status);
    assert_eq!(
        app.snapshot("V-1").await,
        before,
        "{} changed V-1: {}",
        r.request,
        r.text
    );
    app.get("/orders/NEW").await.expect_problem(404);
    r
}

/// Sends a PUT to `V-1` that must be refused with `status`; checks `V-1` is unchanged.
async fn refused_put(app: &TestApp, body: impl Into<e2e::Payload>, status: u16) -> Resp {
    let before = app.snapshot("V-1").await;
    let r = app.put("/orders/V-1", body).await;
    r.expect_problem(status);
    assert_eq!(
        app.snapshot("V-1").await,
        before,
        "{} changed V-1: {}",
        r.request,
        r.text
    );
    r
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = app_with_order().await;
    for body in [
        r#"{"orderId": "NEW", "description": "#,
        r#"{"orderId": "NEW", "description": "x",}"#,
        r#"{orderId: "NEW"}"#,
        "{'description': 'x'}",
        r#"{"orderId": "NEW", "description": "x"} trailing"#,
    ] {
        let r = refused_post(&app, body, 400).await;
        assert!(
            r.detail().to_lowercase().contains("json"),
            "detail should say the JSON is malformed: {}",
            r.text
        );
        refused_put(&app, body, 400).await;
    }
    // Not UTF-8 at all.
    refused_post(&app, b"{\"description\": \"\xff\xfe\"}".to_vec(), 400).await;
    // Nested deeper than any parser should recurse.
    refused_post(&app, "[".repeat(100_000), 400).await;
    refused_post(
        &app,
        format!("{}1{}", "[".repeat(5000), "]".repeat(5000)),
        400,
    )
    .await;
    // A number no float holds.
    refused_post(&app, r#"{"orderId": "NEW", "description": 1e999}"#, 400).await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_a_400_problem() {
    let app = app_with_order().await;
    for body in [r#"["description"]"#, r#""description""#, "42", "true", "[]"] {
        let r = refused_post(&app, body, 400).await;
        assert!(
            r.detail().contains("object"),
            "detail should ask for an object: {}",
            r.text
        );
        refused_put(&app, body, 400).await;
        let r = app.post("/orders/V-1/cancel", body).await;
        r.expect_problem(400);
    }
}

#[tokio::test]
async fn unknown_fields_are_400_naming_each_field() {
    let app = app_with_order().await;
    let r = refused_post(
        &app,
        json!({"orderId": "NEW", "description": "x", "colour": "red", "Description": "y"}),
        400,
    )
    .await;
    r.expect_field_error(400, "colour");
    r.expect_field_error(400, "Description");
    assert!(r.detail().contains("colour"), "{}", r.text);

    refused_put(&app, json!({"status": "inprocess", "priority": 1}), 400)
        .await
        .expect_field_error(400, "priority");
    // Read-only fields of the order are not writable.
    refused_put(&app, json!({"version": 7}), 400)
        .await
        .expect_field_error(400, "version");
    refused_post(
        &app,
        json!({"orderId": "NEW", "description": "x", "createdAt": "2026-01-01T00:00:00Z"}),
        400,
    )
    .await
    .expect_field_error(400, "createdAt");
    for cmd in ["start", "complete"] {
        let before = app.snapshot("V-1").await;
        app.post(&format!("/orders/V-1/{cmd}"), json!({"force": true}))
            .await
            .expect_field_error(400, "force");
        assert_eq!(app.snapshot("V-1").await, before);
    }
    let before = app.snapshot("V-1").await;
    app.post(
        "/orders/V-1/cancel",
        json!({"reasonForCancellation": "r", "note": "n"}),
    )
    .await
    .expect_field_error(400, "note");
    assert_eq!(app.snapshot("V-1").await, before);
}

#[tokio::test]
async fn wrong_types_are_400_naming_the_field() {
    let app = app_with_order().await;
    let cases: [(&str, Value); 8] = [
        ("description", json!(5)),
        ("description", json!(["x"])),
        ("orderId", json!(12)),
        ("deliveryDate", json!(true)),
        ("registerDate", json!(1738310400)),
        ("customerId", json!({"id": 1})),
        ("status", json!([])),
        ("status", json!(false)),
    ];
    for (field, value) in cases {
        let mut body = json!({"orderId": "NEW", "description": "typed"});
        body[field] = value;
        let r = refused_post(&app, &body, 400).await;
        r.expect_field_error(400, field);
        assert!(
            r.detail().contains(field),
            "detail should name {field}: {}",
            r.text
        );
    }
    refused_put(&app, json!({"description": 5}), 400)
        .await
        .expect_field_error(400, "description");
    refused_put(
        &app,
        json!({"reasonForCancellation": 5, "status": "canceled"}),
        400,
    )
    .await
    .expect_field_error(400, "reasonForCancellation");
    let before = app.snapshot("V-1").await;
    app.post(
        "/orders/V-1/cancel",
        json!({"reasonForCancellation": ["r"]}),
    )
    .await
    .expect_field_error(400, "reasonForCancellation");
    assert_eq!(app.snapshot("V-1").await, before);
}

#[tokio::test]
async fn bad_dates_are_400_naming_the_field() {
    let app = app_with_order().await;
    for (field, value) in [
        ("deliveryDate", "2026-02-30"),
        ("deliveryDate", "2026-13-01"),
        ("deliveryDate", "tomorrow"),
        ("deliveryDate", ""),
        ("deliveryDate", "2026-04-10T25:00:00Z"),
        ("registerDate", "2025-01-31"),
        ("registerDate", "2025-01-31T08:00:00"),
        ("registerDate", "31/01/2025"),
        ("registerDate", ""),
        ("fecha_entrega", "31/02/2026"),
        ("fecha_entrega", "10-04-2026"),
        ("fecha_entrega", "hoy"),
    ] {
        let body = json!({"orderId": "NEW", "description": "dated", field: value});
        let r = refused_post(&app, &body, 400).await;
        r.expect_field_error(400, field);
    }
    refused_put(&app, json!({"deliveryDate": "2026-02-30"}), 400)
        .await
        .expect_field_error(400, "deliveryDate");
    refused_put(&app, json!({"fecha_entrega": "32/01/2026"}), 400)
        .await
        .expect_field_error(400, "fecha_entrega");
}

#[tokio::test]
async fn good_dates_in_every_accepted_form_are_accepted() {
    let app = spawn_app();
    for (i, (field, value, expected)) in [
        ("deliveryDate", "2026-04-10", "2026-04-10"),
        ("fecha_entrega", "10/04/2026", "2026-04-10"),
        ("fecha_entrega", "29/02/2028", "2028-02-29"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"orderId": format!("D-{i}"), "description": "dated", field: value});
        let order = app.post("/orders", &body).await.expect_write(201);
        assert_eq!(order["deliveryDate"], expected, "{body}");
    }
    // RFC 3339 delivery dates are accepted too.
    app.post(
        "/orders",
        json!({"orderId": "D-rfc", "description": "dated", "deliveryDate": "2026-04-10T12:00:00Z"}),
    )
    .await
    .expect_write(201);
    // registerDate with an offset is kept as the same instant.
    let order = app
        .post(
            "/orders",
            json!({"orderId": "D-off", "description": "dated", "registerDate": "2025-01-31T09:00:00+01:00"}),
        )
        .await
        .expect_write(201);
    let at = chrono::DateTime::parse_from_rfc3339(order["registerDate"].as_str().unwrap()).unwrap();
    assert_eq!(
        at,
        chrono::DateTime::parse_from_rfc3339("2025-01-31T08:00:00Z").unwrap()
    );
}

#[tokio::test]
async fn order_id_must_be_1_to_128_of_the_allowed_characters() {
    let app = app_with_order().await;
    let long = "a".repeat(129);
    for bad in [
        "",
        "a b",
        "ORD/1",
        "ORD#1",
        "ñandú",
        "ORD?x",
        "ORD\n",
        "<script>",
        long.as_str(),
    ] {
        let r = refused_post(&app, json!({"orderId": bad, "description": "x"}), 400).await;
        r.expect_field_error(400, "orderId");
    }
    // In the path.
    for path in [
        format!("/orders/{long}"),
        "/orders/a%20b".to_string(),
        "/orders/%C3%B1".to_string(),
        "/orders/a%2Fb".to_string(),
    ] {
        let r = app.get(&path).await;
        r.expect_field_error(400, "orderId");
        let r = app.put(&path, json!({"description": "x"})).await;
        r.expect_field_error(400, "orderId");
        let r = app.post(&format!("{path}/start"), ()).await;
        r.expect_field_error(400, "orderId");
        let r = app.get(&format!("{path}/events")).await;
        r.expect_field_error(400, "orderId");
    }
    // The limits themselves are fine.
    let max = "Az09._:-".repeat(16);
    assert_eq!(max.len(), 128);
    let order = app
        .post("/orders", json!({"orderId": max, "description": "x"}))
        .await
        .expect_write(201);
    assert_eq!(order["orderId"], max.as_str());
    app.get(&format!("/orders/{max}")).await.expect_status(200);
    app.post("/orders", json!({"orderId": "1", "description": "x"}))
        .await
        .expect_write(201);
}

#[tokio::test]
async fn description_must_be_1_to_2000_characters() {
    let app = app_with_order().await;
    for bad in [
        "".to_string(),
        "   ".to_string(),
        "d".repeat(2001),
        "é".repeat(2001),
    ] {
        let r = refused_post(&app, json!({"orderId": "NEW", "description": bad}), 400).await;
        r.expect_field_error(400, "description");
        refused_put(&app, json!({"description": bad}), 400)
            .await
            .expect_field_error(400, "description");
    }
    let order = app
        .post(
            "/orders",
            json!({"orderId": "D-2000", "description": "d".repeat(2000)}),
        )
        .await
        .expect_write(201);
    assert_eq!(order["description"].as_str().unwrap().len(), 2000);
}

#[tokio::test]
async fn description_limit_counts_characters_not_bytes() {
    let app = spawn_app();
    // 2000 characters, 4000 bytes in UTF-8.
    let d = "é".repeat(2000);
    let order = app
        .post("/orders", json!({"orderId": "D-utf8", "description": d}))
        .await
        .expect_write(201);
    assert_eq!(order["description"], d.as_str());
    let order = app
        .put("/orders/D-utf8", json!({"description": "ñ".repeat(2000)}))
        .await
        .expect_write(200);
    assert_eq!(order["version"], 2);
}

#[tokio::test]
async fn bodies_over_1_mib_are_413() {
    let app = app_with_order().await;
    // Valid JSON that is just too big.
    let padding = " ".repeat(1024 * 1024);
    let big = format!(r#"{{"orderId": "NEW", "description": "big"{padding}}}"#);
    assert!(big.len() > 1024 * 1024);
    let r = refused_post(&app, big.clone(), 413).await;
    assert!(
        r.detail().contains("1048576") || r.detail().to_lowercase().contains("large"),
        "{}",
        r.text
    );
    refused_put(&app, big.clone(), 413).await;
    let before = app.snapshot("V-1").await;
    app.post("/orders/V-1/cancel", big.clone())
        .await
        .expect_problem(413);
    app.post("/orders/V-1/start", big).await.expect_problem(413);
    assert_eq!(app.snapshot("V-1").await, before);
    // Far over the limit, and not JSON.
    refused_post(&app, vec![b'a'; 3 * 1024 * 1024], 413).await;
}

#[tokio::test]
async fn a_body_of_exactly_1_mib_is_not_too_large() {
    let app = spawn_app();
    let head = r#"{"orderId": "MIB", "description": "just fits""#;
    let limit = 1024 * 1024;
    let body = format!("{head}{}}}", " ".repeat(limit - head.len() - 1));
    assert_eq!(body.len(), limit);
    app.post("/orders", body).await.expect_write(201);
}

#[tokio::test]
async fn a_new_order_with_a_status_other_than_received_is_400() {
    let app = app_with_order().await;
    for status in [
        "inprocess",
        "completed",
        "canceled",
        "en_proceso",
        "cancelada",
    ] {
        let field = if status.contains('_') || status.ends_with('a') {
            "estado"
        } else {
            "status"
        };
        let body = json!({"orderId": "NEW", "description": "x", field: status});
        let r = refused_post(&app, &body, 400).await;
        let fields = r.error_fields();
        assert!(
            fields.iter().any(|f| f == field || f == "status"),
            "the error should name {field}: {}",
            r.text
        );
        assert!(r.detail().contains("received"), "{}", r.text);
    }
    // And with a reason, still not a way to create a canceled order.
    refused_post(
        &app,
        json!({"orderId": "NEW", "description": "x", "status": "canceled", "reasonForCancellation": "r"}),
        400,
    )
    .await;
    // `received` and `recibida` are fine.
    app.post(
        "/orders",
        json!({"orderId": "R-1", "description": "x", "status": "received"}),
    )
    .await
    .expect_write(201);
    app.post(
        "/orders",
        json!({"orderId": "R-2", "description": "x", "estado": "recibida"}),
    )
    .await
    .expect_write(201);
}

#[tokio::test]
async fn reason_for_cancellation_without_a_cancel_is_400() {
    let app = app_with_order().await;
    refused_post(
        &app,
        json!({"orderId": "NEW", "description": "x", "reasonForCancellation": "r"}),
        400,
    )
    .await
    .expect_field_error(400, "reasonForCancellation");
    refused_put(&app, json!({"reasonForCancellation": "r"}), 400)
        .await
        .expect_field_error(400, "reasonForCancellation");
    refused_put(
        &app,
        json!({"status": "inprocess", "reasonForCancellation": "r"}),
        400,
    )
    .await
    .expect_field_error(400, "reasonForCancellation");
    refused_put(
        &app,
        json!({"status": "received", "reasonForCancellation": "r"}),
        400,
    )
    .await
    .expect_field_error(400, "reasonForCancellation");
    // And a cancel without a reason is a 400 naming the reason.
    refused_put(&app, json!({"status": "canceled"}), 400)
        .await
        .expect_field_error(400, "reasonForCancellation");
    let before = app.snapshot("V-1").await;
    for body in [
        json!({}),
        json!({"reasonForCancellation": null}),
        json!({"reasonForCancellation": ""}),
    ] {
        app.post("/orders/V-1/cancel", &body)
            .await
            .expect_field_error(400, "reasonForCancellation");
    }
    app.post("/orders/V-1/cancel", ())
        .await
        .expect_field_error(400, "reasonForCancellation");
    assert_eq!(app.snapshot("V-1").await, before);
}

#[tokio::test]
async fn unknown_status_is_400_not_409() {
    let app = app_with_order().await;
    refused_post(
        &app,
        json!({"orderId": "NEW", "description": "x", "status": "shipped"}),
        400,
    )
    .await
    .expect_field_error(400, "status");
    for status in ["shipped", "", "in process", "cancelled", "in-process"] {
        let r = refused_put(&app, json!({"status": status}), 400).await;
        r.expect_field_error(400, "status");
    }
    refused_put(&app, json!({"estado": "enviada"}), 400)
        .await
        .expect_field_error(400, "estado");
}

#[tokio::test]
async fn json_null_means_not_sent() {
    let app = app_with_order().await;
    // Optional fields as null: accepted, as if absent.
    let r = app
        .post(
            "/orders",
            json!({"orderId": "N-1", "description": "nulls", "deliveryDate": null, "customerId": null,
                   "registerDate": null, "status": null, "reasonForCancellation": null}),
        )
        .await;
    let order = r.expect_write(201);
    assert_eq!(order["deliveryDate"], Value::Null);
    assert_eq!(order["status"], "received");
    // orderId null: the server makes one.
    let order = app
        .post("/orders", json!({"orderId": null, "description": "no id"}))
        .await
        .expect_write(201);
    assert!(uuid::Uuid::parse_str(order["orderId"].as_str().unwrap()).is_ok());
    // A required field as null is missing.
    let r = refused_post(&app, json!({"orderId": "NEW", "description": null}), 400).await;
    r.expect_field_error(400, "description");
    assert!(
        r.detail().contains("Missing required field: description"),
        "{}",
        r.text
    );
    // A whole null body is an empty one.
    let r = refused_post(&app, "null", 400).await;
    assert!(
        r.detail().contains("Missing required field: description"),
        "{}",
        r.text
    );

    // PUT with every field null changes nothing.
    let before = app.snapshot("V-1").await;
    let r = app
        .put(
            "/orders/V-1",
            json!({"orderId": null, "status": null, "description": null, "deliveryDate": null,
                   "reasonForCancellation": null}),
        )
        .await;
    r.expect_write(200);
    assert_eq!(r.json["order"], before.order.1);
    assert_eq!(app.snapshot("V-1").await, before);
    // Null next to a real value: only the value counts.
    let order = app
        .put(
            "/orders/V-1",
            json!({"status": null, "description": "revised", "deliveryDate": null}),
        )
        .await
        .expect_write(200);
    assert_eq!(order["version"], 2);
    assert_eq!(order["status"], "received");
    // An alias sent as null does not clash with the real field.
    app.post(
        "/orders",
        json!({"orderId": "N-2", "description": "x", "descripcion": null}),
    )
    .await
    .expect_write(201);
}

#[tokio::test]
async fn a_field_and_its_spanish_alias_together_are_400() {
    let app = app_with_order().await;
    refused_post(
        &app,
        json!({"orderId": "NEW", "description": "a", "descripcion": "b"}),
        400,
    )
    .await;
    refused_put(
        &app,
        json!({"status": "inprocess", "estado": "en_proceso"}),
        400,
    )
    .await;
}

#[tokio::test]
async fn put_body_order_id_must_match_the_path() {
    let app = app_with_order().await;
    app.place("V-2", "another order").await;
    let before2 = app.snapshot("V-2").await;
    let r = refused_put(
        &app,
        json!({"orderId": "V-2", "description": "hijack"}),
        400,
    )
    .await;
    r.expect_field_error(400, "orderId");
    assert_eq!(
        app.snapshot("V-2").await,
        before2,
        "the other order changed"
    );
    // Matching is fine.
    let order = app
        .put(
            "/orders/V-1",
            json!({"orderId": "V-1", "description": "mine"}),
        )
        .await
        .expect_write(200);
    assert_eq!(order["description"], "mine");
}

#[tokio::test]
async fn commands_on_an_unknown_order_are_404() {
    let app = app_with_order().await;
    app.put("/orders/NOPE", json!({"description": "x"}))
        .await
        .expect_problem(404);
    app.put("/orders/NOPE", json!({})).await.expect_problem(404);
    app.post("/orders/NOPE/start", ()).await.expect_problem(404);
    app.post("/orders/NOPE/complete", ())
        .await
        .expect_problem(404);
    app.post("/orders/NOPE/cancel", json!({"reasonForCancellation": "r"}))
        .await
        .expect_problem(404);
    app.get("/orders/NOPE").await.expect_problem(404);
    app.get("/orders/NOPE/events").await.expect_problem(404);
    app.get("/orders/NOPE").await.expect_problem(404);
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = app_with_order().await;
    // `/` is the operator console's overview (tests/tests/e2e/console.rs).
    for path in [
        "/index.html",
        "/order",
        "/orders/V-1/ship",
        "/orders/V-1/events/1",
        "/healthz",
        "/orders/V-1/start/now",
    ] {
        let r = app.get(path).await;
        r.expect_problem(404);
        let r = app.post(path, json!({})).await;
        assert!(
            r.status == 404 || r.status == 405,
            "POST {path} answered {}: {}",
            r.status,
            r.text
        );
        r.expect_problem(r.status);
    }
}

#[tokio::test]
async fn wrong_methods_are_405_problems() {
    let app = app_with_order().await;
    let before = app.snapshot("V-1").await;
    for (method, path) in [
        (Method::DELETE, "/orders/V-1"),
        (Method::PATCH, "/orders/V-1"),
        (Method::POST, "/orders/V-1"),
        (Method::DELETE, "/orders"),
        (Method::PUT, "/orders"),
        (Method::GET, "/orders/V-1/start"),
        (Method::GET, "/orders/V-1/cancel"),
        (Method::PUT, "/orders/V-1/complete"),
        (Method::POST, "/orders/V-1/events"),
        (Method::POST, "/health"),
        (Method::DELETE, "/openapi.json"),
    ] {
        let r = app
            .send(method.clone(), path, json!({"description": "x"}), &[])
            .await;
        r.expect_problem(405);
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"));
        assert!(
            !allow.contains(method.as_str()),
            "{method} {path}: Allow {allow}"
        );
    }
    assert_eq!(app.snapshot("V-1").await, before);
}

#[tokio::test]
async fn bad_headers_are_400() {
    let app = app_with_order().await;
    for if_match in ["3", "abc", "\"x\"", "\"-1\""] {
        refused_put_with(
            &app,
            json!({"description": "x"}),
            &[("if-match", if_match)],
            400,
        )
        .await
        .expect_field_error(400, "If-Match");
    }
    let long_key = "k".repeat(256);
    for key in ["", long_key.as_str(), "key with spaces"] {
        refused_put_with(
            &app,
            json!({"description": "x"}),
            &[("idempotency-key", key)],
            400,
        )
        .await
        .expect_field_error(400, "Idempotency-Key");
    }
}

async fn refused_put_with(
    app: &TestApp,
    body: Value,
    headers: &[(&str, &str)],
    status: u16,
) -> Resp {
    let before = app.snapshot("V-1").await;
    let r = app.put_with("/orders/V-1", body, headers).await;
    r.expect_problem(status);
    assert_eq!(
        app.snapshot("V-1").await,
        before,
        "{} changed V-1: {}",
        r.request,
        r.text
    );
    r
}

#[tokio::test]
async fn bad_query_parameters_on_reads_are_400() {
    let app = app_with_order().await;
    for path in [
        "/orders/V-1?version=0",
        "/orders/V-1?version=-1",
        "/orders/V-1?version=x",
        "/orders/V-1?version=1.5",
        "/orders/V-1?at=yesterday",
        "/orders/V-1?at=2026-01-01",
        "/orders/V-1?version=1&at=2026-01-01T00:00:00Z",
        "/orders/V-1?version=1&version=1",
        "/orders/V-1?verbose=1",
        "/orders?sort=asc",
        "/orders?limit=5&limit=6",
    ] {
        app.get(path).await.expect_problem(400);
    }
}

#[tokio::test]
async fn after_all_that_bad_input_only_the_good_orders_exist() {
    let app = app_with_order().await;
    let bodies: [Value; 5] = [
        json!({"orderId": "B-1", "description": ""}),
        json!({"orderId": "B-2", "description": "x", "status": "completed"}),
        json!({"orderId": "B-3", "description": "x", "extra": 1}),
        json!({"orderId": "B-4", "description": "x", "deliveryDate": "2026-02-31"}),
        json!({"orderId": "B 5", "description": "x"}),
    ];
    for body in &bodies {
        app.post("/orders", body).await.expect_problem(400);
    }
    app.place("G-1", "good").await;
    app.wait_projected().await;
    let listed: Vec<String> = app
        .list_all("limit=100")
        .await
        .iter()
        .map(|o| o["orderId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        ["V-1", "G-1"],
        "only the accepted orders are in the read model"
    );
    assert_eq!(app.events("V-1").await.len(), 1);
}

#[tokio::test]
async fn a_path_order_id_that_is_not_utf8_is_a_400_problem() {
    let app = app_with_order().await;
    for (method, path) in [
        (Method::GET, "/orders/%FF"),
        (Method::GET, "/orders/%FF/events"),
        (Method::PUT, "/orders/%FF"),
        (Method::POST, "/orders/%FF/start"),
        (Method::POST, "/orders/%C3%28/cancel"),
    ] {
        let r = app
            .send(method, path, json!({"reasonForCancellation": "r"}), &[])
            .await;
        r.expect_field_error(400, "orderId");
    }
}

#[tokio::test]
async fn error_responses_leave_keep_alive_connections_usable() {
    let app = app_with_order().await;
    let mut conn = app.client.connect().await.expect("a connection");
    let big = vec![b'a'; 1024 * 1024 + 10];
    let steps: Vec<(Method, &str, e2e::Payload, u16)> = vec![
        (Method::POST, "/nope", json!({"x": 1}).into(), 404),
        (Method::GET, "/health", ().into(), 200),
        (Method::DELETE, "/orders", json!({"x": 1}).into(), 405),
        (Method::GET, "/health", ().into(), 200),
        (
            Method::PUT,
            "/orders/a%20b",
            json!({"description": "x"}).into(),
            400,
        ),
        (Method::POST, "/orders", "{not json".into(), 400),
        (Method::POST, "/orders", big.into(), 413),
        (
            Method::POST,
            "/orders",
            json!({"orderId": "KA-1", "description": "after errors"}).into(),
            201,
        ),
        (Method::POST, "/orders/KA-1/complete", ().into(), 409),
        (Method::POST, "/orders/KA-1/start", ().into(), 200),
        (Method::GET, "/orders/KA-1", ().into(), 200),
    ];
    let mut reconnects = 0;
    for (method, path, body, status) in steps {
        if !conn.is_open() {
            // A server may close after an error, but then it must say so and a new
            // connection must work.
            reconnects += 1;
            conn = app.client.connect().await.expect("a new connection");
        }
        let r = conn
            .send(method.clone(), path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on a kept-alive connection: {e}"));
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        if status >= 400 {
            r.expect_problem(status);
        }
    }
    assert!(
        reconnects <= 1,
        "the connection was dropped {reconnects} times"
    );
    assert_eq!(app.order("KA-1").await["version"], 2);
}
