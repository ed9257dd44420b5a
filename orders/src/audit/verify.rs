//! `orders audit verify [--order ID] [--json]`: every order's stored history checked end to
//! end, as an outside auditor would, by the verdicts of [`events_schema::audit`]; and
//! `orders audit verify --digest FILE` (see [`super::digest`]). This module reads and
//! reports: exit 0 when clean; otherwise every problem is named (order, version, property)
//! and the exit status is 1.
//!
//! Histories are read in pages of whole histories and checked on every core while the next
//! page is read, each against the read model rows of its orders. Where a page covers a
//! range of order ids (embedded), rows in the range without events are found with it;
//! where it covers only its own orders (AWS), a pass over the whole read model at the end
//! finds the rows of orders no page had. The read model lags the events by design: where
//! the backend cannot say how far the projector got ([`Projected::Unknown`]), a row behind
//! the events is re-read until `--settle` runs out.

use std::{
    collections::{HashSet, VecDeque},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::bail;
use backend::{Coverage, HistoryCursor, Projected, ProjectedOrder, RawHistory};
use events_schema::{
    OrderId,
    audit::{Checked, Finding, check_order},
};
use serde::Serialize;

use super::{Data, Source, Views, digest, progress::Progress, rate, thousands};

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

/// Events per page of histories.
pub(super) const PAGE_EVENTS: usize = 20_000;

/// What checking a page found.
#[derive(Default)]
struct PageResult {
    orders: u64,
    events: u64,
    pending: u64,
    findings: Vec<Finding>,
    recheck: Vec<String>,
}

/// Checks a page of histories against the read model rows the backend gave for it (rows
/// without a history in the page are read again later, whole).
fn check_page(
    mut page: Vec<RawHistory>,
    mut rows: Vec<ProjectedOrder>,
    mark: Projected,
) -> PageResult {
    // Both in order-id order for the merge below (archives that read in no key order).
    if !page.is_sorted_by(|a, b| a.order_id <= b.order_id) {
        page.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
    }
    if !rows.is_sorted_by(|a, b| a.order_id <= b.order_id) {
        rows.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
    }
    let mut out = PageResult::default();
    let mut rows = rows.into_iter().peekable();
    for history in &page {
        while let Some(orphan) = rows.next_if(|r| r.order_id < history.order_id) {
            out.recheck.push(orphan.order_id);
        }
        let row = rows.next_if(|r| r.order_id == history.order_id);
        out.orders += 1;
        out.events += history.events.len() as u64;
        let checked = check_order(
            &history.order_id,
            &history.events,
            row.as_ref(),
            mark,
            false,
        );
        if checked.recheck {
            // Read again later, whole: its findings come from that reading.
            out.recheck.push(history.order_id.clone());
        } else {
            out.pending += checked.pending;
            out.findings.extend(checked.findings);
        }
    }
    out.recheck.extend(rows.map(|r| r.order_id));
    out
}

/// Totals of a run.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    orders: u64,
    events: u64,
    problems: u64,
    orders_with_problems: u64,
    /// Events the projector had not applied yet (not problems).
    pending_events: u64,
    seconds: f64,
    events_per_second: u64,
    clean: bool,
}

struct Report {
    json: bool,
    progress: Progress,
    summary: Summary,
    last_order_with_problem: Option<String>,
}

impl Report {
    fn add(&mut self, findings: Vec<Finding>) {
        for f in findings {
            self.summary.problems += 1;
            if self.last_order_with_problem.as_deref() != Some(f.order_id.as_str()) {
                self.summary.orders_with_problems += 1;
                self.last_order_with_problem = Some(f.order_id.clone());
            }
            let line = if self.json {
                serde_json::to_string(&f).unwrap_or_default()
            } else {
                f.to_string()
            };
            self.progress.println(&line);
        }
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
        summary: Summary::default(),
        last_order_with_problem: None,
    };
    let settle = Duration::from_secs(args.settle);
    let recheck = match &args.order {
        Some(order) => {
            let id = OrderId::parse(order).map_err(|e| anyhow::anyhow!("--order: {e}"))?;
            let events = views.archive.history_raw(&id).await?;
            if events.is_empty() && views.projection.get_projected(order).await?.is_none() {
                bail!("order {order} has no events and no read model row");
            }
            report.summary.orders = 1;
            report.summary.events = events.len() as u64;
            vec![order.clone()]
        }
        None => scan_all(&views, &mut report).await?,
    };
    for order_id in recheck {
        let checked = recheck_order(&views, &order_id, settle).await?;
        report.summary.pending_events += checked.pending;
        report.add(checked.findings);
    }
    report.progress.finish();
    let s = &mut report.summary;
    s.seconds = started.elapsed().as_secs_f64();
    s.events_per_second = rate(s.events, s.seconds);
    s.clean = s.problems == 0;
    if args.json {
        println!("{}", serde_json::json!({ "summary": s }));
    } else {
        let pending = if s.pending_events > 0 {
            format!(
                "; {} event(s) not yet projected (not a problem)",
                thousands(s.pending_events)
            )
        } else {
            String::new()
        };
        println!(
            "audit verify: {} order(s), {} event(s), {} problem(s) in {} order(s){pending}; {:.1} s ({} events/s)",
            thousands(s.orders),
            thousands(s.events),
            thousands(s.problems),
            thousands(s.orders_with_problems),
            s.seconds,
            thousands(s.events_per_second),
        );
    }
    if s.problems > 0 {
        bail!(
            "the audit found {} problem(s) in {} order(s)",
            s.problems,
            s.orders_with_problems
        );
    }
    Ok(())
}

/// Every order, page by page, checked on the blocking pool while the next page is read.
/// Returns the orders to read again.
async fn scan_all(views: &Views, report: &mut Report) -> anyhow::Result<Vec<String>> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut inflight: VecDeque<tokio::task::JoinHandle<PageResult>> = VecDeque::new();
    let mut recheck = Vec::new();
    let mut cursor: Option<HistoryCursor> = None;
    // The orders of pages that covered only themselves: a row of any other order is found
    // by the pass over the read model at the end.
    let mut seen: Option<HashSet<String>> = None;
    let mut absorb = |r: PageResult, report: &mut Report| {
        report.summary.orders += r.orders;
        report.summary.events += r.events;
        report.summary.pending_events += r.pending;
        report.progress.inc(r.events);
        report.add(r.findings);
        recheck.extend(r.recheck);
    };
    loop {
        let page = views
            .archive
            .histories(cursor.as_ref(), PAGE_EVENTS)
            .await?;
        // The projector's progress first, then its rows: see `check_order`.
        let mark = views.projection.projected().await?;
        // Even an empty page of this kind calls for the pass (an empty table's only page).
        if page.coverage == Coverage::Orders {
            seen.get_or_insert_default()
                .extend(page.histories.iter().map(|h| h.order_id.clone()));
        }
        let rows = views.projection.rows_for(&page).await?;
        let next = page.next;
        let histories = page.histories;
        inflight.push_back(tokio::task::spawn_blocking(move || {
            check_page(histories, rows, mark)
        }));
        while inflight.len() >= workers {
            if let Some(done) = inflight.pop_front() {
                absorb(done.await?, report);
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for done in inflight {
        absorb(done.await?, report);
    }
    if let Some(seen) = seen {
        let mut cursor = None;
        loop {
            let page = views.projection.rows(cursor.as_ref(), 10_000).await?;
            recheck.extend(
                page.rows
                    .into_iter()
                    .filter(|r| !seen.contains(&r.order_id))
                    .map(|r| r.order_id),
            );
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(recheck)
}

/// Reads one order again: the projector's progress, then its row, then its history, so that
/// the row can only be behind events the projector had not applied. Where the backend cannot
/// say how far the projector got, reads again until `settle` runs out.
async fn recheck_order(views: &Views, order_id: &str, settle: Duration) -> anyhow::Result<Checked> {
    let deadline = Instant::now() + settle;
    let id = OrderId::parse(order_id).ok();
    loop {
        let mark = views.projection.projected().await?;
        let row = views.projection.get_projected(order_id).await?;
        let events = match &id {
            Some(id) => views.archive.history_raw(id).await?,
            None => Vec::new(),
        };
        let last_try = matches!(mark, Projected::Through(_)) || Instant::now() >= deadline;
        let checked = check_order(order_id, &events, row.as_ref(), mark, last_try);
        if !checked.recheck {
            return Ok(checked);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
