//! The invoice as a PDF: the completed order and the trail that led to it, in, PDF bytes
//! out. Pure: no clock, no randomness, no I/O, so that a handler that runs twice for the
//! same event writes the same bytes (the document's date and id come from the event).
//!
//! The font is DejaVu Sans (`handlers/fonts/`, its licence beside it), built into the
//! binary because the Lambda has no system fonts; krilla embeds only the glyphs used, with
//! a Unicode map, so that readers extract the text (accents included).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use events_schema::{Envelope, EventDetail};
use krilla::{
    Document, SerializeSettings,
    geom::Point,
    metadata::{DateTime as PdfDateTime, Metadata},
    page::PageSettings,
    text::{Font, TextDirection},
};

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// A4 in points.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TITLE_SIZE: f32 = 18.0;
const HEADING_SIZE: f32 = 12.0;
const BODY_SIZE: f32 = 10.0;
/// DejaVu Sans averages well under 0.6 em per character, so this many characters of body
/// text fit between the margins; krilla has no line breaking of its own.
const WRAP_COLUMNS: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum InvoicePdfError {
    #[error("the embedded font cannot be read")]
    Font,
    #[error("writing the PDF: {0}")]
    Pdf(#[from] krilla::error::KrillaError),
}

/// The PDF invoice for the completion `detail` reports; `history` is the order's events up
/// to and including that one, in version order (the status history is read from it).
pub fn render(detail: &EventDetail, history: &[Envelope]) -> Result<Vec<u8>, InvoicePdfError> {
    let font = Font::new(FONT.into(), 0).ok_or(InvoicePdfError::Font)?;
    // Every completion renders one, so CPU counts more than bytes: uncompressed page
    // content and no XMP packet took the handlers from ~630 to ~440 µs per command in
    // `orders bench` (the PDF grows from ~15 to ~19 KB); the font stays compressed.
    let mut document = Document::new_with(SerializeSettings {
        compress_content_streams: false,
        xmp_metadata: false,
        ..SerializeSettings::default()
    });
    document.set_metadata(metadata(detail));
    let lines = lines(detail, history);
    // Whole pages of lines, each starting at the top margin.
    let mut pages: Vec<Vec<&Line>> = vec![Vec::new()];
    let mut y = MARGIN;
    for line in &lines {
        let height = line.size * 1.5;
        if y + height > PAGE_HEIGHT - MARGIN {
            pages.push(Vec::new());
            y = MARGIN;
        }
        y += height;
        if let Some(page) = pages.last_mut() {
            page.push(line);
        }
    }
    for page_lines in pages {
        let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).unwrap_or_default();
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        let mut y = MARGIN;
        for line in page_lines {
            y += line.size * 1.5;
            surface.draw_text(
                Point::from_xy(MARGIN + line.indent, y),
                font.clone(),
                line.size,
                &line.text,
                false,
                TextDirection::Auto,
            );
        }
        surface.finish();
        page.finish();
    }
    Ok(document.finish()?)
}

struct Line {
    text: String,
    size: f32,
    indent: f32,
}

impl Line {
    fn new(size: f32, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            size,
            indent: 0.0,
        }
    }
}

fn metadata(detail: &EventDetail) -> Metadata {
    let at = detail.event.occurred_at;
    Metadata::new()
        .title(format!("Invoice {}", invoice_number(detail)))
        .creator("ordersource".into())
        .producer("ordersource".into())
        // Both from the event, never from the clock, so that a re-issue is byte-identical.
        .document_id(detail.event.event_id.to_string())
        .creation_date(
            PdfDateTime::new(u16::try_from(at.year()).unwrap_or(0))
                .month(at.month() as u8)
                .day(at.day() as u8)
                .hour(at.hour() as u8)
                .minute(at.minute() as u8)
                .second(at.second() as u8)
                .utc_offset_hour(0)
                .utc_offset_minute(0),
        )
}

pub fn invoice_number(detail: &EventDetail) -> String {
    format!("INV-{}-{}", detail.order.order_id, detail.event.version)
}

fn date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn lines(detail: &EventDetail, history: &[Envelope]) -> Vec<Line> {
    let (order, event) = (&detail.order, &detail.event);
    let mut out = vec![
        Line::new(TITLE_SIZE, format!("Invoice {}", invoice_number(detail))),
        Line::new(BODY_SIZE, ""),
        Line::new(BODY_SIZE, format!("Order: {}", order.order_id)),
    ];
    if let Some(customer) = &order.customer_id {
        out.push(Line::new(
            BODY_SIZE,
            format!("Customer: {}", customer.as_str()),
        ));
    }
    out.push(Line::new(BODY_SIZE, "Description:"));
    for text in wrap(order.description.as_str(), WRAP_COLUMNS) {
        out.push(Line {
            indent: 12.0,
            ..Line::new(BODY_SIZE, text)
        });
    }
    out.push(Line::new(
        BODY_SIZE,
        format!("Registered: {}", date(order.register_date)),
    ));
    if let Some(delivery) = &order.delivery_date {
        out.push(Line::new(
            BODY_SIZE,
            format!("Delivery: {}", delivery.as_str()),
        ));
    }
    out.push(Line::new(
        BODY_SIZE,
        format!("Completed: {}", date(event.occurred_at)),
    ));
    out.push(Line::new(BODY_SIZE, ""));
    out.push(Line::new(HEADING_SIZE, "Status history"));
    let mut last = None;
    for e in history.iter().filter(|e| e.version <= event.version) {
        if last == Some(e.status) {
            continue;
        }
        last = Some(e.status);
        out.push(Line {
            indent: 12.0,
            ..Line::new(
                BODY_SIZE,
                format!(
                    "{}  {}  (version {}, {})",
                    date(e.occurred_at),
                    e.status,
                    e.version,
                    e.event.type_name()
                ),
            )
        });
    }
    out.push(Line::new(BODY_SIZE, ""));
    out.push(Line::new(HEADING_SIZE, "Issued for event"));
    out.push(Line::new(
        BODY_SIZE,
        format!("Event: {} (version {})", event.event_id, event.version),
    ));
    out.push(Line::new(BODY_SIZE, format!("Hash: {}", event.hash)));
    out
}

/// `text` in lines of at most `columns` characters, broken at spaces where it can be and
/// inside a word only when the word alone is longer than a line.
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            while word.len() > columns {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                lines.push(word.drain(..columns).collect());
            }
            let word: String = word.into_iter().collect();
            let needed =
                line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
            if needed > columns && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_breaks_at_spaces_and_splits_only_words_longer_than_a_line() {
        assert_eq!(
            wrap("Café añejo — pedido nº 7", 11),
            ["Café añejo", "— pedido nº", "7"]
        );
        assert_eq!(wrap("abcdefghij xy", 4), ["abcd", "efgh", "ij", "xy"]);
        assert_eq!(wrap("one\ntwo", 80), ["one", "two"]);
    }
}
