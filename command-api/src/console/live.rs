//! Live updates: what the overview shows (a [`Snapshot`]), the rate of accepted commands,
//! and the Server-Sent Events stream at `/console/events` that tells pages when to
//! re-fetch.
//!
//! One ticker per process reads a snapshot about once a second while anyone listens, and
//! broadcasts a token of it when it changed; each stream starts with `hello` and the
//! current token, so a page that (re)connects re-fetches only if it missed something. A
//! receiver that lagged behind the broadcast gets a `changed` all the same (refresh all).
//! Streams end when the server shuts down. In the API Lambda (API Gateway buffers whole
//! responses) the stream is one `hello` with a `retry:` delay, and the browser reconnects.

use std::{
    collections::VecDeque,
    hash::{Hash, Hasher},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use events_schema::Status;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::App;

/// How often the ticker looks for changes.
const TICK: Duration = Duration::from_secs(1);
/// How long the ticker keeps running with nobody listening.
const IDLE_STOP: Duration = Duration::from_secs(30);
/// The window the commands-per-second rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// How long a snapshot serves pages and streams before it is read again (under [`TICK`],
/// so that the ticker sees every second's state).
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(900);
/// When a one-event stream (API Lambda) tells the browser to reconnect.
const LAMBDA_RETRY: Duration = Duration::from_secs(5);

/// A figure the overview shows, or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Figure {
    Value(u64),
    /// Not measured by this process (the API Lambda: Lambda drives the pipeline).
    NotHere(&'static str),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct QueueRow {
    pub name: String,
    /// Depth, in flight, dead letters; or why they could not be read.
    pub stats: Result<(u64, u64, u64), String>,
}

/// What the overview shows, read through the ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Snapshot {
    pub counts: Result<Vec<(Status, u64)>, String>,
    pub lag: Figure,
    pub parked: Figure,
    pub queues: Vec<QueueRow>,
}

const NOT_IN_LAMBDA: &str =
    "not available in Lambda (Lambda's event source mappings drive the pipeline; see CloudWatch)";

impl Snapshot {
    /// The snapshot read less than [`SNAPSHOT_MAX_AGE`] ago, or a new one: the pages, the
    /// streams and the ticker of one process share it, so that many consoles refreshing at
    /// once cost one read of the figures (the counts read the whole projection's index).
    pub(super) async fn current(app: &App) -> Self {
        let mut latest = app.console.hub.latest.lock().await;
        if let Some((at, s)) = latest.as_ref()
            && at.elapsed() < SNAPSHOT_MAX_AGE
        {
            return s.clone();
        }
        let s = Self::read(app).await;
        *latest = Some((Instant::now(), s.clone()));
        s
    }

    async fn read(app: &App) -> Self {
        let counts = app
            .read_model
            .count_by_status()
            .await
            .map_err(|e| e.to_string());
        let figure = |r: Result<u64, backend::StoreError>| match r {
            Ok(n) => Figure::Value(n),
            Err(e) => Figure::Failed(e.to_string()),
        };
        let (lag, parked) = match &app.pipeline {
            Some(p) => (figure(p.feed.lag().await), figure(p.parked.count().await)),
            None => (
                Figure::NotHere(NOT_IN_LAMBDA),
                Figure::NotHere(NOT_IN_LAMBDA),
            ),
        };
        let console = &app.console;
        let mut queues = Vec::with_capacity(console.queue_names.len());
        for name in &console.queue_names {
            let stats = console
                .queues
                .stats(name)
                .await
                .map(|s| (s.visible, s.in_flight, s.dead_letters))
                .map_err(|e| e.to_string());
            queues.push(QueueRow {
                name: name.clone(),
                stats,
            });
        }
        Self {
            counts,
            lag,
            parked,
            queues,
        }
    }

    /// Stands for the snapshot's content: equal snapshots, equal tokens, in any process of
    /// the same build (so an API Lambda's pages and streams agree across instances).
    pub(super) fn token(&self) -> String {
        let mut h = std::hash::DefaultHasher::new();
        self.hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

/// The live state of one process: its accepted commands and the broadcast of changes.
pub(crate) struct Hub {
    accepted: AtomicU64,
    samples: Mutex<VecDeque<(Instant, u64)>>,
    changes: broadcast::Sender<String>,
    ticking: AtomicBool,
    latest: tokio::sync::Mutex<Option<(Instant, Snapshot)>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
            changes: broadcast::channel(16).0,
            ticking: AtomicBool::new(false),
            latest: tokio::sync::Mutex::new(None),
        }
    }
}

impl Hub {
    /// Counts a command this server accepted (the write path calls it).
    pub(crate) fn command_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Commands this server accepted per second over about the last [`RATE_WINDOW`]
    /// (measured from the calls of this function: the ticker calls it every second).
    pub(super) fn commands_per_second(&self) -> f64 {
        let now = Instant::now();
        let count = self.accepted.load(Ordering::Relaxed);
        let Ok(mut samples) = self.samples.lock() else {
            return 0.0;
        };
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        let rate = match samples.front() {
            Some((t, n)) if now.duration_since(*t) >= Duration::from_millis(500) => {
                (count - n) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        };
        samples.push_back((now, count));
        rate
    }
}

/// Starts the process's ticker unless it runs: it reads a snapshot every [`TICK`] while
/// anyone listens, broadcasts its token (with the rate, rounded) when it changed, and
/// stops on shutdown or after [`IDLE_STOP`] without listeners.
fn ensure_ticker(app: &App) {
    let hub = &app.console.hub;
    if hub.ticking.swap(true, Ordering::AcqRel) {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let hub = app.console.hub.clone();
        loop {
            let stop = tick_until_stopped(&app).await;
            hub.ticking.store(false, Ordering::Release);
            // A stream that subscribed while this ticker was stopping for lack of listeners
            // found it still running: go on for it.
            let wanted = stop == Stop::Idle && hub.changes.receiver_count() > 0;
            if !wanted || hub.ticking.swap(true, Ordering::AcqRel) {
                break;
            }
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    Idle,
}

/// The ticker's loop, until shutdown or [`IDLE_STOP`] without listeners.
async fn tick_until_stopped(app: &App) -> Stop {
    let hub = &app.console.hub;
    let mut shutdown = app.console.shutdown.clone();
    let mut last = String::new();
    let mut idle_since: Option<Instant> = None;
    loop {
        let stopping = async {
            match shutdown.as_mut() {
                Some(s) => {
                    let _ = s.wait_for(|down| *down).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = stopping => return Stop::Shutdown,
        }
        if hub.changes.receiver_count() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= IDLE_STOP {
                return Stop::Idle;
            }
            continue;
        }
        idle_since = None;
        let rate = hub.commands_per_second();
        let token = format!("{}-{:.1}", Snapshot::current(app).await.token(), rate);
        if token != last {
            // No receiver left between the check and now: nothing to tell.
            let _ = hub.changes.send(token.clone());
            last = token;
        }
    }
}

/// `GET /console/events`: `hello` with the current token, then `changed` with each new
/// one, until the server shuts down (or, in the API Lambda, `hello` alone).
pub(super) async fn events(State(app): State<App>) -> Response {
    let token = Snapshot::current(&app).await.token();
    let hello = Event::default().event("hello").data(token);
    let Some(shutdown) = app.console.shutdown.clone() else {
        let once = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
            hello.retry(LAMBDA_RETRY),
        )]);
        return Sse::new(once).into_response();
    };
    if *shutdown.borrow() {
        return Sse::new(futures_util::stream::empty::<
            Result<Event, std::convert::Infallible>,
        >())
        .into_response();
    }
    let changes = BroadcastStream::new(app.console.hub.changes.subscribe());
    ensure_ticker(&app);
    let changed = changes.map(|m| {
        let token = match m {
            Ok(token) => token,
            // Missed some: the page re-fetches everything it shows anyway.
            Err(BroadcastStreamRecvError::Lagged(_)) => "lagged".to_owned(),
        };
        Ok::<_, std::convert::Infallible>(Event::default().event("changed").data(token))
    });
    let stream = futures_util::stream::iter([Ok(hello.retry(Duration::from_secs(2)))])
        .chain(changed)
        .take_until(async move {
            let mut shutdown = shutdown;
            let _ = shutdown.wait_for(|down| *down).await;
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(received: u64) -> Snapshot {
        Snapshot {
            counts: Ok(vec![(Status::Received, received)]),
            lag: Figure::Value(0),
            parked: Figure::NotHere(NOT_IN_LAMBDA),
            queues: vec![QueueRow {
                name: "order-received".into(),
                stats: Ok((1, 0, 0)),
            }],
        }
    }

    #[test]
    fn equal_snapshots_have_equal_tokens_and_a_change_changes_the_token() {
        assert_eq!(snapshot(1).token(), snapshot(1).token());
        assert_ne!(snapshot(1).token(), snapshot(2).token());
    }

    #[test]
    fn the_command_rate_counts_accepted_commands_over_the_window() {
        let hub = Hub::default();
        assert_eq!(hub.commands_per_second(), 0.0, "no earlier sample yet");
        // An earlier sample, as the ticker would have taken a second ago.
        if let Ok(mut s) = hub.samples.lock() {
            s.clear();
            s.push_back((Instant::now() - Duration::from_secs(2), 0));
        }
        for _ in 0..10 {
            hub.command_accepted();
        }
        let rate = hub.commands_per_second();
        assert!((4.0..=5.1).contains(&rate), "{rate}");
    }
}
