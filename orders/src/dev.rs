//! `orders dev`: the whole service in one process: the HTTP API, the projector and bus, and
//! a handler per status on its own queue. On the embedded backend (default) data is kept in
//! one directory across restarts; with `--backend aws` the same process runs on DynamoDB,
//! Streams, EventBridge, SQS and S3, polling them as Lambda's event source mappings would.

use std::{future::IntoFuture, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use command_api::App;
use events_schema::RouteTable;
use tokio::{sync::watch, task::JoinSet};

use crate::{
    backend_args::{BackendArgs, Opened},
    runtime::{queue::QueuePoller, stream},
};

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Address to serve the HTTP API on (port 0 picks a free port).
    #[arg(long, env = "ORDERS_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// How the local event source mappings run.
#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Concurrent pollers (like Lambda's concurrency) per route queue.
    #[arg(long, env = "ORDERS_HANDLER_CONCURRENCY", default_value_t = 8)]
    pub handler_concurrency: usize,
    /// Overrides every route's visibility timeout, in seconds: how long a failed message
    /// waits before it is retried (the route table's value otherwise).
    #[arg(long, env = "ORDERS_VISIBILITY_TIMEOUT")]
    pub visibility_timeout: Option<u64>,
    /// Test hook: handlers fail every event whose order description contains this text.
    #[arg(long, env = "ORDERS_HANDLER_FAIL_MARKER", hide = true)]
    pub handler_fail_marker: Option<String>,
}

/// How long a shutdown waits for open HTTP requests to finish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let routes = events_schema::route_table();
    let opened = args.backend.open(routes).await?;
    let ports = opened.ports.clone();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;

    let (stop, stopped) = watch::channel(false);
    let pipeline = start_pipeline(&opened, routes, &args.pipeline, stopped)?;

    tracing::info!(backend = ?args.backend.backend, at = %opened.location, "backend ready");
    // The one line on stdout: scripts and tests read the address from it.
    println!("listening on http://{local}");

    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (signalled, on_signal) = watch::channel(false);
    let server = axum::serve(listener, command_api::router(App::new(&ports, routes)))
        .with_graceful_shutdown({
            let mut on_signal = on_signal;
            async move {
                let _ = on_signal.wait_for(|s| *s).await;
            }
        })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served.context("serving HTTP")?,
        () = signal() => {
            let _ = signalled.send(true);
            // In-flight requests finish; a client that never completes its request (or
            // keeps an idle connection) must not hold the process forever.
            tokio::select! {
                served = &mut server => served.context("serving HTTP")?,
                () = tokio::time::sleep(DRAIN_DEADLINE) => {
                    tracing::warn!(deadline = ?DRAIN_DEADLINE, "connections still open at the drain deadline; closing them");
                }
            }
        }
    }
    tracing::info!("HTTP server stopped; stopping the pipeline");
    let _ = stop.send(true);
    pipeline.join_all().await;
    Ok(())
}

/// Starts the projector and every route's queue pollers; they stop when `stop` flips.
fn start_pipeline(
    opened: &Opened,
    routes: &RouteTable,
    args: &PipelineArgs,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinSet<()>> {
    let ports = &opened.ports;
    let mut tasks = JoinSet::new();
    tasks.spawn(stream::run(
        ports.feed.clone(),
        ports.read_model.clone(),
        ports.publisher.clone(),
        opened.source.clone(),
        stop.clone(),
    ));
    for route in &routes.routes {
        let handler = handlers::handler(
            &route.handler,
            ports.idempotency.clone(),
            ports.documents.clone(),
            args.handler_fail_marker.clone(),
        )
        .with_context(|| format!("route {}: no handler named {:?}", route.rule, route.handler))?;
        let handler = Arc::new(handler);
        let visibility = Duration::from_secs(
            args.visibility_timeout
                .unwrap_or(u64::from(route.visibility_timeout_seconds)),
        );
        for _ in 0..args.handler_concurrency.max(1) {
            let poller = QueuePoller {
                queue: route.queue.clone(),
                queues: ports.queues.clone(),
                handler: handler.clone(),
                batch_size: route.batch_size as usize,
                visibility_timeout: visibility,
            };
            tasks.spawn(poller.run(stop.clone()));
        }
    }
    Ok(tasks)
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the service");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}
