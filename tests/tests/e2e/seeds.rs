//! The seed documents' clients (shared/seeds/000 and 001) must keep working unchanged.

use e2e::{OK_MESSAGE, event_types, spawn_app};
use serde_json::json;

/// Seed 000's `curl -X POST /orders` body, byte for byte.
const SEED000_POST: &str = r#"{
        "orderId": "ORD-001",
        "status": "received",
        "description": "Mantenimiento básico",
        "registerDate": "2025-01-31T08:00:00Z"
      }"#;

/// Seed 000's `curl -X PUT /orders/ORD-001` body, byte for byte.
const SEED000_PUT: &str = r#"{
        "orderId": "ORD-001",
        "status": "canceled",
        "description": "Cliente se retracta",
        "reasonForCancellation": "Motivo X"
      }"#;

/// Seed 001's request body, byte for byte.
const SEED001_POST: &str = r#"{
        "fecha_entrega": "10/04/2026",
        "descripcion": "creacion de orden de trabajo",
        "estado": "recibida"
}"#;

#[tokio::test]
async fn seed000_post_creates_the_order_with_message_location_and_etag() {
    let app = spawn_app();
    let r = app.post("/orders", SEED000_POST).await;
    let order = r.expect_write(201);
    assert_eq!(r.json["message"], "Order processed successfully");
    assert_eq!(r.header("location"), Some("/orders/ORD-001"));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(order["orderId"], "ORD-001");
    assert_eq!(order["status"], "received");
    assert_eq!(order["version"], 1);
    assert_eq!(order["description"], "Mantenimiento básico");
    assert_eq!(order["registerDate"], "2025-01-31T08:00:00Z");

    // The Location names the order as a strongly consistent read returns it.
    let got = app.get("/orders/ORD-001").await.expect_status(200);
    assert_eq!(got.header("etag"), Some("\"1\""));
    assert_eq!(
        got.json, order,
        "GET returns the order the POST answered with"
    );
}

#[tokio::test]
async fn seed000_put_cancel_revises_the_description_and_cancels_at_version_3() {
    let app = spawn_app();
    app.post("/orders", SEED000_POST).await.expect_write(201);

    let r = app.put("/orders/ORD-001", SEED000_PUT).await;
    let order = r.expect_write(200);
    assert_eq!(r.json["message"], OK_MESSAGE);
    assert_eq!(order["status"], "canceled");
    assert_eq!(order["description"], "Cliente se retracta");
    assert_eq!(order["reasonForCancellation"], "Motivo X");
    assert_eq!(order["version"], 3);
    assert_eq!(r.header("etag"), Some("\"3\""));
    assert_eq!(app.order("ORD-001").await, order);

    let events = app.events("ORD-001").await;
    assert_eq!(
        event_types(&events),
        ["OrderPlaced", "OrderDetailsRevised", "OrderCanceled"],
        "the revision comes before the cancellation"
    );
    assert_eq!(events[1]["data"]["description"], "Cliente se retracta");
    assert_eq!(events[2]["data"]["reasonForCancellation"], "Motivo X");
    assert_eq!(events[2]["status"], "canceled");
}

#[tokio::test]
async fn seed000_put_cancel_retried_is_200_and_appends_nothing() {
    let app = spawn_app();
    app.post("/orders", SEED000_POST).await.expect_write(201);
    let first = app
        .put("/orders/ORD-001", SEED000_PUT)
        .await
        .expect_write(200);
    // A client that did not see the answer sends the same PUT again.
    let again = app
        .put("/orders/ORD-001", SEED000_PUT)
        .await
        .expect_write(200);
    assert_eq!(again, first);
    assert_eq!(app.events("ORD-001").await.len(), 3);
}

#[tokio::test]
async fn seed000_post_retried_returns_the_first_answer() {
    let app = spawn_app();
    let first = app.post("/orders", SEED000_POST).await;
    first.expect_write(201);
    let again = app.post("/orders", SEED000_POST).await;
    again.expect_write(201);
    assert_eq!(again.json, first.json);
    assert_eq!(app.events("ORD-001").await.len(), 1);
}

#[tokio::test]
async fn seed000_test_create_order_ok_shape_is_accepted() {
    let app = spawn_app();
    let body = json!({"orderId": "test123", "status": "received", "description": "Testing order creation"});
    let r = app.post("/orders", body.to_string()).await;
    let order = r.expect_write(201);
    assert_eq!(r.json["message"], "Order processed successfully");
    assert_eq!(order["orderId"], "test123");
}

#[tokio::test]
async fn seed000_missing_description_is_400_with_missing_required_field_error() {
    let app = spawn_app();
    // Seed 000's missing-field test, with the field this service requires left out.
    let body = json!({"orderId": "test124", "status": "received"});
    let r = app.post("/orders", body.to_string()).await;
    r.expect_field_error(400, "description");
    let error = r.json["error"].as_str().unwrap();
    assert!(
        error.contains("Missing required field: description"),
        "error is {error:?}"
    );
    app.get("/orders/test124").await.expect_problem(404);
}

#[tokio::test]
async fn seed000_body_without_order_id_gets_a_server_made_uuid_v7() {
    let app = spawn_app();
    // Seed 000's "missing orderId" test body: here orderId is optional.
    let body = json!({"status": "received", "description": "But missing orderId!"});
    let r = app.post("/orders", body.to_string()).await;
    let order = r.expect_write(201);
    let id = order["orderId"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("{id} is not a UUID"));
    assert_eq!(
        uuid.get_version_num(),
        7,
        "server-made ids are UUIDv7: {id}"
    );
    assert_eq!(r.header("location"), Some(format!("/orders/{id}").as_str()));
    assert_eq!(app.order(id).await, order);
}

#[tokio::test]
async fn seed001_spanish_body_is_accepted_with_english_reply() {
    let app = spawn_app();
    let r = app.post("/orders", SEED001_POST).await;
    let order = r.expect_write(201);
    assert_eq!(
        r.json["message"], "Order processed successfully",
        "replies are in English"
    );
    assert_eq!(
        order["deliveryDate"], "2026-04-10",
        "DD/MM/YYYY is read as day/month/year"
    );
    assert_eq!(order["description"], "creacion de orden de trabajo");
    assert_eq!(order["status"], "received");
    assert_eq!(order["version"], 1);
    let id = order["orderId"].as_str().unwrap();
    assert_eq!(r.header("location"), Some(format!("/orders/{id}").as_str()));
    assert_eq!(app.order(id).await, order);
}

#[tokio::test]
async fn seed001_spanish_aliases_work_on_put() {
    let app = spawn_app();
    let id = app.post("/orders", SEED001_POST).await.expect_write(201)["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/orders/{id}");

    let order = app
        .put(
            &path,
            json!({"estado": "en_proceso", "fecha_entrega": "11/05/2026"}),
        )
        .await
        .expect_write(200);
    assert_eq!(order["status"], "inprocess");
    assert_eq!(order["deliveryDate"], "2026-05-11");

    let order = app
        .put(
            &path,
            json!({"estado": "completada", "descripcion": "orden terminada"}),
        )
        .await
        .expect_write(200);
    assert_eq!(order["status"], "completed");
    assert_eq!(order["description"], "orden terminada");
    assert_eq!(
        event_types(&app.events(&id).await),
        [
            "OrderPlaced",
            "OrderDetailsRevised",
            "OrderStarted",
            "OrderDetailsRevised",
            "OrderCompleted"
        ]
    );
}

#[tokio::test]
async fn seed001_spanish_cancel_via_put() {
    let app = spawn_app();
    let id = app.post("/orders", SEED001_POST).await.expect_write(201)["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = app
        .put(
            &format!("/orders/{id}"),
            json!({"estado": "cancelada", "reasonForCancellation": "cliente desiste"}),
        )
        .await
        .expect_write(200);
    assert_eq!(order["status"], "canceled");
    assert_eq!(order["reasonForCancellation"], "cliente desiste");
}
