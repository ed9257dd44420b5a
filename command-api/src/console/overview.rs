//! The overview (`/` and `/console`): orders per status, this server's command rate, the
//! projector's lag, parked records, and each queue's depth, in-flight and dead letters.

use axum::{extract::State, response::Response};
use maud::{Markup, html};

use super::{
    layout::{self, Section},
    live::{Figure, Snapshot},
};
use crate::App;

pub(super) async fn page(State(app): State<App>) -> Response {
    let snapshot = Snapshot::current(&app).await;
    let rate = rate(&app);
    let main = html! {
        h1 { "Overview" }
        (overview(&snapshot, rate))
    };
    layout::ok(layout::page(
        "Overview",
        Section::Overview,
        &snapshot.token(),
        main,
    ))
}

/// The overview alone, for htmx to swap in when it changed.
pub(super) async fn fragment(State(app): State<App>) -> Response {
    let snapshot = Snapshot::current(&app).await;
    let rate = rate(&app);
    layout::ok(overview(&snapshot, rate))
}

/// This server's command rate; none in the API Lambda, where each instance would count
/// only the requests it happened to serve.
fn rate(app: &App) -> Option<f64> {
    app.pipeline
        .is_some()
        .then(|| app.console.hub.commands_per_second())
}

fn figure(f: &Figure, unit: &str) -> Markup {
    html! {
        @match f {
            Figure::Value(n) => { (n) " " (unit) }
            Figure::NotHere(why) => span.note { (why) },
            Figure::Failed(e) => span.broken { "could not read: " (e) },
        }
    }
}

pub(super) fn overview(s: &Snapshot, commands_per_second: Option<f64>) -> Markup {
    html! {
        div #overview hx-get="/console/overview" hx-trigger="console:refresh from:body, console:rate from:body" hx-swap="outerHTML" {
            div.grid {
                div.scroll {
                    @match &s.counts {
                        Ok(counts) => table {
                            caption { "Orders by status" }
                            thead { tr { th scope="col" { "Status" } th.num scope="col" { "Orders" } } }
                            tbody {
                                @for (status, n) in counts {
                                    tr {
                                        th scope="row" {
                                            a href={ "/console/orders?status=" (status.as_str()) } { (status.as_str()) }
                                        }
                                        td.num { (n) }
                                    }
                                }
                            }
                        },
                        Err(e) => (layout::unavailable("the orders per status", e)),
                    }
                }
                dl.figures {
                    div {
                        dt { "Commands per second" }
                        dd {
                            @match commands_per_second {
                                Some(r) => { (format!("{r:.1}")) " " span.note { "(accepted by this server, last 10 s)" } },
                                None => span.note { "not available in Lambda (see the Commands metric in CloudWatch)" },
                            }
                        }
                    }
                    div {
                        dt { "Projector lag" }
                        dd { (figure(&s.lag, "events")) }
                    }
                    div {
                        dt { "Parked records" }
                        dd { (figure(&s.parked, "records")) }
                    }
                }
            }
            div.scroll {
                table {
                    caption { "Queues" }
                    thead {
                        tr {
                            th scope="col" { "Queue" }
                            th.num scope="col" { "Depth" }
                            th.num scope="col" { "In flight" }
                            th.num scope="col" { "Dead letters" }
                        }
                    }
                    tbody {
                        @for q in &s.queues {
                            tr {
                                th scope="row" { (q.name) }
                                @match &q.stats {
                                    Ok((depth, in_flight, dead)) => {
                                        td.num { (depth) }
                                        td.num { (in_flight) }
                                        td.num {
                                            @if *dead > 0 {
                                                a href={ "/console/dead-letters#queue-" (q.name) } { (dead) }
                                            } @else { (dead) }
                                        }
                                    },
                                    Err(e) => td colspan="3" { span.broken { "could not read: " (e) } },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use events_schema::Status;

    use super::*;
    use crate::console::live::QueueRow;

    #[test]
    fn the_overview_names_its_tables_and_figures_and_says_what_it_cannot_measure() {
        let s = Snapshot {
            counts: Ok(Status::ALL.iter().map(|s| (*s, 2)).collect()),
            lag: Figure::Value(3),
            parked: Figure::NotHere("not available in Lambda"),
            queues: vec![
                QueueRow {
                    name: "order-received".into(),
                    stats: Ok((4, 1, 2)),
                },
                QueueRow {
                    name: "order-canceled".into(),
                    stats: Err("throttled".into()),
                },
            ],
        };
        let out = overview(&s, Some(12.34)).into_string();
        for text in [
            "<caption>Orders by status</caption>",
            "<caption>Queues</caption>",
            "<dt>Commands per second</dt>",
            "<dt>Projector lag</dt>",
            "<dt>Parked records</dt>",
            ">In flight</th>",
            ">Dead letters</th>",
            "12.3",
            "3 events",
            "not available in Lambda",
            r##"<a href="/console/dead-letters#queue-order-received">2</a>"##,
            "could not read: throttled",
        ] {
            assert!(out.contains(text), "{text} in {out}");
        }
        for status in Status::ALL {
            assert!(out.contains(&format!(">{status}</a>")), "{status}");
        }
    }
}
