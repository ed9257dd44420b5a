//! The orders list (`/console/orders?status=&q=&cursor=`): newest first from the read
//! model, by status, a page at a time; or one order found by its id.

use axum::{extract::State, http::Uri, response::Response};
use backend::{ListCursor, ListQuery};
use events_schema::{Order, OrderId, Status};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    layout::{self, Section},
    live::Snapshot,
};
use crate::{
    App,
    request::{decode_cursor, encode_cursor},
};

/// Orders per page.
const PAGE: usize = 25;

/// The list's query string. Anything unreadable is shown as such, not a 400: this is a
/// page an operator edits by hand.
#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

impl Filter {
    fn parse(uri: &Uri) -> Self {
        uri.query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default()
    }

    fn status(&self) -> Option<Status> {
        self.status.parse().ok()
    }

    /// The query string of this filter at another cursor.
    fn query(&self, cursor: Option<&ListCursor>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(s) = self.status() {
            pairs.push(("status", s.as_str().to_owned()));
        }
        let q = self.q.trim();
        if !q.is_empty() {
            pairs.push(("q", q.to_owned()));
        }
        if let Some(c) = cursor {
            pairs.push(("cursor", encode_cursor(c)));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// What the table shows: a page of orders, or the one found, or why there is none.
struct Rows {
    items: Vec<Order>,
    next: Option<ListCursor>,
    problem: Option<String>,
}

async fn rows_for(app: &App, f: &Filter) -> Rows {
    let q = f.q.trim();
    if !q.is_empty() {
        let id = match OrderId::parse(q) {
            Ok(id) => id,
            Err(e) => {
                return Rows {
                    items: Vec::new(),
                    next: None,
                    problem: Some(format!("{q:?} is not an order id: {e}")),
                };
            }
        };
        // The read model lags the events: an order placed a moment ago is found in the
        // event store.
        let found = match app.read_model.get(&id).await {
            Ok(Some(o)) => Ok(Some(o)),
            Ok(None) => app
                .commands
                .events
                .head(&id)
                .await
                .map(|h| h.map(|h| h.order)),
            Err(e) => Err(e),
        };
        return match found {
            Ok(found) => Rows {
                problem: found.is_none().then(|| format!("No order has the id {q}.")),
                items: found.into_iter().collect(),
                next: None,
            },
            Err(e) => Rows {
                items: Vec::new(),
                next: None,
                problem: Some(format!("Could not search: {e}")),
            },
        };
    }
    let after = match f.cursor.as_str() {
        "" => None,
        raw => match decode_cursor(raw) {
            Some(c) => Some(c),
            None => {
                return Rows {
                    items: Vec::new(),
                    next: None,
                    problem: Some(
                        "That page link is not one this console made; start from the first page."
                            .into(),
                    ),
                };
            }
        },
    };
    match app
        .read_model
        .list(&ListQuery {
            status: f.status(),
            limit: PAGE,
            after,
            newest_first: true,
        })
        .await
    {
        Ok(page) => Rows {
            problem: page
                .items
                .is_empty()
                .then(|| "No orders here yet.".to_owned()),
            items: page.items,
            next: page.next,
        },
        Err(e) => Rows {
            items: Vec::new(),
            next: None,
            problem: Some(format!("Could not list the orders: {e}")),
        },
    }
}

pub(super) async fn page(State(app): State<App>, uri: Uri) -> Response {
    let f = Filter::parse(&uri);
    let rows = rows_for(&app, &f).await;
    let token = Snapshot::current(&app).await.token();
    let selected = f.status();
    let main = html! {
        h1 { "Orders" }
        form.search method="get" action="/console/orders" role="search" {
            div {
                label for="q" { "Order id" }
                input #q type="text" name="q" value=(f.q.trim()) autocomplete="off";
            }
            div {
                label for="status" { "Status" }
                select #status name="status" data-autosubmit {
                    option value="" selected[selected.is_none()] { "All" }
                    @for s in Status::ALL {
                        option value=(s.as_str()) selected[selected == Some(s)] { (s.as_str()) }
                    }
                }
            }
            button type="submit" { "Search" }
        }
        (table(&f, &rows))
    };
    layout::ok(layout::page("Orders", Section::Orders, &token, main))
}

/// The table alone, for the live refresh.
pub(super) async fn rows(State(app): State<App>, uri: Uri) -> Response {
    let f = Filter::parse(&uri);
    let rows = rows_for(&app, &f).await;
    layout::ok(table(&f, &rows))
}

fn table(f: &Filter, rows: &Rows) -> Markup {
    let refresh = format!("/console/orders/rows?{}", f.query(None));
    let refresh = match f.cursor.as_str() {
        "" => refresh,
        c => format!(
            "{refresh}&{}",
            serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default()
        ),
    };
    html! {
        div #orders hx-get=(refresh) hx-trigger="console:refresh from:body" hx-swap="outerHTML" {
            div.scroll {
                table {
                    caption { "Orders, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Order" }
                            th scope="col" { "Status" }
                            th scope="col" { "Description" }
                            th scope="col" { "Created" }
                        }
                    }
                    tbody {
                        @for o in &rows.items {
                            tr {
                                td { a href={ "/console/orders/" (o.order_id) } { (o.order_id) } }
                                td { (layout::status(o.status)) }
                                td { (o.description.as_str()) }
                                td { (layout::time(o.created_at)) }
                            }
                        }
                    }
                }
            }
            @if let Some(p) = &rows.problem { p.note { (p) } }
            @if let Some(next) = &rows.next {
                p.pager { a href={ "/console/orders?" (f.query(Some(next))) } rel="next" { "Next page" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn order(id: &str, description: &str) -> Order {
        let now = Utc::now();
        Order {
            order_id: OrderId::parse(id).expect("id"),
            status: Status::Received,
            version: 1,
            description: events_schema::Description::parse(description).expect("description"),
            register_date: now,
            delivery_date: None,
            customer_id: None,
            reason_for_cancellation: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn each_row_links_to_its_order_and_descriptions_are_escaped() {
        let f = Filter {
            status: "received".into(),
            ..Filter::default()
        };
        let rows = Rows {
            items: vec![order("ORD-1", "<b>bold</b> & more")],
            next: Some(ListCursor {
                created_at: Utc::now(),
                order_id: OrderId::parse("ORD-1").expect("id"),
            }),
            problem: None,
        };
        let out = table(&f, &rows).into_string();
        assert!(
            out.contains(r#"<a href="/console/orders/ORD-1">ORD-1</a>"#),
            "{out}"
        );
        assert!(out.contains("&lt;b&gt;bold&lt;/b&gt; &amp; more"), "{out}");
        assert!(
            out.contains(r#"hx-get="/console/orders/rows?status=received""#),
            "{out}"
        );
        assert!(
            out.contains("/console/orders?status=received&amp;cursor="),
            "{out}"
        );
        assert!(out.contains(">Next page</a>"), "{out}");
    }
}
