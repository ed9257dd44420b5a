//! `audit verify`'s driver, shared by the CLI (`orders audit verify`) and the operator
//! console: every order's stored history checked end to end by the verdicts of
//! [`events_schema::audit`], over the [`EventArchive`] and [`ProjectionScan`] ports.
//!
//! Histories are read in pages of whole histories and checked on the blocking pool while
//! the next page is read, each against the read model rows of its orders. Where a page
//! covers a range of order ids (embedded), rows in the range without events are found with
//! it; where it covers only its own orders (AWS), a pass over the whole read model at the
//! end finds the rows of orders no page had. The read model lags the events by design:
//! where the backend cannot say how far the projector got ([`Projected::Unknown`]), a row
//! behind the events is re-read until `settle` runs out.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use events_schema::{
    OrderId,
    audit::{Checked, Finding, check_order},
};

use crate::ports::{
    Coverage, EventArchive, HistoryCursor, Projected, ProjectedOrder, ProjectionScan, RawHistory,
    StoreError,
};

/// Events per page of histories.
pub const PAGE_EVENTS: usize = 20_000;
/// Read model rows per page of the pass that finds rows without events.
const ROWS_PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A page's check panicked or was cancelled on the blocking pool.
    #[error("checking a page of histories failed: {0}")]
    Worker(String),
    #[error("order {0} has no events and no read model row")]
    UnknownOrder(String),
}

/// Where a run's problems and progress go as they are found (the CLI prints them; the
/// console collects them).
pub trait AuditSink: Send {
    fn findings(&mut self, findings: Vec<Finding>);
    /// `events` more events were checked.
    fn progress(&mut self, _events: u64) {}
}

/// Collects every finding.
impl AuditSink for Vec<Finding> {
    fn findings(&mut self, findings: Vec<Finding>) {
        self.extend(findings);
    }
}

/// Totals of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub orders: u64,
    pub events: u64,
    pub problems: u64,
    pub orders_with_problems: u64,
    /// Events the projector had not applied yet (not problems).
    pub pending_events: u64,
}

/// Counts findings into the totals on their way to the sink (findings come grouped by
/// order).
struct Tally<'a> {
    totals: Totals,
    last_order_with_problem: Option<String>,
    sink: &'a mut dyn AuditSink,
}

impl Tally<'_> {
    fn add(&mut self, findings: Vec<Finding>) {
        for f in &findings {
            self.totals.problems += 1;
            if self.last_order_with_problem.as_deref() != Some(f.order_id.as_str()) {
                self.totals.orders_with_problems += 1;
                self.last_order_with_problem = Some(f.order_id.clone());
            }
        }
        if !findings.is_empty() {
            self.sink.findings(findings);
        }
    }
}

/// The audit over one backend's data.
#[derive(Clone)]
pub struct Verifier {
    pub archive: Arc<dyn EventArchive>,
    pub projection: Arc<dyn ProjectionScan>,
}

impl Verifier {
    /// One order: its chain, its stored states and its read model row.
    pub async fn verify_order(
        &self,
        order_id: &OrderId,
        settle: Duration,
        sink: &mut dyn AuditSink,
    ) -> Result<Totals, AuditError> {
        let events = self.archive.history_raw(order_id).await?;
        if events.is_empty()
            && self
                .projection
                .get_projected(order_id.as_str())
                .await?
                .is_none()
        {
            return Err(AuditError::UnknownOrder(order_id.to_string()));
        }
        let mut tally = Tally {
            totals: Totals {
                orders: 1,
                events: events.len() as u64,
                ..Totals::default()
            },
            last_order_with_problem: None,
            sink,
        };
        let checked = self.recheck_order(order_id.as_str(), settle).await?;
        tally.totals.pending_events += checked.pending;
        tally.add(checked.findings);
        Ok(tally.totals)
    }

    /// Every order, `page_events` events at a time.
    pub async fn verify_all(
        &self,
        settle: Duration,
        page_events: usize,
        sink: &mut dyn AuditSink,
    ) -> Result<Totals, AuditError> {
        let mut tally = Tally {
            totals: Totals::default(),
            last_order_with_problem: None,
            sink,
        };
        let recheck = self.scan_all(page_events, &mut tally).await?;
        for order_id in recheck {
            let checked = self.recheck_order(&order_id, settle).await?;
            tally.totals.pending_events += checked.pending;
            tally.add(checked.findings);
        }
        Ok(tally.totals)
    }

    /// Every order, page by page, checked on the blocking pool while the next page is
    /// read. Returns the orders to read again.
    async fn scan_all(
        &self,
        page_events: usize,
        tally: &mut Tally<'_>,
    ) -> Result<Vec<String>, AuditError> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut inflight: VecDeque<tokio::task::JoinHandle<PageResult>> = VecDeque::new();
        let mut recheck = Vec::new();
        let mut cursor: Option<HistoryCursor> = None;
        // The orders of pages that covered only themselves: a row of any other order is
        // found by the pass over the read model at the end.
        let mut seen: Option<HashSet<String>> = None;
        let mut absorb = |r: PageResult, tally: &mut Tally<'_>| {
            tally.totals.orders += r.orders;
            tally.totals.events += r.events;
            tally.totals.pending_events += r.pending;
            tally.sink.progress(r.events);
            tally.add(r.findings);
            recheck.extend(r.recheck);
        };
        let joined = |r: Result<PageResult, tokio::task::JoinError>| {
            r.map_err(|e| AuditError::Worker(e.to_string()))
        };
        loop {
            let page = self.archive.histories(cursor.as_ref(), page_events).await?;
            // The projector's progress first, then its rows: see `check_order`.
            let mark = self.projection.projected().await?;
            // Even an empty page of this kind calls for the pass (an empty table's only page).
            if page.coverage == Coverage::Orders {
                seen.get_or_insert_default()
                    .extend(page.histories.iter().map(|h| h.order_id.clone()));
            }
            let rows = self.projection.rows_for(&page).await?;
            let next = page.next;
            let histories = page.histories;
            inflight.push_back(tokio::task::spawn_blocking(move || {
                check_page(histories, rows, mark)
            }));
            while inflight.len() >= workers {
                if let Some(done) = inflight.pop_front() {
                    absorb(joined(done.await)?, tally);
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for done in inflight {
            absorb(joined(done.await)?, tally);
        }
        if let Some(seen) = seen {
            let mut cursor = None;
            loop {
                let page = self.projection.rows(cursor.as_ref(), ROWS_PAGE).await?;
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

    /// Reads one order again: the projector's progress, then its row, then its history, so
    /// that the row can only be behind events the projector had not applied. Where the
    /// backend cannot say how far the projector got, reads again until `settle` runs out.
    async fn recheck_order(&self, order_id: &str, settle: Duration) -> Result<Checked, AuditError> {
        let deadline = Instant::now() + settle;
        let id = OrderId::parse(order_id).ok();
        loop {
            let mark = self.projection.projected().await?;
            let row = self.projection.get_projected(order_id).await?;
            let events = match &id {
                Some(id) => self.archive.history_raw(id).await?,
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
