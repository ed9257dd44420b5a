//! Restarts: a `kill -9` in the middle of load loses no acknowledged command and the read
//! model catches up on the next start; a SIGTERM stops cleanly and keeps everything.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use e2e::{Client, TestApp, assert_chain, log_time, spawn_app};
use http::Method;
use serde_json::{Value, json};
use tokio::sync::Notify;

const ORDERS: usize = 200;
const WORKERS: usize = 8;

fn place_body(i: usize) -> Value {
    json!({"orderId": format!("K-{i:03}"), "description": format!("durable order {i}"), "customerId": "C-durable"})
}

/// What the clients saw during the load.
#[derive(Default)]
struct Seen {
    /// Order id → the highest version a 2xx acknowledged, and the placement's answer.
    acked: BTreeMap<String, (u64, Value)>,
    /// Requests that got no HTTP response (the process died or stopped under them).
    no_response: Vec<String>,
    /// Responses that were neither the expected success nor a refusal to a stopping server.
    unexpected: Vec<String>,
    /// When each acknowledgement (2xx) arrived.
    ack_times: Vec<DateTime<Utc>>,
}

/// Places `ORDERS` orders from `WORKERS` concurrent clients (every other one is also
/// started), until `stop` is set. `notify` fires when `signal_after` placements are acked.
async fn load(
    client: Client,
    stop: Arc<AtomicBool>,
    signal_after: usize,
    notify: Arc<Notify>,
) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let placed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (seen, next, placed, stop, notify) = (
                seen.clone(),
                next.clone(),
                placed.clone(),
                stop.clone(),
                notify.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= ORDERS || stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let id = format!("K-{i:03}");
                    match client
                        .try_send(Method::POST, "/orders", place_body(i), &[])
                        .await
                    {
                        Ok(r) if r.status == 201 => {
                            let mut s = seen.lock().unwrap();
                            s.ack_times.push(Utc::now());
                            s.acked.insert(id.clone(), (1, r.json["order"].clone()));
                            drop(s);
                            if placed.fetch_add(1, Ordering::SeqCst) + 1 == signal_after {
                                notify.notify_one();
                            }
                        }
                        Ok(r) => {
                            seen.lock()
                                .unwrap()
                                .unexpected
                                .push(format!("POST {id}: {} {}", r.status, r.text));
                            continue;
                        }
                        Err(e) => {
                            seen.lock()
                                .unwrap()
                                .no_response
                                .push(format!("POST {id}: {e}"));
                            continue;
                        }
                    }
                    if i % 2 == 0 {
                        let path = format!("/orders/{id}/start");
                        match client.try_send(Method::POST, &path, (), &[]).await {
                            Ok(r) if r.status == 200 => {
                                let mut s = seen.lock().unwrap();
                                s.ack_times.push(Utc::now());
                                if let Some(entry) = s.acked.get_mut(&id) {
                                    entry.0 = 2;
                                }
                            }
                            Ok(r) => seen
                                .lock()
                                .unwrap()
                                .unexpected
                                .push(format!("{path}: {} {}", r.status, r.text)),
                            Err(e) => seen
                                .lock()
                                .unwrap()
                                .no_response
                                .push(format!("{path}: {e}")),
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("load worker");
    }
    Arc::try_unwrap(seen)
        .ok()
        .expect("workers are done")
        .into_inner()
        .unwrap()
}

/// Every acknowledged order is there with at least its acknowledged version, a gapless
/// valid chain and the content it was placed with. Returns the ids that exist.
async fn check_acked_orders_survived(app: &TestApp, seen: &Seen) -> HashSet<String> {
    let mut existing = HashSet::new();
    for (id, (version, placed)) in &seen.acked {
        let r = app.get(&format!("/orders/{id}")).await;
        assert_eq!(
            r.status, 200,
            "acknowledged order {id} was lost: {}",
            r.text
        );
        let got = r.json["version"].as_u64().unwrap();
        assert!(
            got >= *version,
            "{id}: acknowledged version {version}, found {got}"
        );
        for field in [
            "orderId",
            "description",
            "customerId",
            "registerDate",
            "createdAt",
        ] {
            assert_eq!(r.json[field], placed[field], "{id}: {field}");
        }
        let events = app.events(id).await; // checks versions 1..n and the hash chain
        assert_eq!(events.len() as u64, got, "{id}: events vs version");
        existing.insert(id.clone());
    }
    // Orders whose requests got no answer may or may not exist; if they do, they are whole.
    for i in 0..ORDERS {
        let id = format!("K-{i:03}");
        if existing.contains(&id) {
            continue;
        }
        let r = app.get(&format!("/orders/{id}")).await;
        match r.status {
            404 => {}
            200 => {
                let events = app.events(&id).await;
                assert_eq!(events.len() as u64, r.json["version"].as_u64().unwrap());
                existing.insert(id);
            }
            s => panic!("GET {id} after restart: {s} {}", r.text),
        }
    }
    existing
}

/// Places every order again with its original content (from concurrent clients): each
/// answer is a 201 with version 1, the first answer for those that existed. Afterwards all
/// `ORDERS` exist exactly once.
async fn retry_every_placement(app: &TestApp, seen: &Seen) {
    let client = app.client;
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= ORDERS {
                        return answers;
                    }
                    let r = client.post("/orders", place_body(i)).await;
                    let order = r.expect_write(201);
                    let events = client
                        .get(&format!("/orders/K-{i:03}/events"))
                        .await
                        .expect_status(200);
                    answers.push((i, order, events.json));
                }
            })
        })
        .collect();
    for w in workers {
        for (i, order, events) in w.await.expect("retry worker") {
            let id = format!("K-{i:03}");
            assert_eq!(
                order["version"], 1,
                "{id}: a retried placement answers as the placement"
            );
            if let Some((_, placed)) = seen.acked.get(&id) {
                assert_eq!(
                    &order, placed,
                    "{id}: the retry's answer differs from the first one"
                );
            }
            let events = events["items"].as_array().expect("events");
            assert_chain(&id, events);
            assert_eq!(events[0]["type"], "OrderPlaced");
        }
    }
}

/// The read model catches up and lists every order exactly once, equal to the fold.
async fn check_read_model_complete(app: &TestApp) {
    app.wait_projected().await;
    let listed = app.list_all("limit=100").await;
    assert_eq!(
        app.list_all("limit=7").await,
        listed,
        "small pages list the same orders in the same order"
    );
    let ids: Vec<String> = listed
        .iter()
        .map(|o| o["orderId"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an order is listed twice");
    let expected: HashSet<String> = (0..ORDERS).map(|i| format!("K-{i:03}")).collect();
    assert_eq!(
        unique.len(),
        expected.len(),
        "listed {} orders, expected {}",
        unique.len(),
        expected.len()
    );
    for item in &listed {
        let id = item["orderId"].as_str().unwrap();
        assert!(expected.contains(id), "unexpected order {id}");
        assert_eq!(item, &app.order(id).await, "read model vs events for {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_order_and_the_projection_catches_up() {
    let mut app = spawn_app();
    let stop = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(Notify::new());
    let load = tokio::spawn(load(app.client, stop.clone(), 60, notify.clone()));
    tokio::time::timeout(Duration::from_secs(30), notify.notified())
        .await
        .expect("60 placements acknowledged within 30 s");
    app.kill9();
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert!(
        seen.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        seen.unexpected
    );
    let acked_places = seen.acked.len();
    assert!(
        acked_places >= 60,
        "only {acked_places} placements acknowledged"
    );
    assert!(
        acked_places < ORDERS,
        "the load finished before the kill; the test proves nothing (acked {acked_places})"
    );

    app.start();
    let existing = check_acked_orders_survived(&app, &seen).await;
    // Kill again at once, while the projector may still be catching up, and start again.
    app.restart_after_crash();
    let again = check_acked_orders_survived(&app, &seen).await;
    assert_eq!(existing, again, "a second crash changed which orders exist");

    retry_every_placement(&app, &seen).await;
    check_read_model_complete(&app).await;
    // And the service keeps working: the chain continues where it stopped.
    let first = seen.acked.keys().next().unwrap().clone();
    let before = app.order(&first).await["version"].as_u64().unwrap();
    let after = app
        .put(
            &format!("/orders/{first}"),
            json!({"description": "after the crash"}),
        )
        .await
        .expect_write(200);
    assert_eq!(after["version"].as_u64(), Some(before + 1));
    app.events(&first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_stops_cleanly_and_keeps_every_acknowledged_order() {
    // At info, `orders dev` logs when it begins to shut down.
    let mut app = TestApp::spawn_with_env(&[("RUST_LOG", "warn,orders::dev=info")]);
    let stop = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(Notify::new());
    let load = tokio::spawn(load(app.client, stop.clone(), 40, notify.clone()));
    tokio::time::timeout(Duration::from_secs(30), notify.notified())
        .await
        .expect("40 placements acknowledged within 30 s");
    let status = app.stop_graceful().await;
    stop.store(true, Ordering::SeqCst);
    assert!(
        status.success(),
        "exit status {status} after SIGTERM\nlog:\n{}",
        app.log_tail(4000)
    );
    let seen = load.await.unwrap();
    // A stopping server finishes what it accepted and refuses new connections: no 5xx.
    assert!(
        seen.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        seen.unexpected
    );
    assert!(seen.acked.len() >= 40);
    // The overlap happened: commands were acknowledged after the server had begun to shut
    // down (the log's clock and the client's are the machine's).
    let shutdown_at = app
        .log_lines()
        .iter()
        .find(|l| l.ends_with("shutdown requested"))
        .and_then(|l| log_time(l))
        .unwrap_or_else(|| {
            panic!(
                "no `shutdown requested` in the log:\n{}",
                app.log_tail(4000)
            )
        });
    let acked_during_shutdown = seen.ack_times.iter().filter(|t| **t > shutdown_at).count();
    assert!(
        acked_during_shutdown > 0,
        "no command was acknowledged after the shutdown began at {shutdown_at} (last ack {:?}): \
         the test proves nothing about requests in flight",
        seen.ack_times.iter().max()
    );

    app.start();
    check_acked_orders_survived(&app, &seen).await;
    retry_every_placement(&app, &seen).await;
    check_read_model_complete(&app).await;
}

#[tokio::test]
async fn sigterm_restart_keeps_every_order_event_and_projection() {
    let mut app = spawn_app();
    let mut ids = Vec::new();
    for i in 0..12 {
        let id = format!("G-{i:02}");
        app.place(&id, &format!("graceful {i}")).await;
        match i % 4 {
            1 => {
                app.post(&format!("/orders/{id}/start"), ())
                    .await
                    .expect_write(200);
            }
            2 => {
                app.post(&format!("/orders/{id}/start"), ())
                    .await
                    .expect_write(200);
                app.post(&format!("/orders/{id}/complete"), ())
                    .await
                    .expect_write(200);
            }
            3 => {
                app.put(&format!("/orders/{id}"), json!({"description": "revised", "status": "canceled", "reasonForCancellation": "r"}))
                    .await
                    .expect_write(200);
            }
            _ => {}
        }
        ids.push(id);
    }
    // An idempotent write whose replay must survive too.
    let keyed = app
        .put_with(
            "/orders/G-00",
            json!({"deliveryDate": "2026-10-10"}),
            &[("idempotency-key", "key-G-00")],
        )
        .await;
    keyed.expect_write(200);

    let mut before = Vec::new();
    for id in &ids {
        before.push(app.snapshot(id).await);
    }
    app.wait_projected().await;
    let listed_before = app.list_all("limit=7").await;

    let status = app.stop_graceful().await;
    assert!(
        status.success(),
        "exit status {status} after SIGTERM\nlog:\n{}",
        app.log_tail(4000)
    );
    assert_eq!(
        app.stdout_after_address(),
        "",
        "stdout must hold only the address line"
    );
    app.start();

    for (id, snap) in ids.iter().zip(&before) {
        assert_eq!(
            &app.snapshot(id).await,
            snap,
            "{id} changed across a graceful restart"
        );
        assert_chain(id, snap.events.1["items"].as_array().unwrap());
    }
    app.wait_projected().await;
    assert_eq!(app.list_all("limit=7").await, listed_before);
    assert_eq!(app.projector_lag().await, 0);

    let replay = app
        .put_with(
            "/orders/G-00",
            json!({"deliveryDate": "2026-10-10"}),
            &[("idempotency-key", "key-G-00")],
        )
        .await;
    assert_eq!(
        (replay.status, &replay.text),
        (200, &keyed.text),
        "the idempotent answer survives a restart"
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // Writes continue the chain after the restart.
    let order = app
        .post("/orders/G-01/complete", ())
        .await
        .expect_write(200);
    assert_eq!(order["version"], 3);
    app.events("G-01").await;
    // And a second graceful restart is just as clean.
    app.restart_graceful().await;
    assert_eq!(app.order("G-01").await, order);
}

#[tokio::test]
async fn sigint_stops_cleanly_like_sigterm() {
    let mut app = spawn_app();
    app.place("I-1", "interrupted").await;
    app.post("/orders/I-1/start", ()).await.expect_write(200);
    let before = app.snapshot("I-1").await;
    let status = app.stop_with_signal("INT").await;
    assert!(
        status.success(),
        "exit status {status} after SIGINT\nlog:\n{}",
        app.log_tail(4000)
    );
    app.start();
    assert_eq!(app.snapshot("I-1").await, before);
    app.wait_projected().await;
    assert_eq!(app.list_all("").await, vec![app.order("I-1").await]);
}

#[tokio::test]
async fn idempotent_answers_survive_kill_9() {
    let mut app = spawn_app();
    let key = [("idempotency-key", "key-crash")];
    let placed = app
        .post_with(
            "/orders",
            json!({"orderId": "KI-1", "description": "keyed"}),
            &key,
        )
        .await;
    placed.expect_write(201);
    let put_key = [("idempotency-key", "key-crash-put")];
    let revised = app
        .put_with("/orders/KI-1", json!({"description": "keyed 2"}), &put_key)
        .await;
    revised.expect_write(200);
    app.restart_after_crash();

    let again = app
        .post_with(
            "/orders",
            json!({"orderId": "KI-1", "description": "keyed"}),
            &key,
        )
        .await;
    assert_eq!((again.status, &again.text), (201, &placed.text));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let again = app
        .put_with("/orders/KI-1", json!({"description": "keyed 2"}), &put_key)
        .await;
    assert_eq!((again.status, &again.text), (200, &revised.text));
    app.put_with("/orders/KI-1", json!({"description": "other"}), &put_key)
        .await
        .expect_problem(422);
    assert_eq!(app.events("KI-1").await.len(), 2);
}

#[tokio::test]
async fn a_second_instance_on_the_same_data_dir_refuses_to_start() {
    let app = spawn_app();
    app.place("S-1", "single writer").await;
    let out = std::process::Command::new(e2e::orders_bin())
        .args(["dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(app.data_dir())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running a second orders dev");
    assert!(
        !out.status.success(),
        "a second instance started on the same data directory"
    );
    assert!(
        out.stdout.is_empty(),
        "it printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use"),
        "the error should say the directory is in use: {stderr}"
    );
    // The first instance is unaffected.
    assert_eq!(app.order("S-1").await["version"], 1);
    app.events("S-1").await;
}

#[tokio::test]
async fn sigterm_exits_promptly_even_with_a_stalled_client() {
    use tokio::io::AsyncWriteExt;
    let mut app = spawn_app();
    // A slow upload: headers complete, body cut short.
    let mut slow_body = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow_body
        .write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"desc")
        .await
        .unwrap();
    // A client that stopped in the middle of its headers.
    let mut slow_headers = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow_headers
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Both connections were accepted before this one was answered.
    app.place("T-1", "while others stall").await;
    // `stop_graceful` fails the test if the process is still running after SHUTDOWN_TIMEOUT.
    let status = app.stop_graceful().await;
    assert!(status.success(), "exit status {status}");
    drop((slow_body, slow_headers));
    app.start();
    assert_eq!(app.order("T-1").await["version"], 1);
}
