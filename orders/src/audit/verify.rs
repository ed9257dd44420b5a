//! `orders audit verify [--order ID] [--json]`: every order's stored history checked end to
//! end, as an outside auditor would: versions gapless from 1, every `hash` recomputed from
//! the canonical envelope, every `prevHash` linked to the previous `hash`, the stored key
//! equal to the envelope's, the state stored with each event equal to the fold of the
//! events, and the read model equal to the fold. Exit 0 when clean; otherwise every
//! problem is named (order, version, property) and the exit status is 1.
//!
//! Histories are read in pages of whole histories and checked on every core while the next
//! page is read, each against the read model rows of its orders. Where a page covers a
//! range of order ids (embedded), rows in the range without events are found with it;
//! where it covers only its own orders (AWS), a pass over the whole read model at the end
//! finds the rows of orders no page had. Each event takes a fast path that gives the verdict of
//! [`events_schema::verify_chain`] (the reference check over the raw JSON) without its
//! generic JSON round trip: when the stored text is byte for byte the serialization of the
//! parsed envelope, the canonical form computed from the typed envelope is the RFC 8785
//! form of that text (a property test in events-schema pins this). Any difference, however
//! small, sends the whole order through `verify_chain` itself.
//!
//! The read model lags the events by design; a lagging row is not a problem. Where the
//! backend says how far the projector got ([`Projected::Through`]), only events past that
//! point may be missing from the read model; elsewhere a row behind the events is re-read
//! until `--settle` runs out.

use std::{
    collections::{HashSet, VecDeque},
    time::{Duration, Instant},
};

use anyhow::bail;
use backend::{Coverage, HistoryCursor, Projected, ProjectedOrder, RawEvent, RawHistory};
use events_schema::{
    ChainBreak, ChainHash, Envelope, Order, OrderId, canonical, evolve, hash_of_canonical,
    verify_chain,
};
use serde::Serialize;

use super::{Data, Source, Views, progress::Progress, rate, thousands};

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: AuditAction,
}

#[derive(clap::Subcommand, Debug)]
enum AuditAction {
    /// Check every order's stored history (versions, hash chain, stored states) and the
    /// read model against the fold of the events; exit 1 naming each problem.
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// Check only this order.
    #[arg(long, value_name = "ID")]
    order: Option<String>,
    /// One JSON object per problem, then a summary object; one per line.
    #[arg(long)]
    json: bool,
    /// Where the backend cannot tell a lagging read model from a wrong one: how long a row
    /// behind the events may take to catch up before it counts as a problem.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    settle: u64,
}

/// Events per page of histories.
const PAGE_EVENTS: usize = 20_000;

/// A property of the stored data that does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Property {
    /// Versions do not run 1, 2, 3, ... without gaps.
    VersionGap,
    /// The stored `hash` is not the hash of the canonical envelope.
    Hash,
    /// The `prevHash` is not the previous event's `hash`.
    PrevHash,
    /// The stored text is not a readable envelope.
    Unreadable,
    /// The key the event is stored under is not the envelope's order id and version.
    Key,
    /// The history cannot be folded into a state.
    Fold,
    /// The state stored with an event is not the fold of the events up to it.
    StateSnapshot,
    /// The read model's row is not the fold of the events up to its version.
    ReadModel,
    /// The read model has no row for an order whose events were projected.
    ReadModelMissing,
    /// The read model's row is older than events that were projected.
    ReadModelBehind,
    /// The read model has a row for an order without events.
    ReadModelOrphan,
}

impl Property {
    fn name(self) -> &'static str {
        match self {
            Property::VersionGap => "version-gap",
            Property::Hash => "hash",
            Property::PrevHash => "prev-hash",
            Property::Unreadable => "unreadable",
            Property::Key => "key",
            Property::Fold => "fold",
            Property::StateSnapshot => "state-snapshot",
            Property::ReadModel => "read-model",
            Property::ReadModelMissing => "read-model-missing",
            Property::ReadModelBehind => "read-model-behind",
            Property::ReadModelOrphan => "read-model-orphan",
        }
    }
}

/// One problem: which order, which version (when it is about one event), what property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub order_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub property: Property,
    pub detail: String,
}

impl Finding {
    fn new(order_id: &str, version: Option<u64>, property: Property, detail: String) -> Self {
        Self {
            order_id: order_id.to_owned(),
            version,
            property,
            detail,
        }
    }

    fn human(&self) -> String {
        match self.version {
            Some(v) => format!(
                "order {}, version {v}: {}: {}",
                self.order_id,
                self.property.name(),
                self.detail
            ),
            None => format!(
                "order {}: {}: {}",
                self.order_id,
                self.property.name(),
                self.detail
            ),
        }
    }
}

/// The verdict on one order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub findings: Vec<Finding>,
    /// Events the projector has not applied yet (not a problem).
    pub pending: u64,
    /// The read model could not be judged against this read; read both again.
    pub recheck: bool,
}

fn from_break(order_id: &str, b: ChainBreak) -> Finding {
    match b {
        ChainBreak::VersionGap { expected, found } => Finding::new(
            order_id,
            Some(found),
            Property::VersionGap,
            format!(
                "version {found} where version {expected} was expected (versions run 1, 2, 3, ... without gaps)"
            ),
        ),
        ChainBreak::HashMismatch {
            version,
            stored,
            computed,
        } => Finding::new(
            order_id,
            Some(version),
            Property::Hash,
            format!(
                "stored hash {stored} is not the recomputed {computed}: the event changed after it was written"
            ),
        ),
        ChainBreak::PrevHashMismatch {
            version,
            expected,
            found,
        } => Finding::new(
            order_id,
            Some(version),
            Property::PrevHash,
            format!("prevHash {found} is not the previous event's hash {expected}"),
        ),
        ChainBreak::Unreadable { index, reason } => Finding::new(
            order_id,
            Some(index as u64),
            Property::Unreadable,
            format!("not a readable envelope: {reason}"),
        ),
    }
}

/// The fast path: every envelope parsed, its stored text exactly the canonical form of the
/// parse plus the `hash` member (members compared byte for byte, in any order), keys,
/// versions and links right, and every hash recomputed from those canonical bytes. `None`
/// as soon as anything differs (then [`verify_chain`] decides).
///
/// Why this is `verify_chain`'s verdict: the stored object minus `hash` then has exactly
/// the members of the canonical form, each with the same bytes; so its RFC 8785 form is
/// the canonical form (which a property test in events-schema pins to a generic JCS
/// encoder), and so is the hash `verify_chain` computes.
fn fast_chain(order_id: &str, events: &[RawEvent]) -> Option<Vec<Envelope>> {
    let mut prev = ChainHash::GENESIS;
    let mut envelopes = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let envelope: Envelope = serde_json::from_str(&e.envelope).ok()?;
        let canonical = canonical(&envelope);
        let intact = envelope.version == i as u64 + 1
            && envelope.version == e.version
            && envelope.order_id.as_str() == order_id
            && e.order_id == order_id
            && envelope.prev_hash == prev
            && is_canonical_with_hash(e.envelope.as_bytes(), &canonical)
            && hash_of_canonical(&canonical) == envelope.hash;
        if !intact {
            return None;
        }
        prev = envelope.hash;
        envelopes.push(envelope);
    }
    Some(envelopes)
}

/// Whether `stored` is a compact JSON object with exactly the members of `canonical` (a
/// compact object), each with the same bytes, plus one `hash` member holding a plain
/// 64-character string.
fn is_canonical_with_hash(stored: &[u8], canonical: &[u8]) -> bool {
    let (Some(stored), Some(expected)) = (members(stored), members(canonical)) else {
        return false;
    };
    if stored.len() != expected.len() + 1 {
        return false;
    }
    let mut hashes = 0;
    let mut seen = vec![false; expected.len()];
    for (key, value) in &stored {
        if *key == b"hash" {
            hashes += 1;
            if value.len() != 66 || value.contains(&b'\\') {
                return false;
            }
            continue;
        }
        match expected.iter().position(|(k, _)| k == key) {
            Some(at) if !seen[at] && expected[at].1 == *value => seen[at] = true,
            _ => return false, // unknown, repeated or different
        }
    }
    hashes == 1 && seen.iter().all(|s| *s)
}

/// The members of a compact JSON object as (key, value) byte slices; `None` if the text is
/// not one (whitespace between tokens, an escaped key, trailing bytes, ...).
fn members(text: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::with_capacity(12);
    if *text.first()? != b'{' {
        return None;
    }
    if text.get(1) == Some(&b'}') {
        return (text.len() == 2).then_some(out);
    }
    let mut i = 1;
    loop {
        if *text.get(i)? != b'"' {
            return None;
        }
        let key_start = i + 1;
        let key_end = key_start
            + text
                .get(key_start..)?
                .iter()
                .position(|&b| b == b'"' || b == b'\\')?;
        if text[key_end] != b'"' || *text.get(key_end + 1)? != b':' {
            return None;
        }
        let value_start = key_end + 2;
        i = value_end(text, value_start)?;
        if i == value_start {
            return None;
        }
        out.push((&text[key_start..key_end], &text[value_start..i]));
        match *text.get(i)? {
            b',' => i += 1,
            b'}' => return (i + 1 == text.len()).then_some(out),
            _ => return None,
        }
    }
}

/// Where the JSON value starting at `i` ends (the index after it).
fn value_end(t: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *t.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match *t.get(i)? {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
                continue;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return Some(i); // the end of the enclosing object: a scalar ended
                }
                depth -= 1;
                i += 1;
            }
            b',' if depth == 0 => return Some(i),
            _ => {
                i += 1;
                continue;
            }
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

/// The reference path, for an order the fast path did not clear.
fn slow_chain(
    order_id: &str,
    events: &[RawEvent],
    findings: &mut Vec<Finding>,
) -> Vec<Option<Envelope>> {
    findings.extend(
        verify_chain(events.iter().map(|e| e.envelope.as_str()))
            .into_iter()
            .map(|b| from_break(order_id, b)),
    );
    events
        .iter()
        .map(|e| {
            let envelope = serde_json::from_str::<Envelope>(&e.envelope).ok()?;
            if envelope.order_id.as_str() != e.order_id || envelope.version != e.version {
                findings.push(Finding::new(
                    order_id,
                    Some(e.version),
                    Property::Key,
                    format!(
                        "stored under order {} version {}, but the envelope says order {} version {}",
                        e.order_id, e.version, envelope.order_id, envelope.version
                    ),
                ));
            }
            Some(envelope)
        })
        .collect()
}

/// The top-level fields in which two orders differ, e.g. `status ("completed" ≠ "canceled")`.
fn differences(expected: &Order, found: &Order) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(expected), serde_json::to_value(found))
    else {
        return "they differ".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show =
                |v: Option<&serde_json::Value>| v.map_or("absent".to_owned(), ToString::to_string);
            format!("{k} (fold {}, stored {})", show(a.get(k)), show(b.get(k)))
        })
        .collect();
    if diffs.is_empty() {
        "they differ".into()
    } else {
        diffs.join(", ")
    }
}

/// Whether `stored` (JSON text) is `state`, given `state` serialized: byte for byte as
/// written, or, when the text is formatted otherwise, as a value.
fn same_state(state: &Order, serialized: &[u8], stored: &str) -> Result<(), String> {
    if serialized == stored.as_bytes() {
        return Ok(());
    }
    match serde_json::from_str::<Order>(stored) {
        Ok(found) if found == *state => Ok(()),
        Ok(found) => Err(differences(state, &found)),
        Err(e) => Err(format!("not a readable order: {e}")),
    }
}

/// The version of a read model row (its `version` member), without parsing the rest.
fn row_version(body: &str) -> Result<u64, String> {
    let member = members(body.as_bytes()).and_then(|m| {
        m.iter()
            .find(|(k, _)| *k == b"version")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
    });
    match member {
        Some(version) => Ok(version),
        None => serde_json::from_str::<Order>(body)
            .map(|o| o.version)
            .map_err(|e| format!("the read model's row is not a readable order: {e}")),
    }
}

/// Checks one order's stored history and its read model row. `last_try` turns a read that
/// cannot be judged (see [`Checked::recheck`]) into a problem.
pub fn check_order(
    order_id: &str,
    events: &[RawEvent],
    projected: Option<&ProjectedOrder>,
    mark: Projected,
    last_try: bool,
) -> Checked {
    let mut out = Checked::default();
    let row = projected.map(|p| row_version(&p.body).map(|v| (v, p.body.as_str())));
    if events.is_empty() {
        if let Some(row) = row {
            if last_try {
                out.findings.push(Finding::new(
                    order_id,
                    row.ok().map(|(v, _)| v),
                    Property::ReadModelOrphan,
                    "the read model has this order, but the event store has no events for it"
                        .into(),
                ));
            } else {
                out.recheck = true;
            }
        }
        return out;
    }
    let envelopes: Vec<Option<Envelope>> = match fast_chain(order_id, events) {
        Some(envelopes) => envelopes.into_iter().map(Some).collect(),
        None => slow_chain(order_id, events, &mut out.findings),
    };

    // Fold, checking the state stored with each event and, at its version, the read model.
    let row_version = row.as_ref().and_then(|r| r.as_ref().ok()).map(|(v, _)| *v);
    let mut buf = Vec::with_capacity(1024);
    let mut state: Option<Order> = None;
    let mut at_row: Option<Result<(), String>> = None;
    let mut folded = 0u64;
    for (e, envelope) in events.iter().zip(&envelopes) {
        let Some(envelope) = envelope else {
            out.findings.push(Finding::new(
                order_id,
                Some(e.version),
                Property::Fold,
                "cannot fold past this event: not a readable envelope".into(),
            ));
            break;
        };
        match evolve(state.as_ref(), envelope) {
            Ok(next) => state = Some(next),
            Err(err) => {
                out.findings.push(Finding::new(
                    order_id,
                    Some(envelope.version),
                    Property::Fold,
                    err.to_string(),
                ));
                break;
            }
        }
        let Some(s) = &state else { break };
        buf.clear();
        let _ = serde_json::to_writer(&mut buf, s);
        if let Err(diff) = same_state(s, &buf, &e.order_state) {
            out.findings.push(Finding::new(
                order_id,
                Some(envelope.version),
                Property::StateSnapshot,
                format!("the state stored with the event is not the fold of the events: {diff}"),
            ));
        }
        folded += 1;
        if Some(s.version) == row_version
            && let Some(Ok((_, body))) = &row
        {
            at_row = Some(same_state(s, &buf, body));
        }
    }

    // The read model, against what the projector is known to have applied.
    let n = events.len() as u64;
    let settled = match mark {
        Projected::Through(c) => events
            .iter()
            .filter(|e| e.position.is_none_or(|p| p <= c))
            .count() as u64,
        Projected::Unknown => n,
    };
    let exact = matches!(mark, Projected::Through(_));
    match row {
        None if settled == 0 => out.pending = n,
        None if exact || last_try => out.findings.push(Finding::new(
            order_id,
            Some(settled),
            Property::ReadModelMissing,
            format!("the read model has no row for this order, though its events through version {settled} were projected"),
        )),
        None => out.recheck = true,
        Some(Err(reason)) => out.findings.push(Finding::new(
            order_id,
            None,
            Property::ReadModel,
            reason,
        )),
        Some(Ok((version, _))) if version > n => {
            if last_try {
                out.findings.push(Finding::new(
                    order_id,
                    Some(version),
                    Property::ReadModel,
                    format!("the read model is at version {version}, beyond the latest event (version {n})"),
                ));
            } else {
                out.recheck = true; // events appended since the history was read
            }
        }
        Some(Ok((version, _))) => {
            match at_row {
                Some(Err(diff)) => out.findings.push(Finding::new(
                    order_id,
                    Some(version),
                    Property::ReadModel,
                    format!("the read model's row is not the fold of the events: {diff}"),
                )),
                Some(Ok(())) => {}
                // The fold stopped before the row's version: already reported.
                None if folded < version => {}
                None => out.findings.push(Finding::new(
                    order_id,
                    Some(version),
                    Property::ReadModel,
                    format!("the read model is at version {version}, which no event has"),
                )),
            }
            if version < settled {
                if exact || last_try {
                    out.findings.push(Finding::new(
                        order_id,
                        Some(settled),
                        Property::ReadModelBehind,
                        format!("the read model is at version {version}, though version {settled} was projected"),
                    ));
                } else {
                    out.recheck = true;
                }
            } else {
                out.pending = n - version;
            }
        }
    }
    out
}

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
                f.human()
            };
            self.progress.println(&line);
        }
    }
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let AuditAction::Verify(args) = args.action;
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

#[cfg(test)]
mod tests {
    //! The verdicts of [`check_order`] on histories built with the real `record` and
    //! serialized as the event store writes them, then damaged one way at a time.

    use chrono::{TimeZone, Utc};
    use events_schema::{
        Command, Description, EventContext, Metadata, PlaceOrder, Reason, Recorded, decide, record,
    };

    use super::*;

    fn history(order_id: &str) -> Vec<Recorded> {
        let id = OrderId::parse(order_id).unwrap();
        let commands = [
            Command::Place(PlaceOrder {
                description: Description::parse("Mantenimiento básico").unwrap(),
                register_date: Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap(),
                delivery_date: None,
                customer_id: None,
            }),
            Command::Start,
            Command::Cancel {
                reason: Reason::parse("Motivo X").unwrap(),
            },
        ];
        let mut out: Vec<Recorded> = Vec::new();
        for (i, command) in commands.into_iter().enumerate() {
            let head = out.last().map(|r| (&r.order, &r.envelope.hash));
            let events = decide(&id, head.map(|(o, _)| o), &command).unwrap();
            let ctx = EventContext {
                occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 8, i as u32, 0).unwrap(),
                metadata: Metadata {
                    correlation_id: format!("c-{i}"),
                    ..Metadata::default()
                },
            };
            out.extend(record(&id, head, events, &ctx, uuid::Uuid::now_v7).unwrap());
        }
        out
    }

    fn stored(recorded: &[Recorded]) -> Vec<RawEvent> {
        recorded
            .iter()
            .enumerate()
            .map(|(i, r)| RawEvent {
                order_id: r.envelope.order_id.to_string(),
                version: r.envelope.version,
                envelope: serde_json::to_string(&r.envelope).unwrap(),
                order_state: serde_json::to_string(&r.order).unwrap(),
                position: Some(i as u64 + 1),
            })
            .collect()
    }

    fn row(order: &Order) -> ProjectedOrder {
        ProjectedOrder {
            order_id: order.order_id.to_string(),
            body: serde_json::to_string(order).unwrap(),
        }
    }

    fn properties(c: &Checked) -> Vec<(Option<u64>, Property)> {
        c.findings.iter().map(|f| (f.version, f.property)).collect()
    }

    const ALL: Projected = Projected::Through(u64::MAX);

    #[test]
    fn an_intact_history_with_its_read_model_row_is_clean() {
        let h = history("ORD-1");
        let c = check_order("ORD-1", &stored(&h), Some(&row(&h[2].order)), ALL, false);
        assert_eq!(c, Checked::default());
    }

    #[test]
    fn every_single_byte_change_in_an_events_data_is_detected_at_its_version() {
        let h = history("ORD-1");
        let clean = stored(&h);
        let text = &clean[0].envelope;
        let data_at = text.find("\"data\":").unwrap();
        let data_end = data_at + text[data_at..].find('}').unwrap();
        for at in data_at..data_end {
            let mut damaged = clean.clone();
            let mut bytes = damaged[0].envelope.clone().into_bytes();
            bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
            let Ok(s) = String::from_utf8(bytes) else {
                continue;
            };
            damaged[0].envelope = s;
            let c = check_order("ORD-1", &damaged, Some(&row(&h[2].order)), ALL, false);
            assert!(
                c.findings.iter().any(|f| f.version == Some(1)),
                "byte {at} changed and nothing found: {:?}",
                c.findings
            );
        }
    }

    #[test]
    fn a_changed_description_is_a_hash_break_a_wrong_snapshot_and_a_wrong_read_model() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[0].envelope = s[0].envelope.replace("Mantenimiento", "Mantenimiente");
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        let props = properties(&c);
        assert!(props.contains(&(Some(1), Property::Hash)), "{props:?}");
        assert!(
            props.contains(&(Some(1), Property::StateSnapshot)),
            "{props:?}"
        );
        assert!(props.contains(&(Some(3), Property::ReadModel)), "{props:?}");
    }

    #[test]
    fn a_removed_event_is_a_version_gap_and_a_broken_link() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s.remove(1);
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        let props = properties(&c);
        assert!(
            props.contains(&(Some(3), Property::VersionGap)),
            "{props:?}"
        );
        assert!(props.contains(&(Some(3), Property::PrevHash)), "{props:?}");
    }

    #[test]
    fn a_changed_state_snapshot_alone_is_named() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[1].order_state = s[1].order_state.replace("inprocess", "completed");
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        assert_eq!(properties(&c), vec![(Some(2), Property::StateSnapshot)]);
        assert!(c.findings[0].detail.contains("status"), "{:?}", c.findings);
    }

    #[test]
    fn an_event_under_another_key_is_named() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[2].version = 4;
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        assert!(
            properties(&c).contains(&(Some(4), Property::Key)),
            "{:?}",
            c.findings
        );
    }

    #[test]
    fn a_read_model_row_that_differs_at_its_version_is_named_with_the_field() {
        let h = history("ORD-1");
        let mut wrong = h[2].order.clone();
        wrong.description = Description::parse("something else").unwrap();
        let c = check_order("ORD-1", &stored(&h), Some(&row(&wrong)), ALL, false);
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModel)]);
        assert!(
            c.findings[0].detail.contains("description"),
            "{:?}",
            c.findings
        );
    }

    #[test]
    fn an_unreadable_read_model_row_is_named() {
        let h = history("ORD-1");
        let bad = ProjectedOrder {
            order_id: "ORD-1".into(),
            body: "{\"orderId\":".into(),
        };
        let c = check_order("ORD-1", &stored(&h), Some(&bad), ALL, false);
        assert_eq!(properties(&c), vec![(None, Property::ReadModel)]);
    }

    #[test]
    fn a_read_model_behind_unprojected_events_is_pending_not_a_problem() {
        let h = history("ORD-1");
        // Projected through position 1: versions 2 and 3 are not applied yet.
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Through(1),
            false,
        );
        assert_eq!(c.findings, vec![]);
        assert_eq!(c.pending, 2);
        let c = check_order("ORD-1", &stored(&h), None, Projected::Through(0), false);
        assert_eq!((c.findings.len(), c.pending), (0, 3));
    }

    #[test]
    fn a_read_model_behind_projected_events_is_a_problem() {
        let h = history("ORD-1");
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Through(3),
            false,
        );
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModelBehind)]);
        let c = check_order("ORD-1", &stored(&h), None, Projected::Through(2), false);
        assert_eq!(properties(&c), vec![(Some(2), Property::ReadModelMissing)]);
    }

    #[test]
    fn without_a_projector_position_a_lagging_row_is_read_again_before_it_counts() {
        let h = history("ORD-1");
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Unknown,
            false,
        );
        assert!(c.recheck && c.findings.is_empty());
        let c = check_order(
            "ORD-1",
            &stored(&h),
            Some(&row(&h[0].order)),
            Projected::Unknown,
            true,
        );
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModelBehind)]);
    }

    #[test]
    fn a_row_newer_than_the_history_read_is_read_again_and_a_row_without_events_is_an_orphan() {
        let h = history("ORD-1");
        let c = check_order(
            "ORD-1",
            &stored(&h[..2]),
            Some(&row(&h[2].order)),
            ALL,
            false,
        );
        assert!(c.recheck && c.findings.is_empty());
        let c = check_order("ORD-1", &[], Some(&row(&h[2].order)), ALL, false);
        assert!(c.recheck);
        let c = check_order("ORD-1", &[], Some(&row(&h[2].order)), ALL, true);
        assert_eq!(properties(&c), vec![(Some(3), Property::ReadModelOrphan)]);
    }

    #[test]
    fn a_member_the_typed_parse_would_ignore_is_still_a_hash_break() {
        let h = history("ORD-1");
        let mut s = stored(&h);
        s[1].envelope = s[1]
            .envelope
            .replacen("\"hash\":", "\"extra\":1,\"hash\":", 1);
        assert!(serde_json::from_str::<Envelope>(&s[1].envelope).is_ok());
        let c = check_order("ORD-1", &s, Some(&row(&h[2].order)), ALL, false);
        assert_eq!(properties(&c), vec![(Some(2), Property::Hash)]);
    }

    #[test]
    fn members_split_compact_objects_and_nothing_else() {
        let m = members(br#"{"a":"x\"}","b":{"c":[1,{"d":2}]},"e":3,"f":true}"#).unwrap();
        let m: Vec<(&str, &str)> = m
            .iter()
            .map(|(k, v)| {
                (
                    std::str::from_utf8(k).unwrap(),
                    std::str::from_utf8(v).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            m,
            vec![
                ("a", r#""x\"}""#),
                ("b", r#"{"c":[1,{"d":2}]}"#),
                ("e", "3"),
                ("f", "true")
            ]
        );
        assert_eq!(members(b"{}").map(|m| m.len()), Some(0));
        for not_compact in [
            &b"{ \"a\":1}"[..],
            b"{\"a\" :1}",
            b"{\"a\":1} ",
            b"{\"a\":1,}",
            b"{\"a\":}",
            b"[1]",
            b"{\"a\":1",
        ] {
            assert!(
                members(not_compact).is_none(),
                "{}",
                String::from_utf8_lossy(not_compact)
            );
        }
    }

    #[test]
    fn a_stored_envelope_must_have_the_canonical_members_plus_one_hash() {
        let canonical = br#"{"a":1,"b":"x"}"#;
        let hash = format!("\"{}\"", "0".repeat(64));
        let ok = format!(r#"{{"b":"x","a":1,"hash":{hash}}}"#);
        assert!(is_canonical_with_hash(ok.as_bytes(), canonical));
        for bad in [
            format!(r#"{{"b":"x","a":2,"hash":{hash}}}"#),
            format!(r#"{{"b":"x","hash":{hash}}}"#),
            format!(r#"{{"b":"x","b":"x","hash":{hash}}}"#),
            format!(r#"{{"b":"x","a":1,"hash":{hash},"hash":{hash}}}"#),
            r#"{"b":"x","a":1,"hash":"short"}"#.to_owned(),
            format!(r#"{{"b":"x","a":1,"c":0,"hash":{hash}}}"#),
        ] {
            assert!(!is_canonical_with_hash(bad.as_bytes(), canonical), "{bad}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_verify_chain_on_intact_and_reformatted_histories() {
        let h = history("ORD-1");
        let s = stored(&h);
        assert!(fast_chain("ORD-1", &s).is_some());
        assert!(verify_chain(s.iter().map(|e| e.envelope.as_str())).is_empty());
        // Same values, other formatting: the fast path defers, verify_chain accepts it.
        let mut pretty = s.clone();
        pretty[0].envelope = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&s[0].envelope).unwrap(),
        )
        .unwrap();
        assert!(fast_chain("ORD-1", &pretty).is_none());
        let c = check_order("ORD-1", &pretty, Some(&row(&h[2].order)), ALL, false);
        assert_eq!(c, Checked::default());
    }
}
