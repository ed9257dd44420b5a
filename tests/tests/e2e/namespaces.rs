//! Idempotency namespaces on a running `orders dev`: a client's `Idempotency-Key` and a
//! handler's ledger claim share one store, but a client cannot name a handler's claim.

use std::time::Duration;

use e2e::{
    TestApp,
    audit::{document_names, wait_drained},
    orders_bin, wait_until,
};
use serde_json::{Value, json};

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(30);

async fn received_dead_letters(app: &TestApp) -> Value {
    let h = app.get("/health").await.expect_status(200).json;
    h["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == "order-received"))
        .map(|q| q["deadLetters"].clone())
        .unwrap_or(Value::Null)
}

/// The attack of issue 12: while an event waits for its handler (here: dead-lettered,
/// awaiting a redrive), a client reads its id and sends a write under the handler's
/// claim's spelling. The redriven event is still handled and its document written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_spelled_like_a_handler_claim_does_not_block_the_handler() {
    let mut app = TestApp::spawn_with_env(&[
        ("ORDERS_VISIBILITY_TIMEOUT", "1"),
        ("ORDERS_HANDLER_FAIL_MARKER", "POISON"),
    ]);
    app.place("NS-1", "a POISON pill").await;
    wait_until(PIPELINE_TIMEOUT, "the placement dead-lettered", || async {
        received_dead_letters(&app).await == 1
    })
    .await;
    let event_id = app.events("NS-1").await[0]["eventId"]
        .as_str()
        .expect("an event id")
        .to_owned();

    // The old spelling of the claim is a valid key, kept in the client's own namespace; a
    // write that changes nothing still saves its answer under it.
    let old = format!("handled:received:{event_id}");
    app.put_with(
        "/orders/NS-1",
        json!({"status": "received"}),
        &[("idempotency-key", &old)],
    )
    .await
    .expect_write(200);
    // The namespaced spelling cannot be sent at all.
    let new = format!("handler/received/{event_id}");
    let refused = app
        .put_with(
            "/orders/NS-1",
            json!({"status": "received"}),
            &[("idempotency-key", &new)],
        )
        .await;
    assert_eq!(
        refused.expect_field_error(400, "Idempotency-Key")["type"],
        "https://ordersource.dev/problems/invalid-idempotency-key"
    );

    assert!(app.stop_graceful().await.success());
    app.remove_env("ORDERS_HANDLER_FAIL_MARKER");
    app.start();
    let out = std::process::Command::new(orders_bin())
        .args(["dlq", "redrive", "--queue", "order-received", "--data"])
        .arg(app.data_dir())
        .output()
        .expect("orders dlq redrive runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(PIPELINE_TIMEOUT, "the redriven event handled", || async {
        document_names(&app, "NS-1").await == ["000001-acknowledgement.json"]
    })
    .await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    assert_eq!(received_dead_letters(&app).await, 0);
}
