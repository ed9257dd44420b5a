//! CloudWatch metrics in the embedded metric format (EMF): one JSON object per line on
//! standard output, which CloudWatch Logs turns into metrics without any API call (see
//! "Specification: Embedded metric format" in the CloudWatch user guide).
//!
//! Anyone may call the emitters ([`command`], [`duplicate`], [`parked`],
//! [`documents_written`]); they write nothing until [`emit_to_stdout`] is called, which only
//! the Lambda mains do: locally, `/metrics` reports what happened instead.
//!
//! The namespace and metric names are a contract with the CDK dashboard, which names them
//! as literals (cdk/test asserts them).

use std::{
    io::Write as _,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// The CloudWatch namespace of every metric below.
pub const NAMESPACE: &str = "Ordersource";

/// A metric this service publishes, with the dimensions each of its values carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Commands the API ran: dimensions `Command` (`PlaceOrder`, ...) and `Outcome`.
    Commands,
    /// Work recognised as already done: dimension `Kind` (see [`Duplicate`]).
    Duplicates,
    /// Change feed records the projector gave up on and parked.
    ParkedRecords,
    /// Documents the status handlers wrote: dimension `Handler`.
    DocumentsWritten,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::Commands,
        Metric::Duplicates,
        Metric::ParkedRecords,
        Metric::DocumentsWritten,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::Commands => "Commands",
            Metric::Duplicates => "Duplicates",
            Metric::ParkedRecords => "ParkedRecords",
            Metric::DocumentsWritten => "DocumentsWritten",
        }
    }

    /// The dimension keys of each value, in order.
    pub const fn dimensions(self) -> &'static [&'static str] {
        match self {
            Metric::Commands => &["Command", "Outcome"],
            Metric::Duplicates => &["Kind"],
            Metric::ParkedRecords => &[],
            Metric::DocumentsWritten => &["Handler"],
        }
    }
}

/// What kind of work was recognised as already done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// A write retried with the same `Idempotency-Key`: answered with the saved response.
    IdempotencyKey,
    /// A placement repeated with the same `orderId` and content: answered with the order.
    SamePlacement,
    /// A message a handler had already handled (at-least-once delivery).
    HandlerDelivery,
    /// An intake message whose channel and request id an earlier message carried: the
    /// command was applied then, this one is deleted.
    IntakeRequest,
}

impl Duplicate {
    pub const fn name(self) -> &'static str {
        match self {
            Duplicate::IdempotencyKey => "IdempotencyKey",
            Duplicate::SamePlacement => "SamePlacement",
            Duplicate::HandlerDelivery => "HandlerDelivery",
            Duplicate::IntakeRequest => "IntakeRequest",
        }
    }
}

/// One value of one metric, with its dimension values (in [`Metric::dimensions`] order)
/// and context properties (searchable in Logs Insights, not metric dimensions).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub metric: Metric,
    pub dimension_values: &'a [&'a str],
    pub value: f64,
    pub properties: &'a [(&'a str, &'a str)],
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "_aws")]
    aws: Metadata<'a>,
    #[serde(flatten)]
    members: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata<'a> {
    /// Milliseconds since the Unix epoch.
    timestamp: u64,
    cloud_watch_metrics: [MetricDirective<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDirective<'a> {
    namespace: &'a str,
    dimensions: [&'a [&'a str]; 1],
    metrics: [MetricDefinition<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDefinition<'a> {
    name: &'a str,
    unit: &'a str,
}

/// The EMF document of `sample` at `timestamp_ms`, as one line of JSON. A dimension
/// without a value is `unknown` (CloudWatch needs every referenced member, non-empty).
pub fn document(sample: &Sample<'_>, timestamp_ms: u64) -> String {
    let keys = sample.metric.dimensions();
    let mut members = serde_json::Map::new();
    for (key, value) in sample.properties {
        members.insert((*key).to_owned(), (*value).into());
    }
    for (i, key) in keys.iter().enumerate() {
        let value = sample
            .dimension_values
            .get(i)
            .copied()
            .filter(|v| !v.is_empty())
            .unwrap_or("unknown");
        members.insert((*key).to_owned(), value.into());
    }
    members.insert(sample.metric.name().to_owned(), sample.value.into());
    let doc = Document {
        aws: Metadata {
            timestamp: timestamp_ms,
            cloud_watch_metrics: [MetricDirective {
                namespace: NAMESPACE,
                dimensions: [keys],
                metrics: [MetricDefinition {
                    name: sample.metric.name(),
                    unit: "Count",
                }],
            }],
        },
        members,
    };
    // Strings, finite numbers and maps only: serializing cannot fail.
    serde_json::to_string(&doc).unwrap_or_default()
}

type Sink = Box<dyn Fn(&str) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// From now on, metrics are written to standard output, where Lambda hands them to
/// CloudWatch Logs. For the Lambda mains only.
pub fn emit_to_stdout() {
    install(|line| {
        // One locked write per document, so that log lines never interleave with it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    });
}

/// Sends every document to `sink` from now on; `false` if a sink was installed already
/// (the first one stays). Tests use it to read what is emitted.
pub fn install(sink: impl Fn(&str) + Send + Sync + 'static) -> bool {
    SINK.set(Box::new(sink)).is_ok()
}

static CAPTURED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// For tests: from now on, keeps every document in memory (see [`captured`]), unless
/// another sink was installed first.
pub fn capture_in_memory() {
    install(|line| {
        CAPTURED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.to_owned());
    });
}

/// The documents kept since [`capture_in_memory`], parsed.
pub fn captured() -> Vec<serde_json::Value> {
    CAPTURED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Emits `sample` if a sink is installed.
pub fn emit(sample: &Sample<'_>) {
    if let Some(sink) = SINK.get() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        sink(&document(sample, now));
    }
}

/// The request a value comes from: its correlation id and, where it ran traced, its X-Ray
/// trace header. Written beside the value (not as dimensions), so that Logs Insights finds
/// a request's metrics and X-Ray's trace leads to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    pub correlation_id: &'a str,
    pub trace_header: Option<&'a str>,
}

impl<'a> Origin<'a> {
    fn properties(&self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut properties = more.to_vec();
        properties.push(("correlationId", self.correlation_id));
        if let Some(trace) = self.trace_header {
            properties.push(("traceHeader", trace));
        }
        properties
    }
}

/// A command the API ran: its kind and outcome.
pub fn command(kind: &str, outcome: &str, origin: Origin<'_>) {
    emit(&Sample {
        metric: Metric::Commands,
        dimension_values: &[kind, outcome],
        value: 1.0,
        properties: &origin.properties(&[]),
    });
}

/// Work recognised as already done; `id` names it (the order, the event).
pub fn duplicate(kind: Duplicate, id: &str, origin: Origin<'_>) {
    emit(&Sample {
        metric: Metric::Duplicates,
        dimension_values: &[kind.name()],
        value: 1.0,
        properties: &origin.properties(&[("id", id)]),
    });
}

/// `count` change feed records parked at `position`.
pub fn parked(count: u64, position: &str) {
    emit(&Sample {
        metric: Metric::ParkedRecords,
        dimension_values: &[],
        value: count as f64,
        properties: &[("position", position)],
    });
}

/// A document a handler wrote for an event.
pub fn documents_written(handler: &str, event_id: &str, origin: Origin<'_>) {
    emit(&Sample {
        metric: Metric::DocumentsWritten,
        dimension_values: &[handler],
        value: 1.0,
        properties: &origin.properties(&[("eventId", event_id)]),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> serde_json::Value {
        assert!(!line.contains('\n'), "one line: {line}");
        serde_json::from_str(line).expect("a JSON object")
    }

    #[test]
    fn a_command_is_one_emf_object_with_its_dimensions_and_value_as_members() {
        let line = document(
            &Sample {
                metric: Metric::Commands,
                dimension_values: &["PlaceOrder", "Accepted"],
                value: 1.0,
                properties: &[("correlationId", "c-1")],
            },
            1_764_000_000_123,
        );
        assert_eq!(
            parse(&line),
            json!({
                "_aws": {
                    "Timestamp": 1_764_000_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Ordersource",
                        "Dimensions": [["Command", "Outcome"]],
                        "Metrics": [{"Name": "Commands", "Unit": "Count"}],
                    }],
                },
                "Command": "PlaceOrder",
                "Outcome": "Accepted",
                "Commands": 1.0,
                "correlationId": "c-1",
            })
        );
    }

    #[test]
    fn a_metric_without_dimensions_has_one_empty_dimension_set() {
        let doc = parse(&document(
            &Sample {
                metric: Metric::ParkedRecords,
                dimension_values: &[],
                value: 3.0,
                properties: &[],
            },
            7,
        ));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert_eq!(doc["ParkedRecords"], json!(3.0));
    }

    #[test]
    fn every_dimension_key_is_a_string_member_and_every_metric_a_number_member() {
        // The specification's rules for the members a directive references.
        for metric in Metric::ALL {
            let values = ["a", "b"];
            let doc = parse(&document(
                &Sample {
                    metric,
                    dimension_values: &values[..metric.dimensions().len()],
                    value: 2.0,
                    properties: &[("note", "x")],
                },
                1,
            ));
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], NAMESPACE);
            for set in directive["Dimensions"].as_array().expect("sets") {
                for key in set.as_array().expect("keys") {
                    let key = key.as_str().expect("a key");
                    assert!(
                        doc[key].is_string(),
                        "{metric:?}: {key} is not a string member"
                    );
                }
            }
            for def in directive["Metrics"].as_array().expect("defs") {
                let name = def["Name"].as_str().expect("a name");
                assert_eq!(name, metric.name());
                assert!(doc[name].is_number(), "{metric:?}: {name} is not a number");
                assert_eq!(def["Unit"], "Count");
            }
        }
    }

    #[test]
    fn a_missing_or_empty_dimension_value_is_unknown_not_absent() {
        let doc = parse(&document(
            &Sample {
                metric: Metric::Commands,
                dimension_values: &["", "Accepted"][..1],
                value: 1.0,
                properties: &[],
            },
            1,
        ));
        assert_eq!(doc["Command"], "unknown");
        assert_eq!(doc["Outcome"], "unknown");
    }

    #[test]
    fn the_origin_is_written_beside_the_value_with_the_trace_header_only_when_known() {
        let traced = Origin {
            correlation_id: "c-9",
            trace_header: Some("Root=1-a-b;Parent=c;Sampled=1"),
        };
        assert_eq!(
            traced.properties(&[("eventId", "e-1")]),
            [
                ("eventId", "e-1"),
                ("correlationId", "c-9"),
                ("traceHeader", "Root=1-a-b;Parent=c;Sampled=1")
            ]
        );
        let untraced = Origin {
            correlation_id: "c-9",
            trace_header: None,
        };
        assert_eq!(untraced.properties(&[]), [("correlationId", "c-9")]);
    }

    #[test]
    fn a_property_cannot_replace_a_dimension_or_the_value() {
        let doc = parse(&document(
            &Sample {
                metric: Metric::DocumentsWritten,
                dimension_values: &["received"],
                value: 1.0,
                properties: &[("Handler", "spoofed"), ("DocumentsWritten", "x")],
            },
            1,
        ));
        assert_eq!(doc["Handler"], "received");
        assert_eq!(doc["DocumentsWritten"], json!(1.0));
    }
}
