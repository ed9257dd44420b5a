//! `orders`: the command line of ordersource. `orders dev` runs the whole service on one
//! machine; `orders bench` measures a running one.

mod audit;
mod aws;
mod backend_args;
mod bench;
mod dev;
mod dlq;
mod intake;
mod parked;
mod runtime;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "orders", version, about = "ordersource: event-sourced orders")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the service locally: HTTP API, projector, on the embedded backend.
    Dev(dev::DevArgs),
    /// Drive order lifecycles against a running service and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Inspect and re-drive a route queue's dead letters (also while `orders dev` runs).
    Dlq(dlq::DlqArgs),
    /// Put a command on the intake queue, as the web, mobile and ATM channels do.
    Intake(intake::IntakeArgs),
    /// List and replay the change feed records the projector parked after its retries
    /// (also while `orders dev` runs).
    Parked(parked::ParkedArgs),
    /// AWS backend operations: `orders aws bootstrap` creates what the service needs.
    Aws(aws::AwsArgs),
    /// Show an order's event trail, with its state after each event.
    Replay(audit::ReplayArgs),
    /// Check the stored history (versions, hash chain, stored states, read model), or seal
    /// it with a digest whose root makes a later truncation evident.
    Audit(audit::AuditArgs),
    /// Recompute the read model from the events alone and swap it in atomically.
    Rebuild(audit::RebuildArgs),
    /// Publish past events to the bus again, marked "replayed": true.
    Republish(audit::RepublishArgs),
    /// Fill a fresh data directory with about N realistic events (for benchmarks).
    #[command(hide = true)]
    DevSeed(audit::SeedArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Dev(args) => dev::run(args).await,
            Cmd::Bench(args) => bench::run(args).await,
            Cmd::Dlq(args) => dlq::run(args).await,
            Cmd::Intake(args) => intake::run(args).await,
            Cmd::Parked(args) => parked::run(args).await,
            Cmd::Replay(args) => audit::replay(args).await,
            Cmd::Audit(args) => audit::audit(args).await,
            Cmd::Rebuild(args) => audit::rebuild(args).await,
            Cmd::Republish(args) => audit::republish(args).await,
            Cmd::DevSeed(args) => audit::seed(args).await,
            Cmd::Aws(args) => aws::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Human-readable logs on stderr; `RUST_LOG` filters (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

// The server allocates per request on every thread; mimalloc's thread-local heaps avoid
// glibc malloc's lock contention (measured: see the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
