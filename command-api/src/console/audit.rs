//! Audit (`/console/audit`): `audit verify` for one order or all, run by the same driver
//! as `orders audit verify` ([`backend::audit::Verifier`]), the result shown on the page.

use std::time::{Duration, Instant};

use axum::{body::Bytes, extract::State, response::Response};
use backend::audit::{AuditError, Totals};
use events_schema::{OrderId, audit::Finding};
use maud::{Markup, html};

use super::{
    layout::{self, Section},
    live::Snapshot,
};
use crate::App;

/// How long a read model row behind its events may take to catch up (the CLI's
/// `--settle` default).
const SETTLE: Duration = Duration::from_secs(10);
/// Events per page of histories when verifying everything from the page: smaller than the
/// CLI's, so that one run holds less in memory beside the server.
const PAGE_EVENTS: usize = 2_000;
/// Problems listed on the page; the count says how many more there were.
const SHOWN_PROBLEMS: usize = 200;

pub(super) async fn page(State(app): State<App>) -> Response {
    let token = Snapshot::current(&app).await.token();
    let available = app.console.audit.is_some();
    layout::ok(layout::page(
        "Audit",
        Section::Audit,
        &token,
        html! {
            h1 { "Audit" }
            p { "Checks each order's stored history as an outside auditor would: versions without gaps, the hash chain, the state stored with each event, and the read model against the fold of the events. The same check as " code { "orders audit verify" } "." }
            p.note { "Verifying all orders reads the whole store: on a large one the request may reach the server's time limit; " code { "orders audit verify" } " runs the same check without one." }
            @if available {
                form.search method="post" action="/console/audit" hx-post="/console/audit" hx-disabled-elt="find button" hx-target="#audit-result" hx-swap="innerHTML" {
                    div {
                        label for="audit-order" { "Order id" }
                        input #audit-order type="text" name="order" autocomplete="off";
                    }
                    button type="submit" name="scope" value="order" { "Verify order" }
                    button.secondary type="submit" name="scope" value="all" { "Verify all" }
                }
            } @else {
                p.note { "Not available here: this process has no access to the event archive (in AWS, run " code { "orders audit verify --backend aws" } ")." }
            }
            div #audit-result { }
        },
    ))
}

/// `POST /console/audit`: `scope=order&order=ID` or `scope=all`.
pub(super) async fn verify(State(app): State<App>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    };
    let Some(verifier) = app.console.audit.clone() else {
        return layout::ok(
            html! { p.alert role="alert" { "The audit is not available in this process." } },
        );
    };
    let Ok(_slot) = app.console.audit_slot.try_acquire() else {
        return layout::ok(html! {
            p.alert role="alert" { "An audit is already running in this server; try again when it has finished." }
        });
    };
    let started = Instant::now();
    let mut findings: Vec<Finding> = Vec::new();
    let (what, result) = if get("scope") == "all" {
        (
            "all orders".to_owned(),
            verifier
                .verify_all(SETTLE, PAGE_EVENTS, &mut findings)
                .await,
        )
    } else {
        let raw = get("order");
        if raw.is_empty() {
            return layout::ok(
                html! { p.alert role="alert" { "Enter an order id to verify one order, or verify all." } },
            );
        }
        let id = match OrderId::parse(raw) {
            Ok(id) => id,
            Err(e) => {
                return layout::ok(
                    html! { p.alert role="alert" { (raw) " is not an order id: " (e.to_string()) } },
                );
            }
        };
        (
            format!("order {id}"),
            verifier.verify_order(&id, SETTLE, &mut findings).await,
        )
    };
    layout::ok(outcome(&what, result, &findings, started.elapsed()))
}

fn outcome(
    what: &str,
    result: Result<Totals, AuditError>,
    findings: &[Finding],
    took: Duration,
) -> Markup {
    html! {
        @match result {
            Ok(t) if t.problems == 0 => div.done role="status" {
                p { "OK: " (t.orders) " order" @if t.orders != 1 { "s" } ", " (t.events) " event" @if t.events != 1 { "s" } " checked; no problems (" (what) ", " (format!("{:.1}", took.as_secs_f64())) " s)." }
                @if t.pending_events > 0 { p { (t.pending_events) " event(s) not yet projected (not a problem)." } }
            },
            Ok(t) => div.alert role="status" {
                p { (t.problems) " problem(s) in " (t.orders_with_problems) " order(s); " (t.orders) " order(s), " (t.events) " event(s) checked (" (what) ")." }
                ul {
                    @for f in findings.iter().take(SHOWN_PROBLEMS) { li { (f.to_string()) } }
                }
                @if findings.len() > SHOWN_PROBLEMS {
                    p { "… and " (findings.len() - SHOWN_PROBLEMS) " more: run " code { "orders audit verify" } " for the full list." }
                }
            },
            Err(e) => div.alert role="status" { p { "The audit of " (what) " could not run: " (e.to_string()) } },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_audit_says_ok_with_its_counts_and_problems_are_listed_one_per_line() {
        let clean = Totals {
            orders: 12,
            events: 40,
            ..Totals::default()
        };
        let out = outcome("all orders", Ok(clean), &[], Duration::from_millis(5)).into_string();
        assert!(out.contains("OK: 12 orders, 40 events checked"), "{out}");
        assert!(out.contains(r#"role="status""#), "{out}");
        let bad = Totals {
            orders: 2,
            events: 3,
            problems: 1,
            orders_with_problems: 1,
            ..Totals::default()
        };
        let unknown = outcome(
            "order X",
            Err(AuditError::UnknownOrder("X".into())),
            &[],
            Duration::ZERO,
        )
        .into_string();
        assert!(
            unknown.contains("has no events and no read model row"),
            "{unknown}"
        );
        let out = outcome("all orders", Ok(bad), &[], Duration::ZERO).into_string();
        assert!(out.contains("1 problem(s) in 1 order(s)"), "{out}");
    }
}
