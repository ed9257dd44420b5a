//! One order (`/console/orders/{id}`): its current state from the event store, the event
//! timeline with the hash chain checked link by link, the state at any version (the same
//! reads as `GET /orders/{id}?version=`), its documents, and the actions its status allows,
//! sent through the API's write path with `If-Match` of the version the page shows.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri},
    response::Response,
};
use backend::StoreError;
use chrono::{DateTime, NaiveDateTime, Utc};
use events_schema::{ChainBreak, Command, Envelope, Order, OrderId, Status, verify_chain};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::{
    from_htmx,
    layout::{self, Section},
    live::Snapshot,
};
use crate::{
    App,
    problem::ApiError,
    request,
    routes::{WriteContext, write},
};

/// Events read per page (an order has at most `MAX_EVENTS_PER_ORDER`).
const EVENTS_PAGE: usize = 100;

/// What the page shows of one order.
struct Shown {
    order: Order,
    events: Vec<Envelope>,
}

async fn read(app: &App, id: &OrderId) -> Result<Option<Shown>, StoreError> {
    let Some(head) = app.commands.events.head(id).await? else {
        return Ok(None);
    };
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = app.commands.events.events(id, after, EVENTS_PAGE).await?;
        events.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(Some(Shown {
        order: head.order,
        events,
    }))
}

/// Whether each event links to the one before it: its `prevHash` is the previous event's
/// `hash` (64 zeros for the first), and its `hash` is that of its own content. Judged by
/// the audit's own check ([`events_schema::verify_chain`]), each break shown on the event it
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    Linked,
    Broken(String),
}

fn chain(events: &[Envelope]) -> Vec<Link> {
    let raw: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    let mut links = vec![Link::Linked; events.len()];
    for broken in verify_chain(raw.iter().map(String::as_str)) {
        let index = match &broken {
            ChainBreak::HashMismatch { version, .. }
            | ChainBreak::PrevHashMismatch { version, .. } => {
                events.iter().position(|e| e.version == *version)
            }
            ChainBreak::VersionGap { found, .. } => events.iter().position(|e| e.version == *found),
            ChainBreak::Unreadable { index, .. } => index.checked_sub(1),
        };
        if let Some(link) = index.and_then(|i| links.get_mut(i)) {
            *link = match std::mem::replace(link, Link::Linked) {
                Link::Linked => Link::Broken(broken.to_string()),
                Link::Broken(before) => Link::Broken(format!("{before}; {broken}")),
            };
        }
    }
    links
}

fn order_id(raw: &str) -> Result<OrderId, String> {
    OrderId::parse(raw).map_err(|e| format!("{raw:?} is not an order id: {e}"))
}

fn not_found(message: &str) -> Response {
    layout::html(
        StatusCode::NOT_FOUND,
        layout::page(
            "Not found",
            Section::Orders,
            "",
            html! {
                h1 { "Not found" }
                p.alert role="alert" { (message) }
                p { a href="/console/orders" { "Back to the orders" } }
            },
        ),
    )
}

pub(super) async fn page(State(app): State<App>, Path(raw): Path<String>, uri: Uri) -> Response {
    let id = match order_id(&raw) {
        Ok(id) => id,
        Err(e) => return not_found(&e),
    };
    let shown = match read(&app, &id).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(&format!("No order has the id {id}.")),
        Err(e) => return layout::ok(layout::unavailable("the order", &e)),
    };
    // Without JavaScript, the time travel forms ask for ?version=N or ?at=TIME.
    full_page(&app, &shown, AsOf::parse(&uri), None).await
}

/// Which past state the time travel shows: the one stored with a version, or with the
/// latest event at or before a time (`GET /orders/{id}?version=` and `?at=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AsOf {
    Version(u64),
    At(DateTime<Utc>),
}

impl AsOf {
    /// `?version=N`, or `?at=` as RFC 3339 or as a `datetime-local` field sends it
    /// (`2026-01-31T08:00[:00]`, read as UTC, as the page shows times).
    fn parse(uri: &Uri) -> Option<Self> {
        let pairs: Vec<(String, String)> = uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| v.trim())
        };
        if let Some(at) = get("at") {
            let parsed = DateTime::parse_from_rfc3339(at)
                .map(|t| t.to_utc())
                .ok()
                .or_else(|| {
                    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
                        .iter()
                        .find_map(|f| NaiveDateTime::parse_from_str(at, f).ok())
                        .map(|t| t.and_utc())
                });
            return parsed.map(AsOf::At);
        }
        get("version")
            .and_then(|v| v.parse().ok())
            .map(AsOf::Version)
    }
}

async fn full_page(app: &App, shown: &Shown, past: Option<AsOf>, note: Option<Markup>) -> Response {
    let id = &shown.order.order_id;
    let (as_of, version) = match past {
        Some(p) => as_of(app, id, p).await,
        None => (
            as_of_markup(AsOf::Version(shown.order.version), Some(&shown.order)),
            None,
        ),
    };
    let docs = documents_markup(app, id).await;
    let token = Snapshot::current(app).await.token();
    let main = html! {
        h1 { "Order " (id) }
        (live_part(shown, version, as_of, note))
        (docs)
    };
    layout::ok(layout::page(
        &format!("Order {id}"),
        Section::Orders,
        &token,
        main,
    ))
}

/// The part an action replaces: state, actions, timeline and time travel (`as_of`: the
/// state at the slider's `version`, the latest when `None`).
fn live_part(shown: &Shown, version: Option<u64>, as_of: Markup, note: Option<Markup>) -> Markup {
    let o = &shown.order;
    let id = &o.order_id;
    let links = chain(&shown.events);
    html! {
        div #order-live {
            section aria-labelledby="state-h" {
                h2 #state-h { "Current state" }
                dl.state {
                    div { dt { "Status" } dd { (layout::status(o.status)) } }
                    div { dt { "Version" } dd { (o.version) } }
                    div { dt { "Description" } dd { (o.description.as_str()) } }
                    div { dt { "Register date" } dd { (layout::time(o.register_date)) } }
                    @if let Some(d) = &o.delivery_date { div { dt { "Delivery date" } dd { (d.as_str()) } } }
                    @if let Some(c) = &o.customer_id { div { dt { "Customer" } dd { (c.as_str()) } } }
                    @if let Some(r) = &o.reason_for_cancellation { div { dt { "Reason for cancellation" } dd { (r.as_str()) } } }
                    div { dt { "Created" } dd { (layout::time(o.created_at)) } }
                    div { dt { "Updated" } dd { (layout::time(o.updated_at)) } }
                }
            }
            section aria-labelledby="actions-h" {
                h2 #actions-h { "Actions" }
                (actions(o))
                div #action-result { @if let Some(n) = note { (n) } }
            }
            section aria-labelledby="events-h" {
                h2 #events-h { "Events" }
                div.scroll {
                    table {
                        thead {
                            tr {
                                th.num scope="col" { "Version" }
                                th scope="col" { "Type" }
                                th scope="col" { "Time" }
                                th scope="col" { "Channel" }
                                th scope="col" { "Actor" }
                                th scope="col" { "Correlation id" }
                                th scope="col" { "Hash" }
                                th scope="col" { "Previous hash" }
                                th scope="col" { "Chain" }
                            }
                        }
                        tbody {
                            @for (e, link) in shown.events.iter().zip(&links) {
                                tr class=[matches!(link, Link::Broken(_)).then_some("broken-row")] {
                                    td.num { (e.version) }
                                    td { (e.event.type_name()) }
                                    td { (layout::time(e.occurred_at)) }
                                    // Where the command came in: an intake channel, or the
                                    // HTTP API (no channel recorded).
                                    td { (e.metadata.channel.as_deref().unwrap_or("HTTP API")) }
                                    td { (e.metadata.actor.as_deref().unwrap_or("—")) }
                                    td { code { (e.metadata.correlation_id) } }
                                    td { code.hash { (e.hash) } }
                                    td { code.hash { (e.prev_hash) } }
                                    td {
                                        @match link {
                                            Link::Linked => span.linked { "✓ linked" },
                                            Link::Broken(why) => {
                                                span.broken { "✗ broken link" }
                                                br;
                                                span.note { (why) }
                                            },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="travel-h" {
                h2 #travel-h { "Time travel" }
                form method="get" action={ "/console/orders/" (id) } {
                    label for="version" { "Version" }
                    input #version type="range" name="version" min="1" max=(o.version)
                        value=(version.unwrap_or(o.version).clamp(1, o.version)) step="1"
                        hx-get={ "/console/orders/" (id) "/at" } hx-trigger="input changed delay:100ms, change"
                        hx-target="#as-of" hx-swap="innerHTML";
                    " "
                    button.secondary type="submit" { "Show version" }
                }
                form method="get" action={ "/console/orders/" (id) } {
                    label for="at" { "Time (UTC)" }
                    input #at type="datetime-local" name="at" step="1"
                        value=(local_input(o.updated_at))
                        hx-get={ "/console/orders/" (id) "/at" } hx-trigger="change"
                        hx-target="#as-of" hx-swap="innerHTML";
                    " "
                    button.secondary type="submit" { "Show time" }
                }
                div #as-of aria-live="polite" { (as_of) }
            }
        }
    }
}

/// The buttons the order's current status allows, each posting the version shown.
fn actions(o: &Order) -> Markup {
    let id = &o.order_id;
    let allowed = |s: Status| o.status.can_move_to(s);
    html! {
        @if o.status.is_terminal() {
            p.note { "No actions: the order is " (o.status.as_str()) "." }
        } @else {
            div.actions {
                @if allowed(Status::Inprocess) {
                    (action_form(id, "start", o.version, html! { button type="submit" { "Start" } }))
                }
                @if allowed(Status::Completed) {
                    (action_form(id, "complete", o.version, html! { button type="submit" { "Complete" } }))
                }
                @if allowed(Status::Canceled) {
                    (action_form(id, "cancel", o.version, html! {
                        div {
                            label for="reason" { "Reason" }
                            input #reason type="text" name="reason" maxlength="2000" autocomplete="off";
                        }
                        button.danger type="submit" { "Cancel" }
                    }))
                }
            }
        }
    }
}

fn action_form(id: &OrderId, action: &str, version: u64, inner: Markup) -> Markup {
    let url = format!("/console/orders/{id}/{action}");
    html! {
        form method="post" action=(url) hx-post=(url) hx-disabled-elt="find button" hx-target="#order-live" hx-swap="outerHTML" {
            input type="hidden" name="version" value=(version);
            (inner)
        }
    }
}

/// A `datetime-local` field's value for `t` (UTC, to the second, rounded up so that the
/// state at that time includes the event at `t`).
fn local_input(t: DateTime<Utc>) -> String {
    let up = if t.timestamp_subsec_nanos() > 0 {
        t + chrono::Duration::seconds(1)
    } else {
        t
    };
    up.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `GET /console/orders/{id}/at?version=N` or `?at=TIME`: the state then.
pub(super) async fn at_version(
    State(app): State<App>,
    Path(raw): Path<String>,
    uri: Uri,
) -> Response {
    let id = match order_id(&raw) {
        Ok(id) => id,
        Err(e) => return not_found(&e),
    };
    let past = AsOf::parse(&uri).unwrap_or(AsOf::Version(1));
    layout::ok(as_of(&app, &id, past).await.0)
}

/// The state at `past` and the version it is the state of (for the slider).
async fn as_of(app: &App, id: &OrderId, past: AsOf) -> (Markup, Option<u64>) {
    let events = &app.commands.events;
    let found = match past {
        AsOf::Version(v) => events.at_version(id, v).await,
        AsOf::At(t) => events.at_time(id, t).await,
    };
    match found {
        Ok(found) => {
            let version = found.as_ref().map(|o| o.version);
            (as_of_markup(past, found.as_ref()), version)
        }
        Err(e) => (layout::unavailable("that state", &e), None),
    }
}

fn as_of_markup(past: AsOf, order: Option<&Order>) -> Markup {
    html! {
        @match (order, past) {
            (Some(o), AsOf::Version(version)) => {
                p { "State at version " (version) ": " (o.status.as_str()) }
                (past_state(o))
            },
            (Some(o), AsOf::At(t)) => {
                p { "State at " (layout::time(t)) ": version " (o.version) ", " (o.status.as_str()) }
                (past_state(o))
            },
            (None, AsOf::Version(version)) => p.note { "The order has no version " (version) "." },
            (None, AsOf::At(t)) => p.note { "The order did not exist yet at " (layout::time(t)) "." },
        }
    }
}

fn past_state(o: &Order) -> Markup {
    html! {
        dl.state {
            div { dt { "Description" } dd { (o.description.as_str()) } }
            div { dt { "Updated" } dd { (layout::time(o.updated_at)) } }
            @if let Some(r) = &o.reason_for_cancellation { div { dt { "Reason for cancellation" } dd { (r.as_str()) } } }
        }
    }
}

async fn documents_markup(app: &App, id: &OrderId) -> Markup {
    let listed = app.documents.list(id).await;
    html! {
        section #documents aria-labelledby="documents-h"
            hx-get={ "/console/orders/" (id) "/documents" } hx-trigger="console:refresh from:body" hx-swap="outerHTML" {
            h2 #documents-h { "Documents" }
            @match listed {
                Ok(docs) if docs.is_empty() => p.note { "No documents yet: the status handlers write them after each event." },
                Ok(docs) => ul {
                    @for d in &docs {
                        li {
                            @if d.name.ends_with(".json") {
                                a href={ "/console/orders/" (id) "/documents/" (d.name) } { (d.name) }
                            } @else {
                                a href={ "/orders/" (id) "/documents/" (d.name) } download=(d.name) { (d.name) }
                            }
                            " " span.note { "(" (d.size) " bytes)" }
                        }
                    }
                },
                Err(e) => (layout::unavailable("the documents", &e)),
            }
        }
    }
}

/// The documents section alone, for the live refresh (documents arrive after the events).
pub(super) async fn documents(State(app): State<App>, Path(raw): Path<String>) -> Response {
    match order_id(&raw) {
        Ok(id) => layout::ok(documents_markup(&app, &id).await),
        Err(e) => not_found(&e),
    }
}

/// A JSON document, formatted, on its own page.
pub(super) async fn document(
    State(app): State<App>,
    Path((raw, name)): Path<(String, String)>,
) -> Response {
    let id = match order_id(&raw) {
        Ok(id) => id,
        Err(e) => return not_found(&e),
    };
    let doc = match app.documents.get(&id, &name).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return not_found(&format!("Order {id} has no document {name:?}.")),
        Err(e) => return layout::ok(layout::unavailable("the document", &e)),
    };
    let text = match serde_json::from_slice::<Value>(&doc.body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&doc.body).into_owned(),
    };
    let token = Snapshot::current(&app).await.token();
    layout::ok(layout::page(
        &name,
        Section::Orders,
        &token,
        html! {
            h1 { (name) }
            p { "A document of order " a href={ "/console/orders/" (id) } { (id) } " (" (doc.content_type) ")." }
            pre { code { (text) } }
            p { a href={ "/orders/" (id) "/documents/" (name) } download=(name) { "Download" } }
        },
    ))
}

/// The form an action posts.
fn form(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `POST /console/orders/{id}/{start|complete|cancel}`: the page's action buttons.
pub(super) async fn action(
    State(app): State<App>,
    Path((raw, action)): Path<(String, String)>,
    ctx: WriteContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let action = match action.as_str() {
        "start" => Act::Start,
        "complete" => Act::Complete,
        "cancel" => Act::Cancel,
        other => return not_found(&format!("There is no action {other:?} on an order.")),
    };
    act(&app, &raw, ctx, &headers, &body, action).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Start,
    Complete,
    Cancel,
}

/// Runs an action through the API's write path and answers with what the page swaps in:
/// on success the new state, actions and timeline; otherwise an inline message (still a
/// 200: a stale page or a missing reason is an expected outcome, not a failed request).
async fn act(
    app: &App,
    raw: &str,
    ctx: WriteContext,
    headers: &HeaderMap,
    body: &[u8],
    action: Act,
) -> Response {
    let id = match order_id(raw) {
        Ok(id) => id,
        Err(e) => return not_found(&e),
    };
    let form = form(body);
    let Some(version) = field(&form, "version").and_then(|v| v.parse::<u64>().ok()) else {
        return message(
            headers,
            &id,
            "The page sent no version; reload it and try again.",
        );
    };
    let (command, json) = match action {
        Act::Start => (request::parse_empty(None, Command::Start), Map::new()),
        Act::Complete => (request::parse_empty(None, Command::Complete), Map::new()),
        Act::Cancel => {
            let reason = field(&form, "reason").unwrap_or("").trim();
            if reason.is_empty() {
                return message(
                    headers,
                    &id,
                    "A reason is required to cancel; nothing was changed.",
                );
            }
            let json = Map::from_iter([(
                "reasonForCancellation".to_owned(),
                Value::String(reason.to_owned()),
            )]);
            (request::parse_cancel(Some(json.clone())), json)
        }
    };
    let command = match command {
        Ok(c) => c,
        Err(e) => return message(headers, &id, &format!("{e}; nothing was changed.")),
    };
    // The same bytes the JSON API would have received, for the write's fingerprint.
    let raw_body = serde_json::to_vec(&json).unwrap_or_default();
    let result = write(
        app,
        &ctx.expecting(version),
        &raw_body,
        &id,
        &command,
        StatusCode::OK,
        None,
    )
    .await;
    match result {
        Ok(_) => {}
        Err(ApiError::PreconditionFailed(_)) => {
            let now = match app.commands.events.head(&id).await {
                Ok(Some(h)) => format!(
                    " (now version {}, {})",
                    h.order.version,
                    h.order.status.as_str()
                ),
                _ => String::new(),
            };
            return message(
                headers,
                &id,
                &format!(
                    "This order changed meanwhile{now}; reload to see it. Nothing was changed."
                ),
            );
        }
        Err(e) => return message(headers, &id, &format!("{e}; nothing was changed.")),
    }
    let shown = match read(app, &id).await {
        Ok(Some(s)) => s,
        Ok(None) => return message(headers, &id, "The order is gone; reload the page."),
        Err(e) => {
            return message(
                headers,
                &id,
                &format!("Done, but the order could not be read back: {e}"),
            );
        }
    };
    let done = html! {
        p.done role="status" {
            (match action { Act::Start => "Started", Act::Complete => "Completed", Act::Cancel => "Canceled" })
            ": the order is now " (shown.order.status.as_str()) " (version " (shown.order.version) ")."
        }
    };
    if from_htmx(headers) {
        let current = as_of_markup(AsOf::Version(shown.order.version), Some(&shown.order));
        layout::ok(live_part(&shown, None, current, Some(done)))
    } else {
        full_page(app, &shown, None, Some(done)).await
    }
}

/// An inline message in place of the action's result, the page left as it was (htmx), or
/// a small page saying it (a form post without JavaScript).
fn message(headers: &HeaderMap, id: &OrderId, text: &str) -> Response {
    let alert = html! { p.alert role="alert" { (text) } };
    if from_htmx(headers) {
        let mut r = layout::ok(alert);
        let h = r.headers_mut();
        h.insert("hx-retarget", HeaderValue::from_static("#action-result"));
        h.insert("hx-reswap", HeaderValue::from_static("innerHTML"));
        r
    } else {
        layout::ok(layout::page(
            "Not done",
            Section::Orders,
            "",
            html! {
                h1 { "Not done" }
                (alert)
                p { a href={ "/console/orders/" (id) } { "Back to order " (id) } }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use events_schema::{
        ChainHash, Description, EventContext, Metadata, PlaceOrder, Recorded, decide, record,
    };

    use super::*;

    /// A placed order taken through `commands`, as recorded.
    fn history(commands: &[Command]) -> Vec<Recorded> {
        let id = OrderId::parse("ORD-T").expect("id");
        let ctx = EventContext {
            occurred_at: Utc::now(),
            metadata: Metadata {
                correlation_id: "c".into(),
                ..Metadata::default()
            },
        };
        let place = Command::Place(PlaceOrder {
            description: Description::parse("a <b>desk</b>").expect("description"),
            register_date: Utc::now(),
            delivery_date: None,
            customer_id: None,
        });
        let mut out: Vec<Recorded> = Vec::new();
        for command in std::iter::once(&place).chain(commands) {
            let last = out.last();
            let state = last.map(|r| (&r.order, &r.envelope.hash));
            let events = decide(&id, last.map(|r| &r.order), command).expect("accepted");
            out.extend(record(&id, state, events, &ctx, uuid::Uuid::now_v7).expect("records"));
        }
        out
    }

    fn shown(commands: &[Command]) -> Shown {
        let h = history(commands);
        Shown {
            order: h.last().expect("events").order.clone(),
            events: h.into_iter().map(|r| r.envelope).collect(),
        }
    }

    #[test]
    fn every_link_of_an_intact_chain_is_linked() {
        let s = shown(&[Command::Start, Command::Complete]);
        assert_eq!(chain(&s.events), vec![Link::Linked; 3]);
    }

    #[test]
    fn the_timeline_says_which_channel_each_command_came_in_through() {
        let mut s = shown(&[Command::Start]);
        s.events[1].metadata.channel = Some("atm".into());
        let out = live_part(&s, None, html! {}, None).into_string();
        assert!(out.contains(r#"<th scope="col">Channel</th>"#), "{out}");
        assert_eq!(out.matches("<td>HTTP API</td>").count(), 1, "{out}");
        assert_eq!(out.matches("<td>atm</td>").count(), 1, "{out}");
    }

    #[test]
    fn a_changed_event_or_a_wrong_prev_hash_is_a_broken_link_and_shown_as_such() {
        let mut s = shown(&[Command::Start, Command::Complete]);
        s.events[1].metadata.correlation_id = "rewritten".into();
        s.events[2].prev_hash = ChainHash::GENESIS;
        let links = chain(&s.events);
        assert_eq!(links[0], Link::Linked);
        assert!(
            matches!(&links[1], Link::Broken(why) if why.contains("does not match the recomputed")),
            "{links:?}"
        );
        assert!(
            matches!(&links[2], Link::Broken(why) if why.contains("prevHash")),
            "{links:?}"
        );
        let out = live_part(&s, None, html! {}, None).into_string();
        assert_eq!(out.matches("✗ broken link").count(), 2, "{out}");
        assert_eq!(out.matches(r#"class="broken-row""#).count(), 2, "{out}");
    }

    #[test]
    fn only_the_actions_the_current_status_allows_are_offered_with_the_shown_version() {
        let received = actions(&shown(&[]).order).into_string();
        assert!(received.contains(">Start</button>") && received.contains(">Cancel</button>"));
        assert!(!received.contains(">Complete</button>"), "{received}");
        assert!(
            received.contains(r#"name="version" value="1""#),
            "{received}"
        );
        assert!(
            received.contains(r#"<label for="reason">Reason</label>"#),
            "{received}"
        );
        let inprocess = actions(&shown(&[Command::Start]).order).into_string();
        assert!(inprocess.contains(">Complete</button>") && inprocess.contains(">Cancel</button>"));
        assert!(!inprocess.contains(">Start</button>"), "{inprocess}");
        assert!(
            inprocess.contains(r#"name="version" value="2""#),
            "{inprocess}"
        );
        let completed = actions(&shown(&[Command::Start, Command::Complete]).order).into_string();
        assert!(!completed.contains("<button"), "{completed}");
    }

    #[test]
    fn time_travel_reads_a_version_or_a_time_from_the_query_the_forms_send() {
        let parse = |q: &str| AsOf::parse(&format!("/x?{q}").parse::<Uri>().expect("uri"));
        assert_eq!(parse("version=2"), Some(AsOf::Version(2)));
        let at = |s: &str| AsOf::At(DateTime::parse_from_rfc3339(s).expect("time").to_utc());
        assert_eq!(
            parse("at=2026-01-31T08:00:05"),
            Some(at("2026-01-31T08:00:05Z"))
        );
        assert_eq!(
            parse("at=2026-01-31T08:00"),
            Some(at("2026-01-31T08:00:00Z"))
        );
        assert_eq!(
            parse("at=2026-01-31T09%3A00%3A00%2B01%3A00&version=3"),
            Some(at("2026-01-31T08:00:00Z")),
            "a time wins over the slider's version"
        );
        assert_eq!(parse("version=&at="), None);
        assert_eq!(parse("at=yesterday"), None);
        let first = history(&[]).remove(0).order;
        let then = as_of_markup(at("2026-01-31T08:00:05Z"), Some(&first)).into_string();
        assert!(then.contains(": version 1, received"), "{then}");
        let before = as_of_markup(at("2026-01-31T08:00:05Z"), None).into_string();
        assert!(before.contains("did not exist yet"), "{before}");
    }

    #[test]
    fn the_page_escapes_what_the_order_holds_and_shows_the_state_at_a_version() {
        let s = shown(&[Command::Start]);
        let out = live_part(
            &s,
            Some(1),
            as_of_markup(AsOf::Version(1), Some(&s.order)),
            None,
        )
        .into_string();
        assert!(out.contains("a &lt;b&gt;desk&lt;/b&gt;"), "{out}");
        assert!(!out.contains("<b>desk"), "{out}");
        assert!(
            out.contains(r#"type="range" name="version" min="1" max="2" value="1""#),
            "{out}"
        );
        let first = history(&[]).remove(0).order;
        let at = as_of_markup(AsOf::Version(1), Some(&first)).into_string();
        assert!(at.contains("State at version 1: received"), "{at}");
    }
}
