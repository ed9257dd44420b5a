//! `orders rebuild`: the read model recomputed from the events alone, into a fresh table,
//! then swapped in atomically (see `backend::embedded::SqliteRebuild` for how a running
//! projector keeps every version). Safe beside a running `orders dev`.

use std::{sync::Arc, time::Instant};

use anyhow::bail;
use backend::{EventArchive, ProjectionRebuild, embedded::SqliteRebuild};
use serde_json::json;

use super::{Source, progress::Progress, rate, thousands};

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    source: Source,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    super::embedded_only(&args.source, "rebuild", "ProjectionRebuild")?;
    let archive = super::archive(&args.source, "rebuild")?;
    let rebuilder: Arc<dyn ProjectionRebuild> = Arc::new(SqliteRebuild::open(&args.source.data)?);
    let started = Instant::now();
    let total = if Progress::wanted() {
        Some(archive.size().await?.events)
    } else {
        None
    };
    let progress = Progress::new("rebuild", total);
    let bar = progress.clone();
    let report = rebuilder
        .rebuild(Arc::new(move |done| bar.set(done)))
        .await?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    for (order_id, reason) in &report.unfoldable {
        eprintln!("order {order_id}: cannot be folded, its row was kept as it was: {reason}");
    }
    if args.json {
        println!(
            "{}",
            json!({ "summary": {
                "orders": report.orders,
                "events": report.events,
                "caughtUp": report.caught_up,
                "changed": report.changed,
                "unfoldable": report.unfoldable.len(),
                "seconds": seconds,
                "eventsPerSecond": rate(report.events, seconds),
            }})
        );
    } else {
        println!(
            "rebuild: {} order(s) from {} event(s) ({} appended during the rebuild); {} order(s) differed from the replaced read model; {:.1} s ({} events/s)",
            thousands(report.orders),
            thousands(report.events),
            thousands(report.caught_up),
            thousands(report.changed),
            seconds,
            thousands(rate(report.events, seconds)),
        );
    }
    if !report.unfoldable.is_empty() {
        bail!(
            "{} order(s) could not be folded; `orders audit verify` names their problems",
            report.unfoldable.len()
        );
    }
    Ok(())
}
