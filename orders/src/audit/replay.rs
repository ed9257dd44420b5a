//! `orders replay --order ID [--at TIME | --version N] [--json]`: an order's event trail as
//! stored, each event with the order's state right after it (the fold of the events up to
//! it), up to the latest event or the one in force at `--at` / `--version`. A table by
//! default; with `--json`, one `{"event", "order"}` object per line (the shape of the bus
//! detail). A damaged chain is reported on stderr (`audit verify --order` names it all).

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use events_schema::{Envelope, Order, OrderId, evolve, verify_chain};

use super::{Data, Source, parse_time};

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    source: Source,
    /// The order whose history to show.
    #[arg(long, value_name = "ID")]
    order: String,
    /// Stop at the last event that occurred at or before this time (RFC 3339, or a date).
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "version")]
    at: Option<DateTime<Utc>>,
    /// Stop at this version.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    version: Option<u64>,
    /// One JSON object per event, `{"event": <envelope>, "order": <state after it>}`.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let id = OrderId::parse(&args.order).map_err(|e| anyhow::anyhow!("--order: {e}"))?;
    let views = Data::open(&args.source).await?.views()?;
    let raw = views.archive.history_raw(&id).await?;
    if raw.is_empty() {
        bail!("order {id} has no events");
    }
    let breaks = verify_chain(raw.iter().map(|e| e.envelope.as_str()));
    if !breaks.is_empty() {
        eprintln!(
            "warning: the stored history of order {id} is damaged ({}); `orders audit verify --order {id}` names every problem",
            breaks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let mut steps: Vec<(Envelope, Order)> = Vec::with_capacity(raw.len());
    for e in &raw {
        let envelope: Envelope = serde_json::from_str(&e.envelope)
            .with_context(|| format!("order {id}, version {}: not a readable event", e.version))?;
        let state = evolve(steps.last().map(|(_, o)| o), &envelope)?;
        steps.push((envelope, state));
    }
    let latest = steps.len() as u64;
    let shown = match (args.version, args.at) {
        (Some(v), _) if v > latest => {
            bail!("order {id} has {latest} event(s); there is no version {v}")
        }
        (Some(v), _) => v as usize,
        (None, Some(at)) => {
            let n = steps
                .iter()
                .take_while(|(e, _)| e.occurred_at <= at)
                .count();
            if n == 0 {
                bail!(
                    "order {id} did not exist yet at {} (placed at {})",
                    stamp(at),
                    stamp(steps[0].0.occurred_at)
                );
            }
            n
        }
        (None, None) => steps.len(),
    };
    let steps = &steps[..shown];
    if args.json {
        for (event, order) in steps {
            println!("{}", serde_json::json!({ "event": event, "order": order }));
        }
        return Ok(());
    }
    print_table(&id, steps, latest, breaks.is_empty());
    Ok(())
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What an event changed: `field: old → new` for each top-level field, except the version
/// and `updatedAt`, which every event moves.
fn changes(before: Option<&Order>, after: &Order) -> String {
    let as_map = |o: &Order| match serde_json::to_value(o) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let after_map = as_map(after);
    let before_map = before.map(as_map).unwrap_or_default();
    let mut parts = Vec::new();
    for (field, value) in &after_map {
        if matches!(
            field.as_str(),
            "version" | "updatedAt" | "orderId" | "createdAt"
        ) {
            continue;
        }
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match before_map.get(field) {
            Some(old) if old == value => {}
            Some(old) if old.is_null() => parts.push(format!("{field}: {}", show(value))),
            Some(old) => parts.push(format!("{field}: {} → {}", show(old), show(value))),
            None if value.is_null() => {}
            None => parts.push(format!("{field}: {}", show(value))),
        }
    }
    parts.join(", ")
}

fn print_table(id: &OrderId, steps: &[(Envelope, Order)], latest: u64, intact: bool) {
    let shown = steps.len() as u64;
    let chain = if intact {
        "chain intact"
    } else {
        "CHAIN DAMAGED"
    };
    if shown == latest {
        println!("order {id}: {latest} event(s), {chain}");
    } else {
        println!("order {id}: version {shown} of {latest}, {chain}");
    }
    let rows: Vec<[String; 6]> = steps
        .iter()
        .enumerate()
        .map(|(i, (event, order))| {
            let before = i.checked_sub(1).map(|j| &steps[j].1);
            [
                event.version.to_string(),
                stamp(event.occurred_at),
                event.event.type_name().to_owned(),
                order.status.as_str().to_owned(),
                event.hash.to_string()[..12].to_owned(),
                changes(before, order),
            ]
        })
        .collect();
    let header = [
        "VERSION",
        "OCCURRED AT",
        "EVENT",
        "STATUS",
        "HASH",
        "CHANGES",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else if i == 0 {
                out.push_str(&format!("{cell:>w$}  "));
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    println!("{}", line(header));
    for row in &rows {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
    if let Some((event, order)) = steps.last() {
        println!("\nstate after version {}:", event.version);
        println!(
            "{}",
            serde_json::to_string_pretty(order).unwrap_or_default()
        );
    }
}
