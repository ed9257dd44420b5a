//! `GET /metrics`: the Prometheus text format, with the pipeline's gauges where this
//! process drives the pipeline.

use std::collections::HashSet;

use axum::body::Body;
use command_api::{App, router};

use crate::support::{app, embedded, send};

fn get_metrics() -> http::Request<Body> {
    http::Request::get("/metrics")
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn metrics_answer_in_the_prometheus_text_format_with_the_lag_and_every_queues_gauges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _embedded) = app(dir.path());
    let res = send(&app, get_metrics()).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4")
    );
    let lines: Vec<&str> = res.text.lines().collect();
    assert!(
        lines.contains(&"# TYPE orders_projector_lag gauge"),
        "{}",
        res.text
    );
    assert!(lines.contains(&"orders_projector_lag 0"), "{}", res.text);
    for route in &events_schema::route_table().routes {
        for gauge in [
            "orders_queue_depth",
            "orders_queue_in_flight",
            "orders_queue_dead_letters",
        ] {
            let sample = format!("{gauge}{{queue=\"{}\"}} 0", route.queue);
            assert!(
                lines.contains(&sample.as_str()),
                "{sample} missing:\n{}",
                res.text
            );
        }
    }
    let mut typed = HashSet::new();
    for line in lines.iter().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).expect("a name");
        assert!(
            typed.insert(name),
            "two TYPE lines for {name}:\n{}",
            res.text
        );
    }
}

#[tokio::test]
async fn without_a_pipeline_metrics_have_no_lag_or_queue_gauges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = embedded(dir.path());
    let app = router(App::new(&e.ports(), events_schema::route_table()).without_pipeline());
    let res = send(&app, get_metrics()).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(!res.text.contains("orders_projector_lag"), "{}", res.text);
    assert!(!res.text.contains("orders_queue_"), "{}", res.text);
}
