//! Dead letters (`/console/dead-letters`): per queue, each message in its dead-letter queue
//! with the order and event it carries, its receive count and last error; redrive one or
//! all back to the queue (`Queues::redrive_message`, `Queues::redrive`).

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};
use backend::QueueMessage;
use maud::{Markup, html};
use serde_json::Value;

use super::{
    layout::{self, Section},
    live::Snapshot,
};
use crate::App;

/// What a dead letter's body says about its order and event: an EventBridge event whose
/// `detail` is the published event (route queues), or an intake command with an
/// `orderId`. Whatever cannot be read is left out; the page never fails on a body.
#[derive(Debug, Default, PartialEq, Eq)]
struct Carried {
    order_id: Option<String>,
    event: Option<String>,
}

fn carried(body: &str) -> Carried {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Carried::default();
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let detail = v.get("detail");
    let event = detail.and_then(|d| d.get("event"));
    let order_id = text(event.and_then(|e| e.get("orderId")))
        .or_else(|| text(detail.and_then(|d| d.pointer("/order/orderId"))))
        .or_else(|| text(v.get("orderId")));
    let event = match event {
        Some(e) => {
            let kind = text(e.get("type")).unwrap_or_else(|| "event".into());
            match (
                text(e.get("eventId")),
                e.get("version").and_then(Value::as_u64),
            ) {
                (Some(id), Some(version)) => Some(format!("{kind} v{version} ({id})")),
                (Some(id), None) => Some(format!("{kind} ({id})")),
                _ => Some(kind),
            }
        }
        // An intake message: the command, from which channel, under which request id.
        None => text(v.get("command")).map(|c| {
            let mut what = format!("intake: {c}");
            if let Some(channel) = text(v.get("channel")) {
                what.push_str(&format!(" from {channel}"));
            }
            if let Some(request) = text(v.get("requestId")) {
                what.push_str(&format!(" (request {request})"));
            }
            what
        }),
    };
    Carried { order_id, event }
}

pub(super) async fn page(State(app): State<App>) -> Response {
    let token = Snapshot::current(&app).await.token();
    let mut sections = Vec::new();
    for name in &app.console.queue_names {
        sections.push(queue_section(&app, name, None).await);
    }
    layout::ok(layout::page(
        "Dead letters",
        Section::DeadLetters,
        &token,
        html! {
            h1 { "Dead letters" }
            p.note { "Messages a handler failed on as many times as the queue allows. Fix the cause, then redrive them to their queue." }
            @for s in &sections { (s) }
        },
    ))
}

async fn queue_section(app: &App, queue: &str, note: Option<Markup>) -> Markup {
    html! {
        section #{ "queue-" (queue) } aria-labelledby={ "h-" (queue) } {
            h2 #{ "h-" (queue) } { (queue) }
            div role="status" { @if let Some(n) = note { (n) } }
            (messages(app, queue).await)
        }
    }
}

/// A queue's dead letters and, when it holds more than one, its "Redrive all" (with one,
/// "Redrive" is the one button of that name on the page: a person, or a script, asking
/// for "Redrive" finds exactly it). It refreshes itself when the page hears of
/// a change, asking with the count it shows: the answer is empty (204, nothing swapped)
/// while the dead-letter queue still holds that many, so that an unrelated change costs a
/// `stats` and not a listing (on SQS a listing is a receive, which counts against each
/// message's receive count).
async fn messages(app: &App, queue: &str) -> Markup {
    let listed = app.console.queues.dead_letters(queue).await;
    let shown = listed.as_ref().map_or(0, Vec::len);
    html! {
        div #{ "dead-" (queue) }
            hx-get={ "/console/dead-letters/" (queue) "/messages?shown=" (shown) }
            hx-trigger="console:refresh from:body" hx-swap="outerHTML" {
            @match listed {
                Ok(messages) if messages.is_empty() => p.note { "No dead letters." },
                Ok(messages) => {
                    (table(queue, &messages))
                    @if messages.len() > 1 {
                        form method="post" action={ "/console/dead-letters/" (queue) "/redrive" }
                            hx-post={ "/console/dead-letters/" (queue) "/redrive" } hx-disabled-elt="find button"
                            hx-target={ "#queue-" (queue) } hx-swap="outerHTML"
                            hx-confirm={ "Move every dead letter of " (queue) " (" (messages.len()) ") back to the queue?" } {
                            button type="submit" { "Redrive all" }
                        }
                    }
                },
                Err(e) => (layout::unavailable("the dead letters", &e)),
            }
        }
    }
}

/// `GET /console/dead-letters/{queue}/messages?shown=N`: the list again, or 204 when the
/// dead-letter queue still holds the `N` messages the page shows.
pub(super) async fn refresh(
    State(app): State<App>,
    Path(queue): Path<String>,
    uri: Uri,
) -> Response {
    if !app.console.queue_names.contains(&queue) {
        return layout::html(
            StatusCode::NOT_FOUND,
            html! { p.alert role="alert" { "No queue " (queue) " here." } },
        );
    }
    let shown = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, u64)>>(q).ok())
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "shown"))
        .map(|(_, n)| n);
    if let (Some(shown), Ok(stats)) = (shown, app.console.queues.stats(&queue).await)
        && stats.dead_letters == shown
    {
        return StatusCode::NO_CONTENT.into_response();
    }
    layout::ok(messages(&app, &queue).await)
}

fn table(queue: &str, messages: &[QueueMessage]) -> Markup {
    html! {
        div.scroll {
            table {
                thead {
                    tr {
                        th scope="col" { "Message" }
                        th scope="col" { "Order" }
                        th scope="col" { "Event" }
                        th.num scope="col" { "Receive count" }
                        th scope="col" { "Last error" }
                        th scope="col" { span.note { "Action" } }
                    }
                }
                tbody {
                    @for m in messages {
                        @let c = carried(&m.body);
                        tr {
                            td { code { (m.message_id) } br; span.note { "sent " (layout::time(m.sent_at)) } }
                            td {
                                @match &c.order_id {
                                    Some(id) => a href={ "/console/orders/" (id) } { (id) },
                                    None => span.note { "unknown" },
                                }
                            }
                            td { (c.event.as_deref().unwrap_or("unreadable body")) }
                            td.num { (m.receive_count) }
                            td { (m.last_error.as_deref().unwrap_or("not recorded")) }
                            td {
                                form method="post" action={ "/console/dead-letters/" (queue) "/redrive" }
                                    hx-post={ "/console/dead-letters/" (queue) "/redrive" } hx-disabled-elt="find button"
                                    hx-target={ "#queue-" (queue) } hx-swap="outerHTML"
                                    hx-confirm={ "Move message " (m.message_id) " back to " (queue) "?" } {
                                    input type="hidden" name="message" value=(m.message_id);
                                    button type="submit" { "Redrive" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /console/dead-letters/{queue}/redrive`: the one message named in the form, or
/// all of them; answers with the queue's section and how many moved.
pub(super) async fn redrive(
    State(app): State<App>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Response {
    if !app.console.queue_names.contains(&queue) {
        return layout::html(
            StatusCode::NOT_FOUND,
            html! { p.alert role="alert" { "No queue " (queue) " here." } },
        );
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let message = form
        .iter()
        .find(|(k, _)| k == "message")
        .map(|(_, v)| v.as_str());
    let queues = &app.console.queues;
    let note = match message {
        Some(id) => match queues.redrive_message(&queue, id).await {
            Ok(true) => html! { p.done { "Moved 1 message back to " (queue) "." } },
            Ok(false) => {
                html! { p.alert { "Message " (id) " is no longer in the dead-letter queue (redriven meanwhile?)." } }
            }
            Err(e) => html! { p.alert { "Could not redrive: " (e.to_string()) } },
        },
        None => match queues.redrive(&queue).await {
            Ok(n) => {
                html! { p.done { "Moved " (n) " message" @if n != 1 { "s" } " back to " (queue) "." } }
            }
            Err(e) => html! { p.alert { "Could not redrive: " (e.to_string()) } },
        },
    };
    let section = queue_section(&app, &queue, Some(note)).await;
    layout::ok(section)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn a_dead_letter_names_the_order_and_event_its_body_carries_or_says_it_cannot() {
        let bus = r#"{"id":"x","detail-type":"OrderPlaced","detail":{"event":{"eventId":"e-1","orderId":"ORD-9","version":1,"type":"OrderPlaced"},"order":{"orderId":"ORD-9"}}}"#;
        assert_eq!(
            carried(bus),
            Carried {
                order_id: Some("ORD-9".into()),
                event: Some("OrderPlaced v1 (e-1)".into()),
            }
        );
        assert_eq!(carried("not json"), Carried::default());
        assert_eq!(
            carried(r#"{"channel":"web","requestId":"r-1","command":"place","orderId":"ORD-2"}"#),
            Carried {
                order_id: Some("ORD-2".into()),
                event: Some("intake: place from web (request r-1)".into()),
            }
        );
    }

    #[test]
    fn each_dead_letter_has_a_confirmed_redrive_and_its_error_escaped() {
        let m = QueueMessage {
            message_id: "m-1".into(),
            receipt_handle: String::new(),
            body: "{}".into(),
            receive_count: 5,
            sent_at: Utc::now(),
            last_error: Some("<boom>".into()),
        };
        let out = table("order-received", &[m]).into_string();
        assert!(out.contains(r#"name="message" value="m-1""#), "{out}");
        assert!(
            out.contains(r#"hx-confirm="Move message m-1 back to order-received?""#),
            "{out}"
        );
        assert!(out.contains(">Redrive</button>"), "{out}");
        assert!(out.contains("&lt;boom&gt;"), "{out}");
        assert!(out.contains(">5</td>"), "{out}");
    }
}
