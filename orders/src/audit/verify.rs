//! `orders audit verify [--order ID] [--json]`: every order's stored history checked end to
//! end, as an outside auditor would, by the verdicts of [`events_schema::audit`]; and
//! `orders audit verify --digest FILE` (see [`super::digest`]). This module reads and
//! reports: exit 0 when clean; otherwise every problem is named (order, version, property)
//! and the exit status is 1.
//!
//! The run itself is [`backend::audit::Verifier`]'s, which the operator console runs too;
//! this module adds the progress bar, the printing and the exit status.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::bail;
use backend::audit::{AuditSink, Totals, Verifier};
use events_schema::{OrderId, audit::Finding};
use serde::Serialize;

use super::{Data, Source, digest, progress::Progress, rate, thousands};

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: AuditAction,
}

#[derive(clap::Subcommand, Debug)]
enum AuditAction {
    /// Check every order's stored history (versions, hash chain, stored states) and the
    /// read model against the fold of the events; exit 1 naming each problem. With
    /// --digest: prove instead that every event a digest covers is still stored, unchanged.
    Verify(VerifyArgs),
    /// Seal the store: every order's head (order id, version, head hash) and a Merkle root
    /// over them, to keep for a later `audit verify --digest` (see docs/audit.md).
    Digest(digest::DigestArgs),
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// Check only this order.
    #[arg(long, value_name = "ID", conflicts_with = "digest")]
    order: Option<String>,
    /// One JSON object per problem, then a summary object; one per line.
    #[arg(long)]
    json: bool,
    /// Where the backend cannot tell a lagging read model from a wrong one: how long a row
    /// behind the events may take to catch up before it counts as a problem.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    settle: u64,
    /// A digest file of `orders audit digest`: check its leaves against its root, then that
    /// the store still holds every event it covers, unchanged (exit 1 naming the order and
    /// version where it does not). Orders and events added since are counted, not checked.
    #[arg(long, value_name = "FILE")]
    digest: Option<PathBuf>,
    /// The root kept apart from the digest file (64 hex digits): the file's root must be it.
    #[arg(long, value_name = "HEX", requires = "digest")]
    root: Option<String>,
}

pub(super) use backend::audit::PAGE_EVENTS;

/// Totals of a run, as printed.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    #[serde(flatten)]
    totals: Totals,
    seconds: f64,
    events_per_second: u64,
    clean: bool,
}

/// Prints each problem as it is found, under the progress bar.
struct Report {
    json: bool,
    progress: Progress,
}

impl AuditSink for Report {
    fn findings(&mut self, findings: Vec<Finding>) {
        for f in findings {
            let line = if self.json {
                serde_json::to_string(&f).unwrap_or_default()
            } else {
                f.to_string()
            };
            self.progress.println(&line);
        }
    }

    fn progress(&mut self, events: u64) {
        self.progress.inc(events);
    }
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let args = match args.action {
        AuditAction::Digest(args) => return digest::seal(args).await,
        AuditAction::Verify(args) => args,
    };
    if let Some(file) = &args.digest {
        return digest::verify(&args.source, file, args.root.as_deref(), args.json).await;
    }
    let views = Data::open(&args.source).await?.views()?;
    let started = Instant::now();
    let total = if Progress::wanted() {
        Some(views.archive.size().await?.events)
    } else {
        None
    };
    let mut report = Report {
        json: args.json,
        progress: Progress::new("verify", total),
    };
    let settle = Duration::from_secs(args.settle);
    let verifier = Verifier {
        archive: views.archive.clone(),
        projection: views.projection.clone(),
    };
    let totals = match &args.order {
        Some(order) => {
            let id = OrderId::parse(order).map_err(|e| anyhow::anyhow!("--order: {e}"))?;
            verifier.verify_order(&id, settle, &mut report).await?
        }
        None => {
            verifier
                .verify_all(settle, PAGE_EVENTS, &mut report)
                .await?
        }
    };
    report.progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let s = &Summary {
        events_per_second: rate(totals.events, seconds),
        clean: totals.problems == 0,
        seconds,
        totals,
    };
    if args.json {
        println!("{}", serde_json::json!({ "summary": s }));
    } else {
        let pending = if s.totals.pending_events > 0 {
            format!(
                "; {} event(s) not yet projected (not a problem)",
                thousands(s.totals.pending_events)
            )
        } else {
            String::new()
        };
        println!(
            "audit verify: {} order(s), {} event(s), {} problem(s) in {} order(s){pending}; {:.1} s ({} events/s)",
            thousands(s.totals.orders),
            thousands(s.totals.events),
            thousands(s.totals.problems),
            thousands(s.totals.orders_with_problems),
            s.seconds,
            thousands(s.events_per_second),
        );
    }
    if s.totals.problems > 0 {
        bail!(
            "the audit found {} problem(s) in {} order(s)",
            s.totals.problems,
            s.totals.orders_with_problems
        );
    }
    Ok(())
}
