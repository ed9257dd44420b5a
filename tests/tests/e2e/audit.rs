//! Replay and audit against a running `orders dev`, as an outside auditor would do it: fill
//! the store through the HTTP API, `orders audit verify` (clean), change one byte of one
//! stored event in `events.db` (detected, naming the order and version), `orders rebuild`
//! (equal to the live projection, also while writes go on), `orders republish` (replayed
//! events reach the handlers, which repeat no effect), and `orders replay`.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use e2e::{
    TestApp,
    audit::{count_in_log, documents, explain, fill, json_lines, stdout, wait_drained},
    orders_bin, spawn_app, wait_until,
};
use serde_json::{Value, json};

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `orders <args> --data <dir>` to completion.
fn orders(args: &[&str], data: &Path) -> Output {
    Command::new(orders_bin())
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("ORDERS_DATA")
        .env_remove("ORDERS_BACKEND")
        .env("RUST_LOG", "warn")
        .output()
        .expect("orders runs")
}

async fn orders_async(args: &[&str], data: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || {
        orders(&args.iter().map(String::as_str).collect::<Vec<_>>(), &data)
    })
    .await
    .expect("the command's thread")
}

/// Changes one byte inside the `data` of one stored event, directly in `orders.db`.
fn change_one_byte_of_data(data_dir: &Path, order_id: &str, version: u64) {
    let conn = rusqlite::Connection::open(data_dir.join("orders.db")).expect("opens orders.db");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let envelope: String = conn
        .query_row(
            "SELECT envelope FROM events WHERE order_id = ?1 AND version = ?2",
            rusqlite::params![order_id, version],
            |r| r.get(0),
        )
        .expect("the event is stored");
    let data = envelope.find("\"data\":{").expect("a data member") + "\"data\":{".len();
    // The first letter of the first string value in `data`.
    let value = data + envelope[data..].find(":\"").expect("a string value") + 2;
    let mut bytes = envelope.into_bytes();
    bytes[value] = if bytes[value] == b'X' { b'Y' } else { b'X' };
    let changed = String::from_utf8(bytes).expect("still UTF-8");
    let rows = conn
        .execute(
            "UPDATE events SET envelope = ?3 WHERE order_id = ?1 AND version = ?2",
            rusqlite::params![order_id, version, changed],
        )
        .expect("updates");
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_is_clean_then_names_the_order_and_version_of_one_changed_byte() {
    let app = spawn_app();
    let ids = fill(&app, "AV", 15).await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    let data = app.data_dir();

    let clean = orders_async(&["audit", "verify"], &data).await;
    assert!(clean.status.success(), "{}", explain(&clean));
    assert!(
        stdout(&clean).contains("15 order(s), 36 event(s), 0 problem(s)"),
        "{}",
        explain(&clean)
    );
    let summary = json_lines(&orders_async(&["audit", "verify", "--json"], &data).await);
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["summary"]["clean"], true);
    assert_eq!(summary[0]["summary"]["events"], 36);

    // AV-02 is placed, revised, started, canceled: change its revision's description.
    let (damaged, version) = (&ids[2], 2);
    change_one_byte_of_data(&data, damaged, version);

    let found = orders_async(&["audit", "verify"], &data).await;
    assert!(!found.status.success(), "{}", explain(&found));
    let out = stdout(&found);
    assert!(
        out.contains(&format!("order {damaged}, version {version}: hash:")),
        "{}",
        explain(&found)
    );
    assert!(out.contains("1 order(s)"), "{}", explain(&found));
    let lines = json_lines(&orders_async(&["audit", "verify", "--json"], &data).await);
    let problems: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("summary").is_none())
        .collect();
    assert!(
        problems.iter().any(|p| p["orderId"] == damaged.as_str()
            && p["version"] == version
            && p["property"] == "hash"),
        "{lines:?}"
    );
    assert!(
        problems.iter().all(|p| p["orderId"] == damaged.as_str()),
        "{lines:?}"
    );
    assert_eq!(lines.last().expect("a summary")["summary"]["clean"], false);

    // One order at a time: the damaged one fails, another one passes.
    let one = orders_async(&["audit", "verify", "--order", damaged], &data).await;
    assert!(!one.status.success(), "{}", explain(&one));
    let other = orders_async(&["audit", "verify", "--order", &ids[3]], &data).await;
    assert!(other.status.success(), "{}", explain(&other));
    // Replay still shows the trail, and warns that the chain is damaged.
    let replay = orders_async(&["replay", "--order", damaged], &data).await;
    assert!(replay.status.success(), "{}", explain(&replay));
    assert!(
        stdout(&replay).contains("CHAIN DAMAGED"),
        "{}",
        explain(&replay)
    );
    assert!(
        String::from_utf8_lossy(&replay.stderr).contains("damaged"),
        "{}",
        explain(&replay)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_beside_the_running_service_equals_the_live_projection() {
    let app = spawn_app();
    fill(&app, "RB", 20).await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    let data = app.data_dir();
    let before = app.list_all("").await;
    assert_eq!(before.len(), 20);

    let out = orders_async(&["rebuild", "--json"], &data).await;
    assert!(out.status.success(), "{}", explain(&out));
    let summary = &json_lines(&out)[0]["summary"];
    assert_eq!(summary["orders"], 20, "{summary}");
    assert_eq!(summary["changed"], 0, "{summary}");
    assert_eq!(
        app.list_all("").await,
        before,
        "the rebuilt read model is the live one"
    );
    for status in ["received", "inprocess", "completed", "canceled"] {
        let live: Vec<&Value> = before.iter().filter(|o| o["status"] == status).collect();
        let listed = app.list_all(&format!("status={status}")).await;
        assert_eq!(
            listed.iter().collect::<Vec<_>>(),
            live,
            "by status {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_during_writes_loses_no_version() {
    let app = spawn_app();
    fill(&app, "RW", 10).await;
    let data = app.data_dir();
    // Writes go on while rebuilds run one after the other.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, stop) = (app.client, stop.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("RW-LIVE-{written:04}");
                client
                    .post(
                        "/orders",
                        json!({"orderId": id, "description": "written during a rebuild"}),
                    )
                    .await
                    .expect_status(201);
                client
                    .post(&format!("/orders/{id}/start"), json!({}))
                    .await
                    .expect_status(200);
                written += 1;
            }
            written
        })
    };
    // Until a rebuild has seen events appended while it ran (observed, not assumed: its
    // catch-up counts them), and at least twice.
    let mut rebuilds = 0;
    let mut caught_up = 0;
    while rebuilds < 2 || caught_up == 0 {
        assert!(
            rebuilds < 50,
            "no rebuild overlapped a write in {rebuilds} tries"
        );
        let out = orders_async(&["rebuild", "--json"], &data).await;
        assert!(out.status.success(), "{}", explain(&out));
        caught_up += json_lines(&out)[0]["summary"]["caughtUp"]
            .as_u64()
            .expect("caughtUp in the summary");
        rebuilds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("the writer");
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    let listed = app.list_all("").await;
    assert_eq!(listed.len(), 10 + written);
    for order in &listed {
        let id = order["orderId"].as_str().expect("an id");
        assert_eq!(
            order,
            &app.order(id).await,
            "the read model has the latest state of {id}"
        );
    }
    let verify = orders_async(&["audit", "verify"], &data).await;
    assert!(verify.status.success(), "{}", explain(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_beside_ongoing_writes_finds_no_problem() {
    let app = spawn_app();
    fill(&app, "VW", 5).await;
    let data = app.data_dir();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, stop) = (app.client, stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("VW-LIVE-{i:04}");
                client
                    .post(
                        "/orders",
                        json!({"orderId": id, "description": "written during an audit"}),
                    )
                    .await
                    .expect_status(201);
                client
                    .post(&format!("/orders/{id}/start"), json!({}))
                    .await
                    .expect_status(200);
                client
                    .post(&format!("/orders/{id}/complete"), json!({}))
                    .await
                    .expect_status(200);
                i += 1;
            }
            i
        })
    };
    // The projector runs milliseconds behind the writes: verify must tell lag from damage.
    for _ in 0..3 {
        let out = orders_async(&["audit", "verify"], &data).await;
        assert!(out.status.success(), "{}", explain(&out));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("the writer");
    assert!(written > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_events_reach_the_handlers_marked_replayed_and_repeat_no_effect() {
    let mut app = TestApp::spawn_with_env(&[("RUST_LOG", "warn,handlers=debug")]);
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let ids = fill(&app, "RP", 10).await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    // Placed 10, started 4, completed 2 (a JSON and a PDF invoice each), canceled 4: 22
    // documents.
    let docs = documents(&app, &ids).await;
    assert_eq!(docs.len(), 22);
    assert_eq!(count_in_log(&app, "document written"), 22);
    let to = chrono::Utc::now() + chrono::Duration::seconds(60);
    let (from, to) = (from.to_rfc3339(), to.to_rfc3339());
    let data = app.data_dir();

    // Beside the running service: every event of the window goes to the bus again.
    let out = orders_async(
        &["republish", "--from", &from, "--to", &to, "--json"],
        &data,
    )
    .await;
    assert!(out.status.success(), "{}", explain(&out));
    let summary = &json_lines(&out)[0]["summary"];
    assert_eq!(summary["published"], 24, "{summary}");
    wait_until(
        PIPELINE_TIMEOUT,
        "the handlers to see every replayed event",
        || async { count_in_log(&app, "already handled") >= 20 },
    )
    .await;
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    assert_eq!(
        documents(&app, &ids).await,
        docs,
        "no document added or changed"
    );
    assert_eq!(
        count_in_log(&app, "document written"),
        22,
        "no document written again"
    );

    // With the service stopped, what waits in the queues is marked "replayed": true.
    app.stop_graceful().await;
    let one = &ids[2]; // placed, revised, started, canceled
    let out = orders_async(
        &[
            "republish",
            "--from",
            &from,
            "--to",
            &to,
            "--order",
            one,
            "--status",
            "canceled",
        ],
        &data,
    )
    .await;
    assert!(out.status.success(), "{}", explain(&out));
    let out = orders_async(
        &["republish", "--from", &from, "--to", &to, "--order", one],
        &data,
    )
    .await;
    assert!(out.status.success(), "{}", explain(&out));
    let queued: Vec<(String, Value)> = {
        let conn = rusqlite::Connection::open(data.join("orders.db")).expect("opens orders.db");
        let mut stmt = conn
            .prepare("SELECT queue, body FROM messages ORDER BY seq")
            .expect("prepares");
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .expect("queries")
            .map(|r| {
                let (queue, body) = r.expect("a row");
                (queue, serde_json::from_str(&body).expect("JSON"))
            })
            .collect()
    };
    let routed: Vec<(&str, &str, u64)> = queued
        .iter()
        .map(|(q, b)| {
            assert_eq!(b["detail"]["replayed"], true, "{b}");
            assert_eq!(b["detail"]["event"]["orderId"], one.as_str());
            (
                q.as_str(),
                b["detail-type"].as_str().unwrap_or(""),
                b["detail"]["event"]["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        routed,
        vec![
            ("order-canceled", "OrderCanceled", 4),
            ("order-received", "OrderPlaced", 1),
            ("order-received", "OrderDetailsRevised", 2),
            ("order-inprocess", "OrderStarted", 3),
            ("order-canceled", "OrderCanceled", 4),
        ]
    );
    app.start();
    wait_drained(&app, PIPELINE_TIMEOUT).await;
    assert_eq!(documents(&app, &ids).await, docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_shows_each_event_with_the_state_after_it_and_stops_at_a_version_or_time() {
    let app = spawn_app();
    let ids = fill(&app, "RY", 3).await;
    let id = &ids[2]; // placed, revised, started, canceled
    let data = app.data_dir();
    let events = app.events(id).await;

    let out = orders_async(&["replay", "--order", id, "--json"], &data).await;
    assert!(out.status.success(), "{}", explain(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["event"], events[i], "the event as stored");
        let state = app
            .get(&format!("/orders/{id}?version={}", i + 1))
            .await
            .expect_status(200)
            .json;
        assert_eq!(line["order"], state, "the state after version {}", i + 1);
    }
    let upto = json_lines(
        &orders_async(
            &["replay", "--order", id, "--version", "2", "--json"],
            &data,
        )
        .await,
    );
    assert_eq!(upto.len(), 2);
    let at = events[2]["occurredAt"].as_str().expect("a time");
    let upto =
        json_lines(&orders_async(&["replay", "--order", id, "--at", at, "--json"], &data).await);
    assert_eq!(upto.last().expect("a line")["order"]["status"], "inprocess");

    let table = orders_async(&["replay", "--order", id], &data).await;
    assert!(table.status.success(), "{}", explain(&table));
    let text = stdout(&table);
    for needle in [
        "chain intact",
        "OrderPlaced",
        "OrderDetailsRevised",
        "status: inprocess → canceled",
        "reasonForCancellation: no longer needed",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let missing = orders_async(&["replay", "--order", "nobody"], &data).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no events"),
        "{}",
        explain(&missing)
    );
    let past = orders_async(&["replay", "--order", id, "--version", "9"], &data).await;
    assert!(!past.status.success(), "{}", explain(&past));
}

/// `orders audit digest` and `orders audit verify --digest`: a store sealed by a Merkle root
/// over every order's head; deleting the last event of an order, changing a byte or editing
/// the digest file is named afterwards, appending is not a problem. On the embedded backend
/// here, and on the AWS APIs of a moto server.
mod digest {
    use std::path::Path;

    use e2e::{
        TestApp,
        audit::{
            aws_prefix, bootstrap_aws, explain, fill, json_lines, orders_on_aws, printed_root,
            read_digest, stdout,
        },
        moto, spawn_app,
    };
    use events_schema::audit::{DigestFile, Leaf};
    use serde_json::{Value, json};

    use super::{change_one_byte_of_data, orders_async};

    fn problems(o: &std::process::Output) -> Vec<Value> {
        json_lines(o)
            .into_iter()
            .filter(|l| l.get("summary").is_none())
            .collect()
    }

    fn summary(o: &std::process::Output) -> Value {
        json_lines(o).last().expect("a summary line")["summary"].clone()
    }

    fn path(p: &Path) -> &str {
        p.to_str().expect("a UTF-8 path")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_with_a_digest_names_a_deleted_last_event_and_a_changed_byte_but_not_appends() {
        let app = spawn_app();
        // DG-00: 3 events, DG-01: 2, DG-02: 4 (placed, revised, started, canceled),
        // DG-03: 2 (placed, revised), DG-04: 1.
        let ids = fill(&app, "DG", 5).await;
        let data = app.data_dir();
        let file = data.with_file_name("digest.json");

        let sealed = orders_async(&["audit", "digest", "--out", path(&file)], &data).await;
        assert!(sealed.status.success(), "{}", explain(&sealed));
        assert!(
            stdout(&sealed).contains("5 order(s), 12 event(s)"),
            "{}",
            explain(&sealed)
        );
        let root = printed_root(&sealed);
        let only = orders_async(&["audit", "digest", "--root-only"], &data).await;
        assert_eq!(stdout(&only).trim(), root, "{}", explain(&only));
        let digest = read_digest(&file);
        assert_eq!(digest["formatVersion"], 1);
        assert_eq!(digest["root"], root.as_str());
        assert_eq!(
            digest["leaves"][2],
            json!({"orderId": "DG-02", "version": 4, "hash": app.events("DG-02").await[3]["hash"]})
        );

        let clean = orders_async(
            &["audit", "verify", "--digest", path(&file), "--root", &root],
            &data,
        )
        .await;
        assert!(clean.status.success(), "{}", explain(&clean));

        // Appended since: an event to a sealed order, a new order. Still clean, counted.
        app.post("/orders/DG-04/start", json!({}))
            .await
            .expect_status(200);
        app.place("DG-NEW", "after the digest").await;
        let appended = orders_async(
            &["audit", "verify", "--digest", path(&file), "--json"],
            &data,
        )
        .await;
        assert!(appended.status.success(), "{}", explain(&appended));
        let s = summary(&appended);
        assert_eq!(
            (
                &s["appendedEvents"],
                &s["newOrders"],
                &s["newOrderEvents"],
                &s["clean"]
            ),
            (&json!(1), &json!(1), &json!(1), &json!(true)),
            "{s}"
        );

        // The last event of DG-02 deleted: every remaining link is still valid.
        let conn = rusqlite::Connection::open(data.join("orders.db")).expect("opens orders.db");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        let deleted = conn
            .execute(
                "DELETE FROM events WHERE order_id = 'DG-02' AND version = 4",
                [],
            )
            .expect("deletes");
        assert_eq!(deleted, 1);
        let truncated = orders_async(&["audit", "verify", "--digest", path(&file)], &data).await;
        assert_eq!(truncated.status.code(), Some(1), "{}", explain(&truncated));
        let out = stdout(&truncated);
        assert!(
            out.contains("order DG-02: version 4 missing (digest covers 1..=4)"),
            "{}",
            explain(&truncated)
        );
        assert!(
            out.contains("1 problem(s) in 1 order(s)"),
            "{}",
            explain(&truncated)
        );

        // One byte of DG-03's revision changed as well.
        change_one_byte_of_data(&data, &ids[3], 2);
        let both = orders_async(
            &["audit", "verify", "--digest", path(&file), "--json"],
            &data,
        )
        .await;
        assert_eq!(both.status.code(), Some(1), "{}", explain(&both));
        let found: Vec<(Value, Value, Value)> = problems(&both)
            .into_iter()
            .map(|p| {
                (
                    p["orderId"].clone(),
                    p["version"].clone(),
                    p["problem"].clone(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (json!("DG-02"), json!(4), json!("missing")),
                (json!("DG-03"), json!(2), json!("changed")),
            ],
            "{}",
            explain(&both)
        );
        assert!(
            stdout(&orders_async(&["audit", "verify", "--digest", path(&file)], &data).await)
                .contains("order DG-03: version 2 changed: hash:"),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edited_digest_file_fails_its_root_check_before_the_store_is_read() {
        let app = spawn_app();
        fill(&app, "DF", 3).await;
        let data = app.data_dir();
        let file = data.with_file_name("digest.json");
        let sealed = orders_async(&["audit", "digest", "--out", path(&file)], &data).await;
        assert!(sealed.status.success(), "{}", explain(&sealed));
        let root = printed_root(&sealed);

        // A tamperer who truncates DF-00 (3 events) lowers its leaf to version 2 and that
        // version's hash, and the count to match.
        let mut digest = read_digest(&file);
        digest["leaves"][0]["version"] = json!(2);
        digest["leaves"][0]["hash"] = app.events("DF-00").await[1]["hash"].clone();
        digest["events"] = json!(digest["events"].as_u64().expect("events") - 1);
        let edited = data.with_file_name("edited.json");
        std::fs::write(&edited, digest.to_string()).expect("writes");
        let refused = orders_async(&["audit", "verify", "--digest", path(&edited)], &data).await;
        assert_eq!(refused.status.code(), Some(1), "{}", explain(&refused));
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            err.contains("hash to root") && err.contains("the file was changed"),
            "{}",
            explain(&refused)
        );
        assert!(stdout(&refused).is_empty(), "{}", explain(&refused));

        // Root recomputed too (the forger has the encoding): the file is consistent and the
        // store still holds all it now covers; only the root kept elsewhere tells.
        let leaves: Vec<Leaf> =
            serde_json::from_value(digest["leaves"].clone()).expect("the leaves");
        let forged = DigestFile::new(leaves, chrono::Utc::now(), "embedded", 0.0);
        std::fs::write(&edited, serde_json::to_string(&forged).expect("JSON")).expect("writes");
        let unkept = orders_async(&["audit", "verify", "--digest", path(&edited)], &data).await;
        assert!(unkept.status.success(), "{}", explain(&unkept));
        let kept = orders_async(
            &[
                "audit",
                "verify",
                "--digest",
                path(&edited),
                "--root",
                &root,
            ],
            &data,
        )
        .await;
        assert_eq!(kept.status.code(), Some(1), "{}", explain(&kept));
        assert!(
            String::from_utf8_lossy(&kept.stderr).contains("is not the root"),
            "{}",
            explain(&kept)
        );
        let bad = orders_async(
            &["audit", "verify", "--digest", path(&file), "--root", "xyz"],
            &data,
        )
        .await;
        assert!(!bad.status.success(), "{}", explain(&bad));
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("64 lowercase hex digits"),
            "{}",
            explain(&bad)
        );
    }

    fn event_key(order_id: &str, version: u64) -> Value {
        json!({"orderId": {"S": order_id}, "version": {"N": version.to_string()}})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_aws_verify_with_a_digest_names_a_deleted_last_event_and_a_changed_byte() {
        let prefix = aws_prefix();
        let env = moto::env(&prefix);
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        bootstrap_aws(&env_refs);
        let table = format!("{prefix}orders-events");
        let app = TestApp::spawn_with(
            &["--backend", "aws", "--endpoint", moto::endpoint()],
            &env_refs,
        );
        fill(&app, "AD", 4).await; // AD-02: 4 events, AD-03: 2 (placed, revised)
        let file = app.data_dir().with_file_name("digest.json");

        let sealed = orders_on_aws(&["audit", "digest", "--out", path(&file)], &env).await;
        assert!(sealed.status.success(), "{}", explain(&sealed));
        assert!(
            stdout(&sealed).contains("4 order(s), 11 event(s)"),
            "{}",
            explain(&sealed)
        );
        assert_eq!(read_digest(&file)["backend"], "aws");
        let root = printed_root(&sealed);
        app.post("/orders/AD-03/start", json!({}))
            .await
            .expect_status(200);
        let appended = orders_on_aws(
            &[
                "audit",
                "verify",
                "--digest",
                path(&file),
                "--root",
                &root,
                "--json",
            ],
            &env,
        )
        .await;
        assert!(appended.status.success(), "{}", explain(&appended));
        assert_eq!(summary(&appended)["appendedEvents"], 1);

        moto::dynamodb(
            "DeleteItem",
            json!({"TableName": table, "Key": event_key("AD-02", 4)}),
        )
        .await;
        moto::dynamodb(
            "UpdateItem",
            json!({
                "TableName": table,
                "Key": event_key("AD-03", 2),
                "UpdateExpression": "SET #data.#description = :v",
                "ExpressionAttributeNames": {"#data": "data", "#description": "description"},
                "ExpressionAttributeValues": {":v": {"S": "Xevised order 3"}},
            }),
        )
        .await;
        let found = orders_on_aws(&["audit", "verify", "--digest", path(&file)], &env).await;
        assert_eq!(found.status.code(), Some(1), "{}", explain(&found));
        let out = stdout(&found);
        assert!(
            out.contains("order AD-02: version 4 missing (digest covers 1..=4)")
                && out.contains("order AD-03: version 2 changed: hash:")
                && out.contains("2 problem(s) in 2 order(s)"),
            "{}",
            explain(&found)
        );
    }
}
