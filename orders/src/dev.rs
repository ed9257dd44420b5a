//! `orders dev`: the whole service in one process on the embedded backend: the HTTP API
//! and the projector, data kept in one directory across restarts.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use backend::embedded::Embedded;
use command_api::App;
use tokio::sync::watch;

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Address to serve the HTTP API on (port 0 picks a free port).
    #[arg(long, env = "ORDERS_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Directory that holds the service's data.
    #[arg(long, env = "ORDERS_DATA", default_value = "./.orders")]
    pub data: PathBuf,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let embedded = Embedded::open(&args.data)
        .with_context(|| format!("cannot open the data directory {}", args.data.display()))?;
    let app = App::new(
        embedded.events.clone(),
        embedded.events.clone(),
        embedded.read_model.clone(),
        embedded.feed.clone(),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;

    let (stop, stopped) = watch::channel(false);
    let projector = tokio::spawn(crate::stream::run(
        embedded.feed.clone(),
        embedded.read_model.clone(),
        stopped.clone(),
    ));

    tracing::info!(data = %embedded.dir().display(), "embedded backend ready");
    // The one line on stdout: scripts and tests read the address from it.
    println!("listening on http://{local}");

    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, command_api::router(app))
        .with_graceful_shutdown(signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("HTTP server stopped; stopping the pipeline");
    let _ = stop.send(true);
    let _ = projector.await;
    Ok(())
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
