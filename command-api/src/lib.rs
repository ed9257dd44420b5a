//! The REST command API: HTTP requests in, commands decided against the order's state,
//! events appended; reads from the event store (strongly consistent) or the read model.
//!
//! [`router`] builds the axum router served by `orders dev` and by the API Lambda.
//! Request parsing lives in `body` and `request`, the decide-append loop and its domain
//! errors in `service`, the endpoints and their OpenAPI description in `routes`, the
//! HTTP forms of a write's answer and of errors in `reply` and `problem`, `/metrics` in
//! `metrics`.

mod body;
mod console;
mod guard;
mod idempotency;
mod intake;
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
pub use intake::{
    Intake, IntakeCounters, IntakeCounts, IntakeDelivery, fingerprint as intake_fingerprint,
    lambda as intake_lambda,
};
pub use routes::{Actor, TraceHeader, openapi, router};

/// What the API needs from a backend.
#[derive(Clone)]
pub struct App {
    commands: service::Commands,
    read_model: Arc<dyn ReadModel>,
    documents: Arc<dyn DocumentStore>,
    /// How long a document link the API hands out (S3: a presigned GET) stays valid.
    document_link_expiry: std::time::Duration,
    /// The backend's own counters, for `/metrics`.
    telemetry: Arc<dyn Telemetry>,
    /// For `/health` and `/metrics`: the pipeline this process drives (none when Lambda's
    /// event source mappings drive it; their metrics are in CloudWatch).
    pipeline: Option<Pipeline>,
    /// For `/health`: the intake this process polls, if it does.
    intake: Option<IntakeSource>,
    /// The operator console's own state (see `console`).
    console: console::Console,
}

/// The intake queue this process polls and what became of its messages.
#[derive(Clone)]
struct IntakeSource {
    queues: Arc<dyn Queues>,
    queue: String,
    counters: Arc<IntakeCounters>,
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
            document_link_expiry: DEFAULT_DOCUMENT_LINK_EXPIRY,
            telemetry: ports.telemetry.clone(),
            intake: None,
            pipeline: Some(Pipeline {
                feed: ports.feed.clone(),
                queues: ports.queues.clone(),
                queue_names: routes.routes.iter().map(|r| r.queue.clone()).collect(),
                parked: ports.parked.clone(),
            }),
            // The console shows the intake queue too: its dead letters are redriven there.
            console: console::Console::new(
                ports.queues.clone(),
                routes.queues().map(|q| q.queue.to_owned()).collect(),
            ),
        }
    }

    /// Lets the console run `audit verify` (a process that has the audit ports open).
    pub fn with_audit(mut self, verifier: backend::audit::Verifier) -> Self {
        self.console.audit = Some(std::sync::Arc::new(verifier));
        self
    }

    /// Ends the console's event streams when `shutdown` flips to `true`, so that a server
    /// draining its connections is not held open by them.
    pub fn with_shutdown(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.console.shutdown = Some(shutdown);
        self
    }

    /// See [`parse_document_link_expiry`] for where it comes from.
    pub fn with_document_link_expiry(self, expiry: std::time::Duration) -> Self {
        Self {
            document_link_expiry: expiry,
            ..self
        }
    }

    /// Reports `intake`'s counters and queue in `/health`: for a process that polls the
    /// intake queue (`orders dev`).
    pub fn with_intake(self, intake: &Intake) -> Self {
        Self {
            intake: Some(IntakeSource {
                queues: intake.queues(),
                queue: intake.queue().to_owned(),
                counters: intake.counters(),
            }),
            ..self
        }
    }

    /// Leaves the operator console out of the router (the API Lambda, unless its deployment
    /// turns the console on: see [`ENV_CONSOLE`]).
    pub fn without_console(mut self) -> Self {
        self.console.enabled = false;
        self
    }

    /// For a process that serves the API only (the API Lambda).
    pub fn without_pipeline(self) -> Self {
        Self {
            pipeline: None,
            ..self
        }
    }
}

/// The API Lambda's environment variable that serves the operator console too: `enabled`
/// (the CDK app's `consoleEnabled` setting sets it). Anything else, or unset: no console.
pub const ENV_CONSOLE: &str = "ORDERS_CONSOLE";

/// How long a document link stays valid unless configured otherwise.
pub const DEFAULT_DOCUMENT_LINK_EXPIRY: std::time::Duration =
    std::time::Duration::from_secs(15 * 60);

/// The environment variable (and `orders dev` flag's) setting of the document link expiry,
/// in whole seconds.
pub const ENV_DOCUMENT_LINK_EXPIRY: &str = "ORDERS_DOCUMENT_LINK_EXPIRY_SECONDS";

/// A document link expiry in whole seconds, 1 up to S3's limit for presigned URLs (7 days).
pub fn parse_document_link_expiry(seconds: &str) -> Result<std::time::Duration, String> {
    const MAX: u64 = 7 * 24 * 60 * 60;
    match seconds.trim().parse::<u64>() {
        Ok(s) if (1..=MAX).contains(&s) => Ok(std::time::Duration::from_secs(s)),
        _ => Err(format!(
            "the document link expiry must be a whole number of seconds from 1 to {MAX} (7 days), not {seconds:?}"
        )),
    }
}

#[cfg(test)]
mod link_expiry_tests {
    use super::*;

    #[test]
    fn the_document_link_expiry_is_whole_seconds_from_one_up_to_seven_days() {
        assert_eq!(
            parse_document_link_expiry("2"),
            Ok(std::time::Duration::from_secs(2))
        );
        assert_eq!(
            parse_document_link_expiry("604800"),
            Ok(std::time::Duration::from_secs(604_800))
        );
        for bad in ["0", "604801", "-1", "1.5", "15m", ""] {
            let err = parse_document_link_expiry(bad).expect_err(bad);
            assert!(err.contains("1 to 604800"), "{err}");
        }
    }
}
