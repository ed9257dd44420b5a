//! The page shell every console page shares (head, navigation, live token), and the HTML
//! responses. maud escapes every spliced value, so user data never becomes markup.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use events_schema::Status;
use maud::{DOCTYPE, Markup, html};

use super::assets;

/// The console's sections, for the navigation's current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Overview,
    Orders,
    DeadLetters,
    Audit,
}

const NAV: [(Section, &str, &str); 4] = [
    (Section::Overview, "Overview", "/console"),
    (Section::Orders, "Orders", "/console/orders"),
    (
        Section::DeadLetters,
        "Dead letters",
        "/console/dead-letters",
    ),
    (Section::Audit, "Audit", "/console/audit"),
];

/// A whole page. `live_token` is what the overview showed when the page was rendered
/// (see `live`): the page's script compares it with the stream's on (re)connect.
pub(super) fn page(title: &str, section: Section, live_token: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx's default indicator styles are an inline <style>, which the
                // Content-Security-Policy refuses; the console has its own stylesheet.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " · ordersource console" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(assets::style_url());
                script src=(assets::htmx_url()) defer {}
                script src=(assets::script_url()) defer {}
            }
            body data-live-token=(live_token) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "ordersource console" }
                    nav aria-label="Console" {
                        ul {
                            @for (s, label, href) in NAV {
                                li {
                                    @if s == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
                main id="main" { (main) }
            }
        }
    }
}

/// Only the console's own origin: scripts, styles, the event stream and fragments. Inline
/// styles are allowed (the console has none, but tools that screenshot or inspect a page
/// inject them, and a style cannot run code); inline scripts are not.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// An HTML answer (a page or a fragment); never cached, since it shows live data.
pub(super) fn html(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(super) fn ok(markup: Markup) -> Response {
    html(StatusCode::OK, markup)
}

/// A time as operators read it (UTC, to the second), machine-readable in `datetime`.
pub(super) fn time(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339_opts(SecondsFormat::Micros, true)) {
            (t.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// A status as text, styled by its value.
pub(super) fn status(s: Status) -> Markup {
    html! { span class={ "status status-" (s.as_str()) } { (s.as_str()) } }
}

/// A message for the operator in place of what could not be read.
pub(super) fn unavailable(what: &str, err: &impl std::fmt::Display) -> Markup {
    html! { p.alert role="alert" { "Could not read " (what) ": " (err.to_string()) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_the_console_navigation_and_marks_the_current_section() {
        let out = page("Orders", Section::Orders, "t", html! { h1 { "Orders" } }).into_string();
        assert!(out.contains(r#"<nav aria-label="Console">"#), "{out}");
        for (_, label, _) in NAV {
            assert!(out.contains(&format!(">{label}</a>")), "{label}");
        }
        assert!(
            out.contains(r#"<a href="/console/orders" aria-current="page">Orders</a>"#),
            "{out}"
        );
        assert!(out.contains(r#"<link rel="icon" href="data:,">"#), "{out}");
    }

    #[test]
    fn spliced_values_are_escaped() {
        let out = page(
            "<script>",
            Section::Overview,
            "\"><x",
            html! { p { ("<img src=x onerror=alert(1)>") } },
        )
        .into_string();
        assert!(!out.contains("<img src=x"), "{out}");
        assert!(out.contains("&lt;img src=x onerror=alert(1)&gt;"), "{out}");
        assert!(
            out.contains("&lt;script&gt; · ordersource console"),
            "{out}"
        );
        assert!(
            out.contains(r#"data-live-token="&quot;&gt;&lt;x""#),
            "{out}"
        );
    }
}
