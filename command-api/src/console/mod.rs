//! The operator console: server-rendered HTML pages over the same ports and write path as
//! the JSON API, served by the same router at `/` and `/console/...`.
//!
//! Each page is readable without JavaScript; the vendored htmx swaps fragments in place
//! (actions, live refreshes) and `console.js` listens to the server's event stream
//! (`live`) to tell htmx when to re-fetch. Pages: `overview`, `orders` (the list),
//! `order` (one order, its timeline, time travel, documents and actions), `dead_letters`
//! and `audit`; the page shell and the small helpers they share are in `layout`.

mod assets;
mod audit;
mod dead_letters;
mod layout;
mod live;
mod order;
mod orders;
mod overview;

use std::sync::Arc;

use axum::{
    Router,
    extract::Request,
    http::{HeaderMap, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use backend::Queues;
use tokio::sync::watch;

use crate::App;

pub(crate) use live::Hub;

/// What the console adds to [`App`]: the queues it shows (in every process, the API Lambda
/// included), the live hub, the audit capability where the process has one, and the
/// shutdown signal that ends the event streams.
#[derive(Clone)]
pub(crate) struct Console {
    /// Whether the router serves the console at all.
    pub(crate) enabled: bool,
    pub(crate) queues: Arc<dyn Queues>,
    /// The route queues (and the intake queue where the route table declares one).
    pub(crate) queue_names: Vec<String>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) audit: Option<Arc<backend::audit::Verifier>>,
    /// One audit at a time per process: a second click waits for nothing, it is told.
    pub(crate) audit_slot: Arc<tokio::sync::Semaphore>,
    /// Flips to `true` when the server shuts down; `None` where nothing shuts the process
    /// down gracefully with open streams (the API Lambda answers one event and ends).
    pub(crate) shutdown: Option<watch::Receiver<bool>>,
}

impl Console {
    pub(crate) fn new(queues: Arc<dyn Queues>, queue_names: Vec<String>) -> Self {
        Self {
            enabled: true,
            queues,
            queue_names,
            hub: Arc::new(Hub::default()),
            audit: None,
            audit_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            shutdown: None,
        }
    }
}

/// The console's routes, merged into the API's router.
pub(crate) fn routes() -> Router<App> {
    let writes = Router::new()
        .route("/console/orders/{id}/{action}", post(order::action))
        .route(
            "/console/dead-letters/{queue}/redrive",
            post(dead_letters::redrive),
        )
        .route("/console/audit", post(audit::verify))
        .layer(middleware::from_fn(same_origin_only));
    Router::new()
        .route("/", get(overview::page))
        .route("/console", get(overview::page))
        .route("/console/", get(overview::page))
        .route("/console/overview", get(overview::fragment))
        .route("/console/orders", get(orders::page))
        .route("/console/orders/rows", get(orders::rows))
        .route("/console/orders/{id}", get(order::page))
        .route("/console/orders/{id}/at", get(order::at_version))
        .route("/console/orders/{id}/documents", get(order::documents))
        .route(
            "/console/orders/{id}/documents/{name}",
            get(order::document),
        )
        .route("/console/dead-letters", get(dead_letters::page))
        .route(
            "/console/dead-letters/{queue}/messages",
            get(dead_letters::refresh),
        )
        .route("/console/audit", get(audit::page))
        .route("/console/events", get(live::events))
        .route("/console/static/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .merge(writes)
}

/// Console writes are form posts from the console's own pages. A form post is a "simple"
/// request any other site could make the browser send, so it is accepted only with proof
/// that the console's own page sent it: `Sec-Fetch-Site: same-origin` (every current
/// browser sends it), or else an `Origin` that is this server's. A request with neither
/// (curl, an old browser) is refused: the JSON API is there for scripts.
async fn same_origin_only(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !crate::guard::same_origin(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "console actions are accepted only from the console's own pages (same origin); scripts use the JSON API",
        )
            .into_response();
    }
    next.run(req).await
}

/// Whether htmx sent the request (it then wants a fragment, not a whole page).
fn from_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}
