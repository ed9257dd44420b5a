//! What only the embedded backend does: the in-memory hand-over from the writer to the
//! change feed and its catch-up from the log, queue receive state kept in memory (and what
//! of it survives a restart), another process's queue writes picked up by the running
//! service, and the writer's counters.

use std::time::Duration;

use backend::{
    Append, ChangeFeed, EventStore, Queues,
    embedded::{DataDir, DetachedQueues, Embedded, queue_configs},
};
use chrono::Utc;
use events_schema::{
    Command, Description, EventContext, Metadata, OrderId, PlaceOrder, Recorded, Status, decide,
    record, route_table,
};

fn open(dir: &std::path::Path) -> Embedded {
    Embedded::open(dir, route_table()).expect("opens")
}

/// Places `id` directly through the event store.
async fn place(e: &Embedded, id: &str) -> Recorded {
    let order_id = OrderId::parse(id).expect("an id");
    let command = Command::Place(PlaceOrder {
        description: Description::parse("a thing").expect("a description"),
        register_date: Utc::now(),
        delivery_date: None,
        customer_id: None,
    });
    let events = decide(&order_id, None, &command).expect("accepted");
    let ctx = EventContext {
        occurred_at: Utc::now(),
        metadata: Metadata {
            correlation_id: "c".into(),
            ..Metadata::default()
        },
    };
    let recorded = record(&order_id, None, events, &ctx, uuid::Uuid::now_v7).expect("records");
    e.events
        .append(Append {
            order_id,
            expected_version: 0,
            events: recorded.clone(),
            idempotency: None,
        })
        .await
        .expect("appends");
    recorded.into_iter().next().expect("one event")
}

fn ids(changes: &[backend::Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| c.recorded.envelope.order_id.to_string())
        .collect()
}

#[tokio::test]
async fn the_feed_hands_over_committed_events_and_reads_the_log_for_what_was_not_checkpointed() {
    let dir = tempfile::tempdir().expect("a dir");
    let e = open(dir.path());
    for id in ["A", "B", "C"] {
        place(&e, id).await;
    }
    let wait = Duration::from_secs(5);
    let first = e.feed.next_batch(10, wait).await.expect("a batch");
    assert_eq!(ids(&first), ["A", "B", "C"]);
    // Only the first is done: the rest comes again, now from the log.
    e.feed.checkpoint(&first[0].at).await.expect("checkpoints");
    let again = e.feed.next_batch(10, wait).await.expect("a batch");
    assert_eq!(again, first[1..]);
    e.feed.checkpoint(&again[1].at).await.expect("checkpoints");
    assert_eq!(e.feed.lag().await.expect("lag"), 0);
    // New commits come through memory again, right after the checkpoint.
    place(&e, "D").await;
    let next = e.feed.next_batch(10, wait).await.expect("a batch");
    assert_eq!(ids(&next), ["D"]);
    assert!(
        e.feed
            .next_batch(10, Duration::from_millis(50))
            .await
            .expect("a batch")
            .iter()
            .all(|c| c.recorded.envelope.order_id.as_str() == "D"),
        "nothing but the unacknowledged D"
    );
}

#[tokio::test]
async fn a_reopened_directory_resumes_the_feed_after_its_durable_checkpoint() {
    let dir = tempfile::tempdir().expect("a dir");
    {
        let e = open(dir.path());
        for id in ["A", "B", "C"] {
            place(&e, id).await;
        }
        let batch = e
            .feed
            .next_batch(2, Duration::from_secs(5))
            .await
            .expect("a batch");
        e.feed.checkpoint(&batch[1].at).await.expect("checkpoints");
    }
    let e = open(dir.path());
    assert_eq!(e.feed.lag().await.expect("lag"), 1);
    let rest = e
        .feed
        .next_batch(10, Duration::from_secs(5))
        .await
        .expect("a batch");
    assert_eq!(ids(&rest), ["C"]);
}

#[tokio::test]
async fn a_failed_deliverys_receive_count_and_error_survive_a_restart_and_it_still_dead_letters() {
    let dir = tempfile::tempdir().expect("a dir");
    let route = route_table().route(Status::Received).expect("a route");
    let queue = route.queue.clone();
    // Received until one short of the limit, each time left to time out (a failure).
    {
        let e = open(dir.path());
        e.queues
            .send(&queue, &["poison".to_owned()])
            .await
            .expect("sends");
        for attempt in 1..route.max_receive_count {
            let got = e
                .queues
                .receive(&queue, 1, Duration::ZERO, Duration::from_secs(5))
                .await
                .expect("receives");
            assert_eq!(got[0].receive_count, attempt);
            e.queues
                .record_failure(
                    &queue,
                    &got[0].receipt_handle,
                    &format!("failure {attempt}"),
                )
                .await
                .expect("records");
        }
        // The last failure is noticed (and its count written) at the next receive.
        let got = e
            .queues
            .receive(&queue, 1, Duration::from_secs(60), Duration::from_secs(5))
            .await
            .expect("receives");
        assert_eq!(got[0].receive_count, route.max_receive_count);
    }
    let e = open(dir.path());
    // In flight at the restart: delivered again, and counted from what was written.
    let got = e
        .queues
        .receive(&queue, 1, Duration::ZERO, Duration::from_secs(5))
        .await
        .expect("receives");
    assert_eq!(got[0].receive_count, route.max_receive_count);
    let written = format!("failure {}", route.max_receive_count - 1);
    assert_eq!(got[0].last_error.as_deref(), Some(written.as_str()));
    e.queues
        .record_failure(&queue, &got[0].receipt_handle, "after the restart")
        .await
        .expect("records");
    let after = e
        .queues
        .receive(&queue, 1, Duration::ZERO, Duration::from_millis(200))
        .await
        .expect("receives");
    assert!(after.is_empty(), "dead-lettered: {after:?}");
    assert_eq!(e.queues.stats(&queue).await.expect("stats").dead_letters, 1);
    let dead = e.queues.dead_letters(&queue).await.expect("lists");
    assert_eq!(
        (dead[0].receive_count, dead[0].last_error.as_deref()),
        (route.max_receive_count, Some("after the restart"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_by_another_process_reaches_the_running_service() {
    let dir = tempfile::tempdir().expect("a dir");
    let route = route_table().route(Status::Completed).expect("a route");
    let queue = route.queue.clone();
    let e = open(dir.path());
    e.queues
        .send(&queue, &["poison".to_owned()])
        .await
        .expect("sends");
    for _ in 0..=route.max_receive_count {
        let _ = e
            .queues
            .receive(&queue, 1, Duration::ZERO, Duration::from_millis(500))
            .await
            .expect("receives");
    }
    assert_eq!(e.queues.stats(&queue).await.expect("stats").dead_letters, 1);

    let database = DataDir::new(dir.path()).database();
    let tool = DetachedQueues::open(&database, queue_configs(route_table())).expect("opens");
    assert_eq!(tool.dead_letters(&queue).await.expect("lists").len(), 1);
    assert_eq!(tool.redrive(&queue).await.expect("redrives"), 1);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let back = loop {
        let got = e
            .queues
            .receive(
                &queue,
                1,
                Duration::from_secs(60),
                Duration::from_millis(200),
            )
            .await
            .expect("receives");
        if !got.is_empty() || tokio::time::Instant::now() > deadline {
            break got;
        }
    };
    assert_eq!(
        back.iter()
            .map(|m| (m.body.as_str(), m.receive_count))
            .collect::<Vec<_>>(),
        [("poison", 1)]
    );
    assert_eq!(e.queues.stats(&queue).await.expect("stats").dead_letters, 0);
}

#[tokio::test]
async fn the_writer_counts_its_commits_for_metrics() {
    let dir = tempfile::tempdir().expect("a dir");
    let e = open(dir.path());
    place(&e, "A").await;
    let metrics = e.ports().telemetry.metrics();
    let value = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
            .unwrap_or_else(|| panic!("{name} is reported"))
    };
    assert!(value("orders_writer_transactions_total") >= 1.0);
    assert_eq!(
        value("orders_writer_fsyncs_total"),
        value("orders_writer_transactions_total")
    );
    assert!(value("orders_writer_appends_total") >= 1.0);
    assert!(
        metrics
            .iter()
            .any(|m| m.name == "orders_stage_cpu_seconds_total"
                && m.labels == [("stage", "writer".to_owned())])
    );
}
