//! `orders dev`: the whole service in one process: the HTTP API, the projector and bus, a
//! handler per status on its own queue, and the intake queue's handler. On the embedded
//! backend (default) data is kept in one directory across restarts; with `--backend aws`
//! the same process runs on DynamoDB, Streams, EventBridge, SQS and S3, polling them as
//! Lambda's event source mappings would.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use command_api::{App, LocalGuard};
use events_schema::RouteTable;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinSet,
};

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
    #[command(flatten)]
    pub http: HttpArgs,
    /// Seconds a document link stays valid: with `--backend aws`, GET
    /// /orders/{id}/documents/{name} redirects to a presigned S3 URL that expires after
    /// this long, 900 (15 minutes) by default; the embedded backend serves documents itself.
    #[arg(
        long,
        env = command_api::ENV_DOCUMENT_LINK_EXPIRY,
        value_name = "SECONDS",
        value_parser = command_api::parse_document_link_expiry
    )]
    pub document_link_expiry: Option<Duration>,
}

/// How the local HTTP server guards itself: any web page the user visits can send requests
/// to a port on 127.0.0.1, and any client can open connections and send slowly.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// An origin (`scheme://host[:port]`) whose web pages may write (POST, PUT) to the
    /// API; repeat the flag, or comma-separate in the variable; `*` allows any. None by
    /// default: a write whose `Origin` header is not the server's own gets a 403 (curl,
    /// SDKs and other non-browser clients send no `Origin` and are not affected). Write
    /// bodies must be `Content-Type: application/json` in any case (415 otherwise).
    #[arg(
        long = "allow-origin",
        env = "ORDERS_ALLOW_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allow_origins: Vec<String>,
    /// Seconds a client has to send a request's headers, on a new connection or a kept-alive
    /// one; then the connection is closed.
    #[arg(
        long,
        env = "ORDERS_HEADER_READ_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub header_read_timeout: u64,
    /// Seconds a request may take from its headers to its response, reading the body
    /// included; past it the answer is a 503 problem.
    #[arg(
        long,
        env = "ORDERS_REQUEST_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub request_timeout: u64,
    /// Connections served at once; further clients wait in the listen backlog until one
    /// closes.
    #[arg(
        long,
        env = "ORDERS_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub max_connections: u32,
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
    /// Times the projector tries a change feed record (with a growing backoff, narrowed
    /// down to that record) before it parks it (`orders parked list|replay`) and moves on.
    #[arg(long, env = "ORDERS_PROJECTOR_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub projector_max_attempts: u32,
    /// Test hook: the projector fails every record whose order description contains this text.
    #[arg(long, env = "ORDERS_PROJECTOR_FAIL_MARKER", hide = true)]
    pub projector_fail_marker: Option<String>,
    /// Test hook: the intake fails (to be retried) every message that contains this text,
    /// on its first receive.
    #[arg(long, env = "ORDERS_INTAKE_FAIL_MARKER", hide = true)]
    pub intake_fail_marker: Option<String>,
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
    let intake = command_api::Intake::new(&ports, opened.intake_archive.clone(), routes)
        .with_fail_marker(args.pipeline.intake_fail_marker.clone());
    let mut pipeline = start_pipeline(&opened, routes, &args.pipeline, stopped.clone())?;
    start_intake(
        &mut pipeline,
        &intake,
        &ports,
        routes,
        &args.pipeline,
        stopped,
    );

    tracing::info!(backend = ?args.backend.backend, at = %opened.location, "backend ready");
    // The one line on stdout: scripts and tests read the address from it.
    println!("listening on http://{local}");

    let (signalled, on_signal) = watch::channel(false);
    let router = LocalGuard {
        allow_origins: args.http.allow_origins.clone(),
        request_timeout: Duration::from_secs(args.http.request_timeout.max(1)),
    }
    .wrap(command_api::router(
        App::new(&ports, routes)
            .with_intake(&intake)
            .with_document_link_expiry(
                args.document_link_expiry
                    .unwrap_or(command_api::DEFAULT_DOCUMENT_LINK_EXPIRY),
            )
            .with_audit(opened.audit.clone())
            // The console's event streams end with the signal, before the drain.
            .with_shutdown(on_signal.clone()),
    ));
    let server = serve(listener, router, &args.http, on_signal);
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => {}
        () = signal() => {
            let _ = signalled.send(true);
            server.await;
        }
    }
    tracing::info!("HTTP server stopped; stopping the pipeline");
    let _ = stop.send(true);
    pipeline.join_all().await;
    Ok(())
}

/// Serves `router` until `shutdown` flips, at most `max_connections` connections at once,
/// each with a header-read timeout; then lets open requests finish for up to
/// [`DRAIN_DEADLINE`].
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    http: &HttpArgs,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = http.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(slots as usize));
    let (close, closing) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(http.header_read_timeout.max(1)));
    loop {
        // A connection slot first, then a connection: past the limit, clients wait in the
        // kernel's backlog instead of each costing a task and buffers.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let _ = tcp.set_nodelay(true);
        let conn =
            builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let _slot = permit;
            tokio::pin!(conn);
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = closing.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    // In-flight requests finish; a client that never completes its request (or keeps an
    // idle connection) must not hold the process forever.
    let _ = close.send(true);
    if tokio::time::timeout(DRAIN_DEADLINE, permits.acquire_many(slots))
        .await
        .is_err()
    {
        tracing::warn!(deadline = ?DRAIN_DEADLINE, "connections still open at the drain deadline; closing them");
    }
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
    let projector = stream::StreamPoller {
        feed: ports.feed.clone(),
        read_model: ports.read_model.clone(),
        publisher: ports.publisher.clone(),
        parked: ports.parked.clone(),
        source: opened.source.clone(),
        max_attempts: args.projector_max_attempts,
        fail_marker: args.projector_fail_marker.clone(),
    };
    tasks.spawn(projector.run(stop.clone()));
    for route in &routes.routes {
        let handler = handlers::handler(
            &route.handler,
            ports.idempotency.clone(),
            ports.documents.clone(),
            ports.events.clone(),
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
                consumer: handler.clone(),
                batch_size: route.batch_size as usize,
                visibility_timeout: visibility,
            };
            tasks.spawn(poller.run(stop.clone()));
        }
    }
    Ok(tasks)
}

/// Starts the intake queue's pollers (as many as a route queue's), as the intake Lambda's
/// event source mapping would run; they stop when `stop` flips.
fn start_intake(
    tasks: &mut JoinSet<()>,
    intake: &command_api::Intake,
    ports: &backend::Ports,
    routes: &RouteTable,
    args: &PipelineArgs,
    stop: watch::Receiver<bool>,
) {
    let visibility = Duration::from_secs(
        args.visibility_timeout
            .unwrap_or(u64::from(routes.intake.visibility_timeout_seconds)),
    );
    let consumer = Arc::new(intake.clone());
    for _ in 0..args.handler_concurrency.max(1) {
        let poller = QueuePoller {
            queue: routes.intake.queue.clone(),
            consumer: consumer.clone(),
            queues: ports.queues.clone(),
            batch_size: routes.intake.batch_size as usize,
            visibility_timeout: visibility,
        };
        tasks.spawn(poller.run(stop.clone()));
    }
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
