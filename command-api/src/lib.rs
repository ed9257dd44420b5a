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

use backend::{ChangeFeed, EventStore, IdempotencyStore, ReadModel};

pub use routes::{openapi, router};

/// What the API needs from a backend.
#[derive(Clone)]
pub struct App {
    pub commands: service::Commands,
    pub read_model: Arc<dyn ReadModel>,
    /// For `/health`: how far the projector is behind.
    pub feed: Arc<dyn ChangeFeed>,
}

impl App {
    pub fn new(
        events: Arc<dyn EventStore>,
        idempotency: Arc<dyn IdempotencyStore>,
        read_model: Arc<dyn ReadModel>,
        feed: Arc<dyn ChangeFeed>,
    ) -> Self {
        Self {
            commands: service::Commands::new(events, idempotency),
            read_model,
            feed,
        }
    }
}
