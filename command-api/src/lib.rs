//! The REST command API: HTTP requests in, commands decided against the order's state,
//! events appended; reads from the event store (strongly consistent) or the read model.
//!
//! [`router`] builds the axum router served by `orders dev` and by the API Lambda.
//! Request parsing lives in `body` and `request`, the decide-append loop and its domain
//! errors in `service`, the endpoints and their OpenAPI description in `routes`, the
//! HTTP forms of a write's answer and of errors in `reply` and `problem`, `/metrics` in
//! `metrics`.

mod body;
mod guard;
mod idempotency;
mod metrics;
mod problem;
mod reply;
mod request;
mod routes;
mod service;

use std::sync::Arc;

use backend::{
    ChangeFeed, DocumentStore, ParkedRecords, Ports, QueueStats, Queues, ReadModel, StoreError,
    Telemetry,
};
use events_schema::RouteTable;

pub use guard::LocalGuard;
pub use routes::{Actor, TraceHeader, openapi, router};

/// What the API needs from a backend.
#[derive(Clone)]
pub struct App {
    commands: service::Commands,
    read_model: Arc<dyn ReadModel>,
    documents: Arc<dyn DocumentStore>,
    /// The backend's own counters, for `/metrics`.
    telemetry: Arc<dyn Telemetry>,
    /// For `/health` and `/metrics`: the pipeline this process drives (none when Lambda's
    /// event source mappings drive it; their metrics are in CloudWatch).
    pipeline: Option<Pipeline>,
}

/// The projector's change feed and the route queues, as `/health` and `/metrics` report
/// them.
#[derive(Clone)]
struct Pipeline {
    feed: Arc<dyn ChangeFeed>,
    queues: Arc<dyn Queues>,
    queue_names: Vec<String>,
    parked: Arc<dyn ParkedRecords>,
}

/// The pipeline as read for one `/health` or `/metrics` request.
struct PipelineState {
    projector_lag: u64,
    queues: Vec<QueueStats>,
    /// Change feed records the projector gave up on, waiting for `orders parked replay`.
    parked: u64,
}

impl Pipeline {
    async fn state(&self) -> Result<PipelineState, StoreError> {
        let projector_lag = self.feed.lag().await?;
        let mut queues = Vec::with_capacity(self.queue_names.len());
        for name in &self.queue_names {
            queues.push(self.queues.stats(name).await?);
        }
        Ok(PipelineState {
            projector_lag,
            queues,
            parked: self.parked.count().await?,
        })
    }
}

impl App {
    pub fn new(ports: &Ports, routes: &RouteTable) -> Self {
        Self {
            commands: service::Commands::new(ports.events.clone(), ports.idempotency.clone()),
            read_model: ports.read_model.clone(),
            documents: ports.documents.clone(),
            telemetry: ports.telemetry.clone(),
            pipeline: Some(Pipeline {
                feed: ports.feed.clone(),
                queues: ports.queues.clone(),
                queue_names: routes.routes.iter().map(|r| r.queue.clone()).collect(),
                parked: ports.parked.clone(),
            }),
        }
    }

    /// For a process that serves the API only (the API Lambda).
    pub fn without_pipeline(self) -> Self {
        Self {
            pipeline: None,
            ..self
        }
    }
}
