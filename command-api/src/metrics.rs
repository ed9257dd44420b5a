//! `/metrics`: the backend's own counters, the pipeline's gauges and this process's CPU
//! time, rendered in the Prometheus text exposition format (version 0.0.4).

use backend::{Metric, MetricKind, QueueStats};

use crate::PipelineState;

/// This process's CPU time, unless the backend already counts it under this name.
const PROCESS_CPU: &str = "orders_process_cpu_seconds_total";

/// Everything `/metrics` shows: the backend's samples, then the pipeline's gauges (where
/// this process drives the pipeline), then the process's CPU time.
pub(crate) fn samples(backend: Vec<Metric>, pipeline: Option<&PipelineState>) -> Vec<Metric> {
    let mut samples = backend;
    if let Some(state) = pipeline {
        samples.push(Metric {
            name: "orders_projector_lag",
            help: "Events written but not yet projected into the read model and published.",
            kind: MetricKind::Gauge,
            labels: Vec::new(),
            value: state.projector_lag as f64,
        });
        samples.push(Metric {
            name: "orders_parked_records",
            help: "Change feed records the projector parked after its retries, waiting for `orders parked replay`.",
            kind: MetricKind::Gauge,
            labels: Vec::new(),
            value: state.parked as f64,
        });
        samples.extend(queue_gauges(&state.queues));
    }
    if !samples.iter().any(|m| m.name == PROCESS_CPU)
        && let Some(seconds) = process_cpu_seconds()
    {
        samples.push(Metric {
            name: PROCESS_CPU,
            help: "CPU time this process has used, user and system, in seconds.",
            kind: MetricKind::Counter,
            labels: Vec::new(),
            value: seconds,
        });
    }
    samples
}

/// The intake queue this process polls (its depth, in-flight and dead letters, labelled like
/// the route queues'), and what became of its messages.
pub(crate) fn intake_samples(queue: &QueueStats, counts: crate::IntakeCounts) -> Vec<Metric> {
    let mut samples = queue_gauges(std::slice::from_ref(queue));
    for (outcome, value) in [
        ("applied", counts.applied),
        ("duplicate", counts.duplicates),
        ("invalid", counts.invalid),
        ("failed", counts.failed),
    ] {
        samples.push(Metric {
            name: "orders_intake_messages_total",
            help: "Intake messages by outcome: applied (once per channel request id), duplicate (deleted), invalid (dead-lettered at once), failed (left to be retried).",
            kind: MetricKind::Counter,
            labels: vec![("outcome", outcome.to_owned())],
            value: value as f64,
        });
    }
    samples
}

fn queue_gauges(queues: &[QueueStats]) -> Vec<Metric> {
    let gauge = |name, help, queue: &QueueStats, value: u64| Metric {
        name,
        help,
        kind: MetricKind::Gauge,
        labels: vec![("queue", queue.queue.clone())],
        value: value as f64,
    };
    let mut gauges = Vec::with_capacity(queues.len() * 3);
    for q in queues {
        gauges.push(gauge(
            "orders_queue_depth",
            "Messages waiting in the route queue.",
            q,
            q.visible,
        ));
        gauges.push(gauge(
            "orders_queue_in_flight",
            "Messages received from the route queue and not yet deleted.",
            q,
            q.in_flight,
        ));
        gauges.push(gauge(
            "orders_queue_dead_letters",
            "Messages in the route queue's dead-letter queue.",
            q,
            q.dead_letters,
        ));
    }
    gauges
}

/// The text exposition format: each metric name's `# HELP` and `# TYPE` lines once (from
/// its first sample), then all its samples together, names in order of first appearance.
pub(crate) fn render(metrics: &[Metric]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for m in metrics {
        if !names.contains(&m.name) {
            names.push(m.name);
        }
    }
    let mut out = String::new();
    for name in names {
        let mut samples = metrics.iter().filter(|m| m.name == name).peekable();
        if let Some(first) = samples.peek() {
            out.push_str(&format!("# HELP {name} {}\n", escape_help(first.help)));
            out.push_str(&format!("# TYPE {name} {}\n", kind(first.kind)));
        }
        for m in samples {
            out.push_str(name);
            if !m.labels.is_empty() {
                let labels: Vec<String> = m
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                    .collect();
                out.push('{');
                out.push_str(&labels.join(","));
                out.push('}');
            }
            out.push(' ');
            out.push_str(&value(m.value));
            out.push('\n');
        }
    }
    out
}

fn kind(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    }
}

/// In `# HELP` text, backslash and line feed are escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// In a label value, backslash, double quote and line feed are escaped.
fn escape_label_value(text: &str) -> String {
    text.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// User plus system CPU time from `/proc/self/stat` (Linux; `None` elsewhere or if the
/// file cannot be read).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds(&stat)
}

/// Clock ticks per second of `/proc`'s times: USER_HZ, which Linux fixes at 100 on every
/// architecture this service is built for (what `sysconf(_SC_CLK_TCK)` reports there).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// `utime` and `stime`, fields 14 and 15 of `/proc/<pid>/stat`, in seconds. The command
/// name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (the state) comes first.
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        name: &'static str,
        kind: MetricKind,
        labels: &[(&'static str, &str)],
        value: f64,
    ) -> Metric {
        Metric {
            name,
            help: "Help with a \\ backslash\nand a second line.",
            kind,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            value,
        }
    }

    #[test]
    fn each_metric_name_gets_one_help_and_type_line_with_its_samples_grouped_below() {
        let text = render(&[
            sample(
                "orders_stage_cpu_seconds_total",
                MetricKind::Counter,
                &[("stage", "writer")],
                1.5,
            ),
            sample("orders_writer_fsyncs_total", MetricKind::Counter, &[], 7.0),
            sample(
                "orders_stage_cpu_seconds_total",
                MetricKind::Counter,
                &[("stage", "projector")],
                0.25,
            ),
        ]);
        let help = "# HELP {} Help with a \\\\ backslash\\nand a second line.";
        let expected = [
            help.replace("{}", "orders_stage_cpu_seconds_total"),
            "# TYPE orders_stage_cpu_seconds_total counter".into(),
            "orders_stage_cpu_seconds_total{stage=\"writer\"} 1.5".into(),
            "orders_stage_cpu_seconds_total{stage=\"projector\"} 0.25".into(),
            help.replace("{}", "orders_writer_fsyncs_total"),
            "# TYPE orders_writer_fsyncs_total counter".into(),
            "orders_writer_fsyncs_total 7".into(),
        ];
        assert_eq!(text, expected.join("\n") + "\n");
    }

    #[test]
    fn label_values_escape_backslash_quote_and_line_feed() {
        let text = render(&[sample(
            "orders_queue_depth",
            MetricKind::Gauge,
            &[("queue", "a\\b \"c\"\nd"), ("stage", "x")],
            3.0,
        )]);
        assert!(
            text.ends_with("orders_queue_depth{queue=\"a\\\\b \\\"c\\\"\\nd\",stage=\"x\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn non_finite_values_are_written_as_the_format_spells_them() {
        let text = render(&[
            sample("a", MetricKind::Gauge, &[("v", "nan")], f64::NAN),
            sample("a", MetricKind::Gauge, &[("v", "up")], f64::INFINITY),
            sample("a", MetricKind::Gauge, &[("v", "down")], f64::NEG_INFINITY),
        ]);
        assert!(text.contains("a{v=\"nan\"} NaN\n"), "{text}");
        assert!(text.contains("a{v=\"up\"} +Inf\n"), "{text}");
        assert!(text.contains("a{v=\"down\"} -Inf\n"), "{text}");
    }

    #[test]
    fn cpu_seconds_are_user_plus_system_ticks_even_with_parentheses_in_the_command_name() {
        let stat = "4242 (orders (dev) x) S 1 4242 4242 0 -1 4194560 1203 0 0 0 250 130 0 0 20 0 9 0 12345 0 0";
        assert_eq!(cpu_seconds(stat), Some(3.8));
        assert_eq!(cpu_seconds("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn process_cpu_is_added_only_when_the_backend_does_not_count_it() {
        let own = sample(PROCESS_CPU, MetricKind::Counter, &[], 42.0);
        let with = samples(vec![own.clone()], None);
        assert_eq!(with.iter().filter(|m| m.name == PROCESS_CPU).count(), 1);
        assert_eq!(with[0], own);
        if process_cpu_seconds().is_some() {
            let without = samples(Vec::new(), None);
            assert_eq!(without.iter().filter(|m| m.name == PROCESS_CPU).count(), 1);
        }
    }

    #[test]
    fn the_pipeline_gives_the_lag_the_parked_records_and_three_gauges_per_queue() {
        let state = PipelineState {
            projector_lag: 5,
            queues: vec![QueueStats {
                queue: "orders-completed".into(),
                visible: 2,
                in_flight: 1,
                dead_letters: 0,
            }],
            parked: 3,
        };
        let text = render(&samples(Vec::new(), Some(&state)));
        for line in [
            "# TYPE orders_projector_lag gauge",
            "orders_projector_lag 5",
            "# TYPE orders_parked_records gauge",
            "orders_parked_records 3",
            "orders_queue_depth{queue=\"orders-completed\"} 2",
            "orders_queue_in_flight{queue=\"orders-completed\"} 1",
            "orders_queue_dead_letters{queue=\"orders-completed\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
