//! `orders rebuild`: the read model recomputed from the events alone, into a fresh table,
//! then swapped in atomically (see `backend::embedded::SqliteRebuild` and
//! `backend::aws::DynamoRebuild` for how a running projector keeps every version). Safe
//! beside a running service.

use std::{sync::Arc, time::Instant};

use anyhow::bail;
use serde_json::json;

use super::{Data, Source, progress::Progress, rate, thousands};

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    source: Source,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    let data = Data::open(&args.source).await?;
    let rebuilder = data.rebuilder()?;
    let started = Instant::now();
    let total = if Progress::wanted() {
        Some(data.views()?.archive.size().await?.events)
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
                "swappedIn": report.swapped_in,
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
        if let Some(table) = &report.swapped_in {
            println!("rebuild: the read model is now table {table}");
        }
    }
    if !report.unfoldable.is_empty() {
        bail!(
            "{} order(s) could not be folded; `orders audit verify` names their problems",
            report.unfoldable.len()
        );
    }
    Ok(())
}
