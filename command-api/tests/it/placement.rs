//! A repeated `POST /orders` of a client-chosen `orderId`: the first placement reads only
//! the head before appending; the same content again gets the first answer, other content
//! a 409, whether the order was seen before deciding or only when the append lost.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use axum::body::Body;
use backend::{Append, AppendError, EventPage, EventStore, Head, StoreError};
use chrono::{DateTime, Utc};
use events_schema::{Order, OrderId};
use serde_json::{Value, json};

use crate::support::{Answer, app_on, embedded, send};

/// The embedded event store, counting reads and appends; `head` can be made to miss an
/// order once, as when another writer places it between the head read and the append.
struct Counting {
    inner: Arc<dyn EventStore>,
    heads: AtomicUsize,
    event_reads: AtomicUsize,
    appends: AtomicUsize,
    miss_next_head: AtomicBool,
}

impl Counting {
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.heads.swap(0, Ordering::SeqCst),
            self.event_reads.swap(0, Ordering::SeqCst),
            self.appends.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait::async_trait]
impl EventStore for Counting {
    async fn head(&self, order_id: &OrderId) -> Result<Option<Head>, StoreError> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        if self.miss_next_head.swap(false, Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.head(order_id).await
    }

    async fn events(
        &self,
        order_id: &OrderId,
        after: u64,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        self.event_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.events(order_id, after, limit).await
    }

    async fn at_version(
        &self,
        order_id: &OrderId,
        version: u64,
    ) -> Result<Option<Order>, StoreError> {
        self.inner.at_version(order_id, version).await
    }

    async fn at_time(
        &self,
        order_id: &OrderId,
        at: DateTime<Utc>,
    ) -> Result<Option<Order>, StoreError> {
        self.inner.at_time(order_id, at).await
    }

    async fn append(&self, append: Append) -> Result<(), AppendError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(append).await
    }
}

/// Two routers (two processes: separate head caches) on one counted embedded store.
struct Setup {
    first: axum::Router,
    second: axum::Router,
    store: Arc<Counting>,
    _dir: tempfile::TempDir,
    _embedded: backend::embedded::Embedded,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = embedded(dir.path());
    let mut ports = embedded.ports();
    let store = Arc::new(Counting {
        inner: ports.events.clone(),
        heads: AtomicUsize::new(0),
        event_reads: AtomicUsize::new(0),
        appends: AtomicUsize::new(0),
        miss_next_head: AtomicBool::new(false),
    });
    ports.events = store.clone();
    Setup {
        first: app_on(&ports),
        second: app_on(&ports),
        store,
        _dir: dir,
        _embedded: embedded,
    }
}

fn post(body: Value) -> http::Request<Body> {
    http::Request::post("/orders")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn same(a: &Answer, b: &Answer) {
    assert_eq!((a.status, &a.text), (b.status, &b.text));
    for name in ["etag", "location", "content-type"] {
        assert_eq!(a.headers.get(name), b.headers.get(name), "{name}");
    }
}

#[tokio::test]
async fn a_placement_with_a_client_id_reads_the_head_and_appends_and_nothing_more() {
    let s = setup();
    let res = send(
        &s.first,
        post(json!({"orderId": "P-1", "description": "a desk"})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(s.store.counts(), (1, 0, 1), "(heads, event reads, appends)");
}

#[tokio::test]
async fn the_same_placement_again_gets_the_first_answer_and_other_content_a_409() {
    let s = setup();
    let place = json!({"orderId": "P-2", "description": "a desk", "customerId": "C-9"});
    let first = send(&s.first, post(place.clone())).await;
    assert_eq!(first.status, 201, "{}", first.text);
    s.store.counts();

    // The same process (head cached) and another (head read): both compare the first event.
    same(&send(&s.first, post(place.clone())).await, &first);
    assert_eq!(s.store.counts(), (0, 1, 0));
    same(&send(&s.second, post(place.clone())).await, &first);
    assert_eq!(s.store.counts(), (1, 1, 0));
    // Only the fields sent are compared.
    let fewer = json!({"orderId": "P-2", "description": "a desk"});
    same(&send(&s.second, post(fewer)).await, &first);

    let other = send(
        &s.second,
        post(json!({"orderId": "P-2", "description": "a chair"})),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.text);
    assert!(
        other.text.contains("already exists with different content"),
        "{}",
        other.text
    );

    // After the order moved on, the first answer still is the placement's.
    let start = http::Request::post("/orders/P-2/start")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&s.first, start).await.status, 200);
    same(&send(&s.second, post(place)).await, &first);
    let events = s
        .store
        .inner
        .events(&OrderId::parse("P-2").expect("id"), 0, 10)
        .await;
    assert_eq!(events.expect("events").items.len(), 2);
}

#[tokio::test]
async fn a_placement_that_loses_the_append_compares_with_the_winner_without_reading_the_head_again()
{
    let s = setup();
    let place = json!({"orderId": "P-3", "description": "a lamp"});
    let first = send(&s.first, post(place.clone())).await;
    assert_eq!(first.status, 201, "{}", first.text);
    s.store.counts();

    s.store.miss_next_head.store(true, Ordering::SeqCst);
    same(&send(&s.second, post(place)).await, &first);
    assert_eq!(s.store.counts(), (1, 1, 1), "(heads, event reads, appends)");

    s.store.miss_next_head.store(true, Ordering::SeqCst);
    let other = send(
        &s.second,
        post(json!({"orderId": "P-3", "description": "a rug"})),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.text);
    assert_eq!(s.store.counts(), (1, 1, 1));
}

#[tokio::test]
async fn a_repeated_placement_under_a_new_idempotency_key_saves_the_first_answer_for_it() {
    let s = setup();
    let place = json!({"orderId": "P-4", "description": "a shelf"});
    let first = send(&s.first, post(place.clone())).await;
    let keyed = || {
        let mut req = post(place.clone());
        req.headers_mut()
            .insert("idempotency-key", http::HeaderValue::from_static("k-4"));
        req
    };
    same(&send(&s.second, keyed()).await, &first);
    let replayed = send(&s.second, keyed()).await;
    same(&replayed, &first);
    assert_eq!(
        replayed
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
}
