//! What the pipeline's stages cost and did, counted in the process: CPU time per stage
//! (measured on the thread that polls each stage's work) and documents written. The
//! runtime that drives the cores wraps their work in [`timed`]; `/metrics` reports it.

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
};

use crate::ports::{Metric, MetricKind};

/// A stage of the pipeline whose CPU time is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The projector: read model updates and publication to the bus.
    Projector,
    /// The status handlers: ledger, documents, message deletes.
    Handlers,
}

impl Stage {
    const ALL: [Stage; 2] = [Stage::Projector, Stage::Handlers];

    fn name(self) -> &'static str {
        match self {
            Stage::Projector => "projector",
            Stage::Handlers => "handlers",
        }
    }

    fn counter(self) -> &'static AtomicU64 {
        static NANOS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
        &NANOS[self as usize]
    }
}

static DOCUMENTS: AtomicU64 = AtomicU64::new(0);

/// Counts a document a handler wrote (a rewrite by a retried handler counts again).
pub fn document_written() {
    DOCUMENTS.fetch_add(1, Ordering::Relaxed);
}

/// CPU time the calling thread has used so far, in nanoseconds (0 where unknown).
pub fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A future whose polls count towards `stage`'s CPU time.
pub struct Timed<F> {
    stage: Stage,
    inner: Pin<Box<F>>,
}

/// Counts the CPU time spent polling `future` (on whichever thread polls it) to `stage`.
pub fn timed<F: Future>(stage: Stage, future: F) -> Timed<F> {
    Timed {
        stage,
        inner: Box::pin(future),
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = thread_cpu_nanos();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_nanos().saturating_sub(before);
        self.stage.counter().fetch_add(spent, Ordering::Relaxed);
        polled
    }
}

/// The CPU time of one stage (named as in the `stage` label), as a metric.
pub(crate) fn stage_cpu(stage: &str, nanos: u64) -> Metric {
    Metric {
        name: "orders_stage_cpu_seconds_total",
        help: "CPU time spent by each stage of the pipeline.",
        kind: MetricKind::Counter,
        labels: vec![("stage", stage.to_owned())],
        value: nanos as f64 / 1e9,
    }
}

/// The stages' CPU seconds and the documents written, as metrics.
pub fn stage_metrics(out: &mut Vec<Metric>) {
    for stage in Stage::ALL {
        out.push(stage_cpu(
            stage.name(),
            stage.counter().load(Ordering::Relaxed),
        ));
    }
    out.push(Metric {
        name: "orders_documents_written_total",
        help: "Documents the status handlers wrote.",
        kind: MetricKind::Counter,
        labels: Vec::new(),
        value: DOCUMENTS.load(Ordering::Relaxed) as f64,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_future_counts_the_cpu_its_polls_spend() {
        let before = Stage::Projector.counter().load(Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(timed(Stage::Projector, async {
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            x
        }));
        assert!(Stage::Projector.counter().load(Ordering::Relaxed) > before);
    }
}
