//! `GET /orders/{id}` reads one stored event (the head, the event at `?version=`, the
//! latest one at or before `?at=`), never the order's history; the events are read a page
//! at a time.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use backend::{Append, AppendError, EventPage, EventStore, Head, StoreError};
use chrono::{DateTime, Utc};
use events_schema::{Order, OrderId};
use serde_json::{Value, json};

use crate::support::{app_on, embedded, send};

/// The embedded event store, noting each read by the port method that made it.
struct Recording {
    inner: Arc<dyn EventStore>,
    reads: Mutex<Vec<&'static str>>,
}

impl Recording {
    fn note(&self, read: &'static str) {
        self.reads.lock().expect("not poisoned").push(read);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.reads.lock().expect("not poisoned"))
    }
}

#[async_trait::async_trait]
impl EventStore for Recording {
    async fn head(&self, order_id: &OrderId) -> Result<Option<Head>, StoreError> {
        self.note("head");
        self.inner.head(order_id).await
    }

    async fn events(
        &self,
        order_id: &OrderId,
        after: u64,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.note("events");
        self.inner.events(order_id, after, limit).await
    }

    async fn at_version(
        &self,
        order_id: &OrderId,
        version: u64,
    ) -> Result<Option<Order>, StoreError> {
        self.note("at_version");
        self.inner.at_version(order_id, version).await
    }

    async fn at_time(
        &self,
        order_id: &OrderId,
        at: DateTime<Utc>,
    ) -> Result<Option<Order>, StoreError> {
        self.note("at_time");
        self.inner.at_time(order_id, at).await
    }

    async fn append(&self, append: Append) -> Result<(), AppendError> {
        self.inner.append(append).await
    }
}

struct Setup {
    app: axum::Router,
    store: Arc<Recording>,
    _dir: tempfile::TempDir,
    _embedded: backend::embedded::Embedded,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = embedded(dir.path());
    let mut ports = embedded.ports();
    let store = Arc::new(Recording {
        inner: ports.events.clone(),
        reads: Mutex::default(),
    });
    ports.events = store.clone();
    Setup {
        app: app_on(&ports),
        store,
        _dir: dir,
        _embedded: embedded,
    }
}

async fn get(app: &axum::Router, path: &str) -> (u16, Value) {
    let res = send(
        app,
        http::Request::get(path)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    let json = serde_json::from_str(&res.text).unwrap_or(Value::Null);
    (res.status, json)
}

async fn write(app: &axum::Router, method: &str, path: &str, body: Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let res = send(app, req).await;
    assert!(
        res.status < 300,
        "{method} {path}: {} {}",
        res.status,
        res.text
    );
}

/// Places `id` and revises it until it has `versions` events.
async fn order_with_versions(app: &axum::Router, id: &str, versions: u64) {
    write(
        app,
        "POST",
        "/orders",
        json!({"orderId": id, "description": "v1"}),
    )
    .await;
    for v in 2..=versions {
        write(
            app,
            "PUT",
            &format!("/orders/{id}"),
            json!({"description": format!("v{v}")}),
        )
        .await;
    }
}

#[tokio::test]
async fn get_order_reads_one_stored_event_and_never_the_history() {
    let s = setup();
    order_with_versions(&s.app, "R-1", 30).await;
    s.store.take();

    let (status, latest) = get(&s.app, "/orders/R-1").await;
    assert_eq!((status, &latest["version"]), (200, &json!(30)));
    assert_eq!(s.store.take(), ["head"]);

    let (status, v7) = get(&s.app, "/orders/R-1?version=7").await;
    assert_eq!((status, &v7["description"]), (200, &json!("v7")));
    assert_eq!(s.store.take(), ["at_version"]);

    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, at_now) = get(&s.app, &format!("/orders/R-1?at={now}")).await;
    assert_eq!((status, at_now), (200, latest));
    assert_eq!(s.store.take(), ["at_time"]);

    // A miss reads the head to say why.
    let (status, problem) = get(&s.app, "/orders/R-1?version=31").await;
    assert_eq!(status, 404);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("its latest is 30")),
        "{problem}"
    );
    assert_eq!(s.store.take(), ["at_version", "head"]);
    let (status, _) = get(&s.app, "/orders/R-1?at=2000-01-01T00:00:00Z").await;
    assert_eq!(status, 404);
    assert_eq!(s.store.take(), ["at_time", "head"]);
    let (status, _) = get(&s.app, "/orders/nobody").await;
    assert_eq!(status, 404);
    assert_eq!(s.store.take(), ["head"]);
}

#[tokio::test]
async fn events_are_read_one_page_per_request() {
    let s = setup();
    order_with_versions(&s.app, "R-2", 5).await;
    s.store.take();
    let (status, page) = get(&s.app, "/orders/R-2/events?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(s.store.take(), ["events"]);
}
