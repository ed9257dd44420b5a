//! `orders republish --from TIME --to TIME [--order ID] [--status S]`: past events sent to
//! the bus again, through the same publisher and route rules as the projector's, each
//! detail marked `"replayed": true`. Events are read in storage order (so each order's in
//! version order) and an event whose hash does not recompute is not sent. Handlers are
//! idempotent per event id, so their effects are not repeated; other subscribers can tell
//! re-publications by the flag.
//!
//! Embedded: the bus enqueues into the data directory's `queues.db`, which a running
//! `orders dev` polls (or the next one, when it starts). AWS: `PutEvents` on the
//! deployment's bus, whose rules deliver to the route queues.

use std::{sync::Arc, time::Instant};

use anyhow::bail;
use backend::{BusEntry, EventPublisher, EventWindow, RawEvent};
use chrono::{DateTime, SecondsFormat, Utc};
use events_schema::{Envelope, Order, OrderId, Recorded, Status, hash_of};
use serde_json::json;

use super::{Data, Source, parse_time, progress::Progress, rate, thousands};

#[derive(clap::Args, Debug)]
pub struct RepublishArgs {
    #[command(flatten)]
    source: Source,
    /// Start of the window, inclusive: events whose `occurredAt` is at or after it.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: DateTime<Utc>,
    /// End of the window, exclusive.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: DateTime<Utc>,
    /// Only this order's events.
    #[arg(long, value_name = "ID")]
    order: Option<String>,
    /// Only the events after which the order had this status (what the status rules match).
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    status: Option<Status>,
    /// Count what would be sent; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_status(raw: &str) -> Result<Status, String> {
    raw.parse::<Status>().map_err(|e| e.to_string())
}

/// Events per page read and per publish call.
const PAGE: usize = 500;
/// Attempts for entries the bus reports as failed.
const ATTEMPTS: u32 = 5;

/// The bus entry for a stored event, unless the event is damaged.
fn entry(source: &str, raw: &RawEvent) -> Result<BusEntry, String> {
    let envelope: Envelope =
        serde_json::from_str(&raw.envelope).map_err(|e| format!("not a readable envelope: {e}"))?;
    if hash_of(&envelope) != envelope.hash {
        return Err("its hash does not recompute (run `orders audit verify`)".into());
    }
    let order: Order = serde_json::from_str(&raw.order_state)
        .map_err(|e| format!("its stored state is not readable: {e}"))?;
    projector::bus_entry(source, &Recorded { envelope, order }, true)
        .map_err(|e| format!("cannot encode it for the bus: {e}"))
}

/// Publishes `entries`, retrying the ones the bus refuses; returns how many still failed.
async fn publish(publisher: &dyn EventPublisher, entries: Vec<BusEntry>) -> anyhow::Result<u64> {
    let mut pending = entries;
    for attempt in 1..=ATTEMPTS {
        let failed = publisher.publish(&pending).await?;
        if failed.is_empty() {
            return Ok(0);
        }
        pending = failed
            .into_iter()
            .filter_map(|i| pending.get(i).cloned())
            .collect();
        if attempt < ATTEMPTS {
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
        }
    }
    Ok(pending.len() as u64)
}

pub async fn run(args: RepublishArgs) -> anyhow::Result<()> {
    if args.from >= args.to {
        bail!("--from must be before --to");
    }
    let order_id = match &args.order {
        Some(o) => Some(OrderId::parse(o).map_err(|e| anyhow::anyhow!("--order: {e}"))?),
        None => None,
    };
    let data = Data::open(&args.source).await?;
    let archive = data.views()?.archive;
    let (publisher, source): (Arc<dyn EventPublisher>, String) = data.publisher()?;
    let window = EventWindow {
        from: args.from,
        to: args.to,
        order_id,
        status: args.status,
    };

    let started = Instant::now();
    let progress = Progress::new("republish", None);
    let (mut sent, mut refused, mut failed) = (0u64, 0u64, 0u64);
    let mut cursor = None;
    loop {
        let page = archive
            .events_between(&window, cursor.as_ref(), PAGE)
            .await?;
        let mut entries = Vec::with_capacity(page.events.len());
        for raw in &page.events {
            match entry(&source, raw) {
                Ok(e) => entries.push(e),
                Err(reason) => {
                    refused += 1;
                    progress.note(&format!(
                        "order {}, version {}: not republished: {reason}",
                        raw.order_id, raw.version
                    ));
                }
            }
        }
        let n = entries.len() as u64;
        if !args.dry_run && !entries.is_empty() {
            failed += publish(publisher.as_ref(), entries).await?;
        }
        sent += n;
        progress.inc(page.events.len() as u64);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    progress.finish();
    let sent = sent - failed;
    let seconds = started.elapsed().as_secs_f64();
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    if args.json {
        println!(
            "{}",
            json!({ "summary": {
                "from": stamp(args.from),
                "to": stamp(args.to),
                "dryRun": args.dry_run,
                "published": if args.dry_run { 0 } else { sent },
                "matched": sent + failed + refused,
                "refused": refused,
                "failed": failed,
                "seconds": seconds,
                "eventsPerSecond": rate(sent, seconds),
            }})
        );
    } else {
        let verb = if args.dry_run {
            "would be published again (dry run)"
        } else {
            "published again with \"replayed\": true"
        };
        println!(
            "republish: {} event(s) from {} to {} {verb}; {} refused as damaged; {} failed; {:.1} s",
            thousands(sent),
            stamp(args.from),
            stamp(args.to),
            thousands(refused),
            thousands(failed),
            seconds,
        );
    }
    if refused > 0 || failed > 0 {
        bail!("{refused} event(s) refused as damaged and {failed} not accepted by the bus");
    }
    Ok(())
}
