//! `orders audit digest` and `orders audit verify --digest FILE`: the store sealed at a
//! moment by a Merkle root over every order's head, and later proved still to hold every
//! event the seal covers. The encoding and the verdicts are
//! [`events_schema::audit`]'s; this module reads the store page by page (checking pages on
//! the blocking pool while the next is read) and reports.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::{Context, bail};
use backend::{EventArchive, HistoryCursor, RawHistory};
use chrono::Utc;
use events_schema::{
    ChainHash, OrderId,
    audit::{DigestFile, DigestFinding, Finding, Leaf, chain_findings, check_covered, head_of},
};
use serde::Serialize;

use super::{BackendKind, Data, Source, progress::Progress, thousands, verify::PAGE_EVENTS};

#[derive(clap::Args, Debug)]
pub struct DigestArgs {
    #[command(flatten)]
    source: Source,
    /// Write the digest file (root and leaves, JSON) here instead of to stdout; the summary
    /// and the root are then printed.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print only the root (64 hex digits): what an auditor keeps elsewhere.
    #[arg(long)]
    root_only: bool,
}

/// Every page of histories, each given to `check` on the blocking pool while the next is
/// read; `absorb` takes the results in page order.
async fn scan<R: Send + 'static>(
    archive: &dyn EventArchive,
    progress: &Progress,
    check: impl Fn(Vec<RawHistory>) -> R + Send + Sync + 'static,
    mut absorb: impl FnMut(R),
) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let check = Arc::new(check);
    let mut inflight = VecDeque::new();
    let mut cursor: Option<HistoryCursor> = None;
    loop {
        let page = archive.histories(cursor.as_ref(), PAGE_EVENTS).await?;
        progress.inc(page.histories.iter().map(|h| h.events.len() as u64).sum());
        let check = check.clone();
        let histories = page.histories;
        inflight.push_back(tokio::task::spawn_blocking(move || check(histories)));
        while inflight.len() >= workers {
            if let Some(done) = inflight.pop_front() {
                absorb(done.await?);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for done in inflight {
        absorb(done.await?);
    }
    Ok(())
}

fn backend_name(source: &Source) -> &'static str {
    match source.backend {
        BackendKind::Embedded => "embedded",
        BackendKind::Aws => "aws",
    }
}

/// What sealing a page found: each order's head, and the orders whose stored chain is
/// already broken (sealed as they are, and named).
#[derive(Default)]
struct SealedPage {
    leaves: Vec<Leaf>,
    events: u64,
    broken: Vec<Finding>,
    unreadable_heads: Vec<String>,
}

fn seal_page(histories: Vec<RawHistory>) -> SealedPage {
    let mut out = SealedPage::default();
    for h in histories {
        out.events += h.events.len() as u64;
        out.broken.extend(chain_findings(&h.order_id, &h.events));
        match head_of(&h.order_id, &h.events) {
            Some(Ok(leaf)) => out.leaves.push(leaf),
            Some(Err(why)) => out
                .unreadable_heads
                .push(format!("order {}: {why}", h.order_id)),
            None => {}
        }
    }
    out
}

pub async fn seal(args: DigestArgs) -> anyhow::Result<()> {
    let views = Data::open(&args.source).await?.views()?;
    let created_at = Utc::now();
    let started = Instant::now();
    let progress = Progress::new("digest", None);
    let mut leaves = Vec::new();
    let mut events = 0u64;
    let mut broken = 0u64;
    let mut unsealed = 0u64;
    scan(views.archive.as_ref(), &progress, seal_page, |page| {
        leaves.extend(page.leaves);
        events += page.events;
        broken += page.broken.len() as u64;
        for f in page.broken {
            progress.note(&format!("warning: {f}"));
        }
        unsealed += page.unreadable_heads.len() as u64;
        for line in page.unreadable_heads {
            progress.note(&format!("error: {line}; this order is not in the digest"));
        }
    })
    .await?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let digest = DigestFile::new(leaves, created_at, backend_name(&args.source), seconds);
    let json = serde_json::to_string_pretty(&digest).context("writing the digest as JSON")?;
    let summary = format!(
        "audit digest: {} order(s), {} event(s) in {seconds:.1} s; root {}",
        thousands(digest.orders),
        thousands(events),
        digest.root
    );
    match &args.out {
        Some(path) => {
            write_atomically(path, json.as_bytes())?;
            if args.root_only {
                println!("{}", digest.root);
            } else {
                println!("{summary}; written to {}", path.display());
                println!("root {}", digest.root);
            }
        }
        None if args.root_only => println!("{}", digest.root),
        None => {
            println!("{json}");
            eprintln!("{summary}");
        }
    }
    if broken > 0 || unsealed > 0 {
        bail!(
            "{broken} chain problem(s) and {unsealed} unreadable head(s) found while sealing (above); \
             the digest seals those histories as they are: run `orders audit verify`"
        );
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place, so that a
/// digest file is whole or absent.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// What checking a page against the digest found.
#[derive(Default)]
struct CheckedPage {
    findings: Vec<DigestFinding>,
    covered_orders: Vec<usize>,
    appended: u64,
    new_orders: u64,
    new_events: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    root: String,
    /// Orders and events the digest covers.
    orders: u64,
    events: u64,
    problems: u64,
    orders_with_problems: u64,
    /// Events stored past a covered order's digest version.
    appended_events: u64,
    /// Orders the digest does not have, and their events.
    new_orders: u64,
    new_order_events: u64,
    seconds: f64,
    clean: bool,
}

pub async fn verify(
    source: &Source,
    file: &Path,
    kept: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let kept = kept
        .map(|hex| {
            ChainHash::parse(hex).with_context(|| {
                format!("--root {hex:?}: expected 64 lowercase hex digits (a digest's root)")
            })
        })
        .transpose()?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the digest {}", file.display()))?;
    let digest = DigestFile::parse(&text).with_context(|| file.display().to_string())?;
    digest
        .check(kept.as_ref())
        .with_context(|| file.display().to_string())?;

    let views = Data::open(source).await?.views()?;
    let started = Instant::now();
    let progress = Progress::new("verify", Some(digest.events));
    let leaves = Arc::new(digest.leaves);
    let index: Arc<HashMap<String, usize>> = Arc::new(
        leaves
            .iter()
            .enumerate()
            .map(|(i, l)| (l.order_id.clone(), i))
            .collect(),
    );
    let check = {
        let (leaves, index) = (leaves.clone(), index.clone());
        move |histories: Vec<RawHistory>| {
            let mut out = CheckedPage::default();
            for h in histories {
                match index.get(&h.order_id) {
                    Some(&i) => {
                        let c = check_covered(&leaves[i], &h.events);
                        out.findings.extend(c.findings);
                        out.appended += c.appended;
                        out.covered_orders.push(i);
                    }
                    None => {
                        out.new_orders += 1;
                        out.new_events += h.events.len() as u64;
                    }
                }
            }
            out
        }
    };
    let mut summary = Summary {
        root: digest.root.to_string(),
        orders: digest.orders,
        events: digest.events,
        ..Summary::default()
    };
    let mut seen = vec![false; leaves.len()];
    let mut findings = Vec::new();
    scan(views.archive.as_ref(), &progress, check, |page| {
        for i in page.covered_orders {
            seen[i] = true;
        }
        summary.appended_events += page.appended;
        summary.new_orders += page.new_orders;
        summary.new_order_events += page.new_events;
        findings.extend(page.findings);
    })
    .await?;
    // Every order is in exactly one page, so an unseen one has no events now; read it once
    // more by itself in case it was read while the pages went by.
    for (leaf, _) in leaves.iter().zip(&seen).filter(|(_, seen)| !**seen) {
        let events = match OrderId::parse(&leaf.order_id) {
            Ok(id) => views.archive.history_raw(&id).await?,
            Err(_) => Vec::new(),
        };
        let c = check_covered(leaf, &events);
        summary.appended_events += c.appended;
        findings.extend(c.findings);
    }
    progress.finish();

    findings.sort_by(|a, b| (&a.order_id, a.version).cmp(&(&b.order_id, b.version)));
    let mut last_order: Option<&str> = None;
    for f in &findings {
        summary.problems += 1;
        if last_order != Some(f.order_id.as_str()) {
            summary.orders_with_problems += 1;
            last_order = Some(f.order_id.as_str());
        }
        if json {
            println!("{}", serde_json::to_string(f).unwrap_or_default());
        } else {
            println!("{f}");
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.clean = summary.problems == 0;
    let s = &summary;
    if json {
        println!("{}", serde_json::json!({ "summary": s }));
    } else {
        println!(
            "audit verify --digest: root {} matches its leaves; {} order(s), {} event(s) covered: {} problem(s) in {} order(s); \
             since the digest: {} event(s) appended to covered orders, {} new order(s) with {} event(s); {:.1} s",
            s.root,
            thousands(s.orders),
            thousands(s.events),
            thousands(s.problems),
            thousands(s.orders_with_problems),
            thousands(s.appended_events),
            thousands(s.new_orders),
            thousands(s.new_order_events),
            s.seconds,
        );
    }
    if s.problems > 0 {
        bail!(
            "{} covered event(s) or run(s) of events are missing or changed, in {} order(s)",
            s.problems,
            s.orders_with_problems
        );
    }
    Ok(())
}
