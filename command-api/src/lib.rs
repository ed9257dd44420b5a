//! The REST command API: HTTP requests in, commands decided against the order's state,
//! events appended; reads from the event store (strongly consistent) or the read model.
//!
//! [`router`] builds the axum router served by `orders dev` and, later, by the API Lambda.
//! Request parsing lives in [`body`] and [`request`], the decide-append loop in [`service`],
//! the endpoints and their OpenAPI description in [`routes`], errors in [`problem`].

pub mod body;
mod idempotency;
pub mod problem;
pub mod request;
pub mod routes;
pub mod service;

use std::sync::Arc;

use backend::{ChangeFeed, DocumentStore, Ports, Queues, ReadModel};
use events_schema::RouteTable;

pub use routes::{openapi, router};

/// What the API needs from a backend.
#[derive(Clone)]
pub struct App {
    pub commands: service::Commands,
    pub read_model: Arc<dyn ReadModel>,
    pub documents: Arc<dyn DocumentStore>,
    /// For `/health`: how far the projector is behind, and each route's queue.
    pub feed: Arc<dyn ChangeFeed>,
    pub queues: Arc<dyn Queues>,
    pub queue_names: Vec<String>,
}

impl App {
    pub fn new(ports: &Ports, routes: &RouteTable) -> Self {
        Self {
            commands: service::Commands::new(ports.events.clone(), ports.idempotency.clone()),
            read_model: ports.read_model.clone(),
            documents: ports.documents.clone(),
            feed: ports.feed.clone(),
            queues: ports.queues.clone(),
            queue_names: routes.routes.iter().map(|r| r.queue.clone()).collect(),
        }
    }
}
