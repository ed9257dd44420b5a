//! `orders bench`: the load generator for the order API.
//!
//! This file owns the benchmark client and nothing else. It drives order lifecycles
//! (`POST /orders` → `POST /orders/{id}/start` → `POST /orders/{id}/complete`) from many
//! concurrent workers, each on its own keep-alive HTTP/1.1 connection, against a running
//! `orders dev` (or anything that serves the same REST API), and reports throughput and
//! per-command latency (HdrHistogram, microsecond resolution). With `--rate` the load is open
//! loop on a fixed schedule, and latency is counted from when each command was due, so a slow
//! server cannot hide its stalls by slowing the client down (coordinated omission). With
//! `--e2e-sample N` it also measures, for every Nth lifecycle, the time from the `complete`
//! command's 2xx until the order's three handler documents are listed by
//! `GET /orders/{id}/documents` (issue 4).
//!
//! The CLI wires [`BenchArgs`] in as the `bench` subcommand and awaits [`run`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

/// Body of every `POST /orders`: fixed, so it is built once as a static `Bytes`.
const PLACE_BODY: &[u8] = br#"{"description":"bench order","customerId":"bench"}"#;
/// Body of `/start` and `/complete`: `{}` rather than nothing, so that a server which parses an
/// optional JSON body accepts it as well as one that ignores it.
const EMPTY_OBJECT: &[u8] = b"{}";
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Highest latency the histograms track: anything slower is clamped, and is a failure anyway.
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;
/// After a refused connection, wait this long before the next attempt so that a dead server
/// produces a clear error count instead of a CPU-bound reconnect loop.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Open loop: further behind schedule than this when the window closes means the target rate
/// was not held.
const LAG_TOLERANCE: Duration = Duration::from_millis(100);
/// Above this share of failed commands the run fails.
const MAX_ERROR_RATE: f64 = 0.01;

/// The handler documents an order has once it is completed: acknowledgement, work-started
/// notice, invoice.
const E2E_DOCUMENTS: usize = 3;
const E2E_POLL_INTERVAL: Duration = Duration::from_millis(1);
const E2E_LIMIT: Duration = Duration::from_secs(10);
/// Samples waiting for their first poll. Small on purpose: a sample that waits is one whose
/// first poll comes late, and a late first poll overstates the latency it measures.
const E2E_QUEUE: usize = 32;
/// A sample first polled later than this after its `complete` is dropped (and counted as
/// skipped) rather than recorded, for the same reason.
const E2E_STALE: Duration = Duration::from_millis(5);

/// `--drain`: between two polls of the pipeline's state.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// `--hot-orders`: connections that place the orders before the run and read their versions
/// after it.
const HOT_SETUP_CONNECTIONS: usize = 16;

/// Flags of `orders bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Base URL of the order API (only http://)
    #[arg(long, env = "ORDERS_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// Measured run time, in seconds
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,

    /// Unmeasured warm-up before the measured run, in seconds
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub warmup: u64,

    /// Concurrent workers, each with its own keep-alive connection
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// Target commands per second across all workers (open loop, latency counted from each
    /// command's scheduled time); without it, every worker sends as fast as it gets answers.
    /// Each worker sends every concurrency/rate seconds: keep that well above the 1 ms timer
    /// resolution
    #[arg(long, value_name = "COMMANDS_PER_SEC", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Print the summary as one JSON object instead of a table
    #[arg(long)]
    pub json: bool,

    /// For every Nth completed lifecycle, poll GET /orders/{id}/documents every 1 ms and
    /// measure the time from the `complete` 2xx until all 3 handler documents are listed
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub e2e_sample: Option<u64>,

    /// Per-request timeout, in seconds (a timed-out command counts as an error)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,

    /// Threads of the client's own runtime. 1 keeps the client on one core, leaving the other
    /// to a server on the same machine
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,

    /// After the window, poll the pipeline (GET /metrics, else /health) until the projector
    /// lag and every route queue's depth and in-flight count are 0, and report how long that
    /// took and how many documents were written since the run began against how many the
    /// successful commands imply. Also waits for an idle pipeline before the run. The run
    /// fails if the pipeline does not drain within --drain-timeout or documents are missing
    #[arg(long)]
    pub drain: bool,

    /// With --drain: how long to wait for the pipeline to drain, in seconds
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub drain_timeout: u64,

    /// Contention mode: place N orders first, then have every worker send revisions
    /// (PUT /orders/{id} with a new description) to them, picked on a Zipf-like skew
    /// (--hot-skew), instead of running lifecycles
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "e2e_sample",
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub hot_orders: Option<u64>,

    /// With --hot-orders: the Zipf exponent s (the k-th hottest order gets a share
    /// proportional to 1/k^s; 0 is uniform)
    #[arg(long, default_value_t = 1.0, value_name = "S", value_parser = parse_skew)]
    pub hot_skew: f64,
}

fn parse_skew(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(format!("expected an exponent between 0 and 10, got {s:?}")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "expected a positive number of commands per second, got {s:?}"
        )),
    }
}

/// Runs the benchmark, prints its summary, and fails when no command was measured or more than
/// 1% of the commands failed.
pub async fn run(args: BenchArgs) -> Result<()> {
    let json = args.json;
    let summary = on_bench_thread(args).await?;
    if json {
        println!("{}", summary.to_json());
    } else {
        print!("{summary}");
    }
    summary.verdict()
}

/// The client gets a runtime of its own on its own thread, whatever runtime the CLI awaits
/// `run` in: its thread count is then the client's CPU budget (`--threads`, default one, so a
/// server on the same 2-core machine keeps a core), a current-thread runtime spares the
/// client cross-thread wake-ups, and dropping the runtime at the end tears down connections
/// still waiting on a stuck server.
async fn on_bench_thread(args: BenchArgs) -> Result<Summary> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("orders-bench".into())
        .spawn(move || {
            let _ = tx.send(execute(args));
        })
        .context("cannot start the bench thread")?;
    rx.await.map_err(|_| anyhow!("the bench thread panicked"))?
}

fn execute(args: BenchArgs) -> Result<Summary> {
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads as usize);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the bench runtime")?;
    runtime.block_on(bench(args))
}

/// Where the commands go, resolved once so that reconnects cost no lookup.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    /// Path prefix from the URL, without a trailing slash ("" for a bare host).
    base_path: String,
}

impl Target {
    async fn resolve(url: &str) -> Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid --url {url:?}: expected http://HOST:PORT"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                bail!("invalid --url {url:?}: only http:// is supported, not {other}://")
            }
            None => bail!("invalid --url {url:?}: expected http://HOST:PORT"),
        }
        if uri.query().is_some() {
            bail!("invalid --url {url:?}: a query string is not supported");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("invalid --url {url:?}: no host"))?;
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(80);
        let addr =
            tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
                .await
                .with_context(|| format!("cannot resolve the host of --url {url}"))?
                .next()
                .ok_or_else(|| anyhow!("the host of --url {url} resolves to no address"))?;
        let host_header = match authority.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let host = HeaderValue::from_str(&host_header)
            .with_context(|| format!("invalid --url {url:?}: bad host"))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Target {
            addr,
            host,
            base_path,
        })
    }

    fn post(&self, uri: Uri, body: &'static [u8]) -> Request<Full<Bytes>> {
        self.write(Method::POST, uri, Bytes::from_static(body))
    }

    /// A write with a JSON body.
    fn write(&self, method: Method, uri: Uri, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::CONTENT_TYPE, JSON);
        req
    }

    fn get(&self, uri: Uri) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri;
        req.headers_mut().insert(header::HOST, self.host.clone());
        req
    }

    /// `{base}{path}`, for the operations routes.
    fn uri(&self, path: &str) -> Result<Uri> {
        Uri::from_maybe_shared(Bytes::from(format!("{}{path}", self.base_path)))
            .with_context(|| format!("bad path {}{path}", self.base_path))
    }

    /// `{base}/orders/{id}{suffix}`. The one allocation a command needs: a `Uri` owns its path.
    fn order_uri(&self, order_id: &str, suffix: &str) -> Option<Uri> {
        let mut path =
            String::with_capacity(self.base_path.len() + 8 + order_id.len() + suffix.len());
        path.push_str(&self.base_path);
        path.push_str("/orders/");
        path.push_str(order_id);
        path.push_str(suffix);
        Uri::from_maybe_shared(Bytes::from(path)).ok()
    }
}

/// Why a command failed; the key of the error counts in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ErrorKey {
    Status(u16),
    /// No connection could be opened.
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection failed while the command was on it.
    Io,
    /// A 2xx to `POST /orders` without an order id in it.
    BadResponse,
}

impl fmt::Display for ErrorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKey::Status(code) => write!(f, "{code}"),
            ErrorKey::Connect => f.write_str("connect"),
            ErrorKey::Timeout => f.write_str("timeout"),
            ErrorKey::Io => f.write_str("io"),
            ErrorKey::BadResponse => f.write_str("bad-response"),
        }
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn open(addr: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are small and latency is what is measured: never wait for Nagle.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // Connection errors reach the sender side as failed requests; nothing to do with them here.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One keep-alive connection, reopened when it drops.
struct Conn {
    addr: SocketAddr,
    timeout: Duration,
    sender: Option<Sender>,
}

impl Conn {
    fn new(addr: SocketAddr, timeout: Duration) -> Conn {
        Conn {
            addr,
            timeout,
            sender: None,
        }
    }

    /// Sends `req` and reads the whole answer (into `sink` if given, else discarded), so that
    /// the connection is ready for the next request.
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        sink: Option<&mut Vec<u8>>,
    ) -> Result<StatusCode, ErrorKey> {
        match tokio::time::timeout(self.timeout, self.send_inner(req, sink)).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(key)) => {
                self.sender = None;
                Err(key)
            }
            Err(_) => {
                // The answer may still come on this connection later; it must not be taken
                // for the next request's.
                self.sender = None;
                Err(ErrorKey::Timeout)
            }
        }
    }

    async fn send_inner(
        &mut self,
        req: Request<Full<Bytes>>,
        sink: Option<&mut Vec<u8>>,
    ) -> Result<StatusCode, ErrorKey> {
        let sender = self.ready().await?;
        let response = match sender.try_send_request(req).await {
            Ok(response) => response,
            Err(mut e) => match e.take_message() {
                // The server closed the idle connection before the request was written (the
                // keep-alive race every pooled client has): nothing was sent, so sending it on
                // a fresh connection is safe and is not a failed command.
                Some(req) => {
                    self.sender = None;
                    let sender = self.ready().await?;
                    sender.send_request(req).await.map_err(|_| ErrorKey::Io)?
                }
                None => return Err(ErrorKey::Io),
            },
        };
        let status = response.status();
        let mut body = response.into_body();
        let mut sink = sink;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ErrorKey::Io)?;
            if let (Some(buf), Some(data)) = (sink.as_deref_mut(), frame.data_ref()) {
                buf.extend_from_slice(data);
            }
        }
        Ok(status)
    }

    async fn ready(&mut self) -> Result<&mut Sender, ErrorKey> {
        // A connection the server closed after its last answer (`Connection: close`, idle
        // timeout, restart) shows up here, and is replaced without counting an error.
        let alive = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if alive {
            return self.sender.as_mut().ok_or(ErrorKey::Io);
        }
        self.sender = None;
        let sender = open(self.addr).await.map_err(|_| ErrorKey::Connect)?;
        Ok(self.sender.insert(sender))
    }
}

/// Puts the order id of a `POST /orders` answer (`{"message": ..., "order": {"orderId": ...}}`)
/// into `out`, without building a JSON tree for every placed order: order ids are 1..128 of
/// `[A-Za-z0-9._:-]`, which JSON never escapes, so the quoted value is the id itself, and the
/// order's is the only `"orderId"` key in that answer. Anything unexpected falls back to a
/// full parse.
fn extract_order_id(body: &[u8], out: &mut String) -> bool {
    let id = match scan_order_id(body) {
        Some(id) => id,
        None => match serde_json::from_slice::<Value>(body) {
            Ok(value) => match value.pointer("/order/orderId").and_then(Value::as_str) {
                Some(id) if is_order_id(id) => {
                    out.clear();
                    out.push_str(id);
                    return true;
                }
                _ => return false,
            },
            Err(_) => return false,
        },
    };
    out.clear();
    out.push_str(id);
    true
}

fn scan_order_id(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"orderId\"";
    let skip_ws = |mut i: usize| {
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut from = 0;
    while let Some(found) = body.get(from..)?.windows(KEY.len()).position(|w| w == KEY) {
        let key_end = from + found + KEY.len();
        from = key_end;
        let colon = skip_ws(key_end);
        if body.get(colon) != Some(&b':') {
            continue;
        }
        let quote = skip_ws(colon + 1);
        if body.get(quote) != Some(&b'"') {
            continue;
        }
        let start = quote + 1;
        let len = body[start..]
            .iter()
            .take_while(|b| is_order_id_byte(**b))
            .count();
        if body.get(start + len) == Some(&b'"') && (1..=128).contains(&len) {
            return std::str::from_utf8(&body[start..start + len]).ok();
        }
    }
    None
}

fn is_order_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(is_order_id_byte)
}

fn is_order_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// Number of entries in a `GET /orders/{id}/documents` answer (`{"items": [...]}`).
fn document_count(body: &[u8]) -> Option<usize> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get("items")?.as_array().map(Vec::len)
}

/// When a command was due, and where its latency is counted from.
#[derive(Debug, Clone, Copy)]
struct Tick {
    /// Its place on the schedule (closed loop: when it was sent). Lifecycles are attributed to
    /// warm-up or measurement by the slot of their first command.
    slot: Instant,
    /// Start of its latency.
    origin: Instant,
}

enum Pacer {
    /// Send as soon as the previous answer is in.
    Closed,
    /// A fixed schedule: one command every `interval`.
    Open { next: Instant, interval: Duration },
}

impl Pacer {
    /// When the next command is due, without waiting for it.
    fn next_slot(&self) -> Instant {
        match self {
            Pacer::Closed => Instant::now(),
            Pacer::Open { next, .. } => *next,
        }
    }

    async fn tick(&mut self) -> Tick {
        match self {
            Pacer::Closed => {
                let now = Instant::now();
                Tick {
                    slot: now,
                    origin: now,
                }
            }
            Pacer::Open { next, interval } => {
                let slot = *next;
                *next += *interval;
                if Instant::now() < slot {
                    sleep_until(slot).await;
                    // Tokio's timer wakes up to a millisecond late. That delay is the
                    // client's, not the server's (nothing was waiting on the server), so the
                    // latency starts at the actual send.
                    let now = Instant::now();
                    Tick { slot, origin: now }
                } else {
                    // Behind schedule because earlier answers were slow: send at once, and
                    // count the wait since the slot against the server (coordinated omission).
                    Tick { slot, origin: slot }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Place = 0,
    Start = 1,
    Complete = 2,
    /// `--hot-orders`: `PUT /orders/{id}` with a new description.
    Revise = 3,
}

/// Commands by [`Step`].
const STEPS: usize = 4;

/// What one worker measured; merged into the summary at the end, so workers share nothing
/// on the hot path.
struct WorkerStats {
    latency: Histogram<u64>,
    sent: [u64; STEPS],
    ok: [u64; STEPS],
    /// Successful commands, warm-up included: what the server must have written for them
    /// (`--drain` compares the documents with it, `--hot-orders` the versions).
    ok_all: [u64; STEPS],
    errors: BTreeMap<ErrorKey, u64>,
    lifecycles: u64,
    /// `--hot-orders`: measured picks, and those of the hottest order.
    hot_picks: u64,
    hottest_picks: u64,
    last_done: Option<Instant>,
    /// How far behind its schedule the worker was when the window closed (open loop).
    lag_at_end: Duration,
}

impl WorkerStats {
    fn new(latency: Histogram<u64>) -> WorkerStats {
        WorkerStats {
            latency,
            sent: [0; STEPS],
            ok: [0; STEPS],
            ok_all: [0; STEPS],
            errors: BTreeMap::new(),
            lifecycles: 0,
            hot_picks: 0,
            hottest_picks: 0,
            last_done: None,
            lag_at_end: Duration::ZERO,
        }
    }

    fn record(
        &mut self,
        step: Step,
        origin: Instant,
        done: Instant,
        outcome: Result<(), ErrorKey>,
    ) {
        self.sent[step as usize] += 1;
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        match outcome {
            Ok(()) => {
                self.ok[step as usize] += 1;
                self.latency
                    .saturating_record(micros(done.saturating_duration_since(origin)));
            }
            Err(key) => *self.errors.entry(key).or_default() += 1,
        }
    }

    fn merge(&mut self, other: WorkerStats) -> Result<()> {
        self.latency
            .add(&other.latency)
            .map_err(|e| anyhow!("cannot merge latency histograms: {e:?}"))?;
        for i in 0..STEPS {
            self.sent[i] += other.sent[i];
            self.ok[i] += other.ok[i];
            self.ok_all[i] += other.ok_all[i];
        }
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
        self.lifecycles += other.lifecycles;
        self.hot_picks += other.hot_picks;
        self.hottest_picks += other.hottest_picks;
        self.lag_at_end = self.lag_at_end.max(other.lag_at_end);
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Read-only run parameters plus the few counters that must be global.
struct Shared {
    target: Arc<Target>,
    place_uri: Uri,
    timeout: Duration,
    measure_start: Instant,
    end: Instant,
    /// Set by Ctrl-C: no new lifecycles.
    stop: AtomicBool,
    e2e_every: Option<u64>,
    /// Completed measured lifecycles, to pick every Nth for an end-to-end sample.
    e2e_seq: AtomicU64,
    e2e_selected: AtomicU64,
    e2e_skipped: AtomicU64,
    /// The server has no documents route: stop sampling.
    e2e_off: AtomicBool,
    /// `--hot-orders`: workers revise these instead of running lifecycles.
    hot: Option<HotOrders>,
}

struct Sample {
    documents: Uri,
    completed_at: Instant,
}

struct Worker {
    shared: Arc<Shared>,
    conn: Conn,
    pacer: Pacer,
    body: Vec<u8>,
    order_id: String,
    stats: WorkerStats,
    e2e: Option<mpsc::Sender<Sample>>,
    /// `--hot-orders`: picks the order of each revision.
    rng: SplitMix64,
    /// Makes every revision's description unique, so that every one appends an event.
    revision: u64,
    id: u32,
}

impl Worker {
    async fn run(mut self) -> WorkerStats {
        while !self.shared.stop.load(Ordering::Relaxed) {
            let due = self.pacer.next_slot();
            let now = Instant::now();
            if due >= self.shared.end {
                break;
            }
            if now >= self.shared.end {
                // Open loop behind schedule when the window closes: the backlog is not worked
                // off (that would stretch the run without bound); how far behind is reported.
                self.stats.lag_at_end = now.saturating_duration_since(due);
                break;
            }
            let first = self.pacer.tick().await;
            // A lifecycle that starts in the measured window is measured whole, even the
            // commands it sends after the window closes, so that every measured lifecycle is
            // three measured commands.
            let counted = first.slot >= self.shared.measure_start;
            if self.shared.hot.is_some() {
                if let Err(ErrorKey::Connect) = self.revise(first, counted).await {
                    sleep(RECONNECT_BACKOFF).await;
                }
                continue;
            }
            match self.lifecycle(first, counted).await {
                Ok(completed_at) if counted => {
                    self.stats.lifecycles += 1;
                    self.maybe_sample(completed_at);
                }
                Ok(_) => {}
                Err(ErrorKey::Connect) => sleep(RECONNECT_BACKOFF).await,
                Err(_) => {}
            }
        }
        self.stats
    }

    /// Place, start, complete; stops at the first failure. Returns when `complete`'s 2xx came.
    async fn lifecycle(&mut self, first: Tick, counted: bool) -> Result<Instant, ErrorKey> {
        let place = self
            .shared
            .target
            .post(self.shared.place_uri.clone(), PLACE_BODY);
        self.command(Step::Place, first, counted, place).await?;
        for (step, suffix) in [(Step::Start, "/start"), (Step::Complete, "/complete")] {
            let tick = self.pacer.tick().await;
            let uri = self
                .shared
                .target
                .order_uri(&self.order_id, suffix)
                .ok_or(ErrorKey::BadResponse)?;
            let req = self.shared.target.post(uri, EMPTY_OBJECT);
            let done = self.command(step, tick, counted, req).await?;
            if step == Step::Complete {
                return Ok(done);
            }
        }
        Err(ErrorKey::BadResponse)
    }

    /// `--hot-orders`: one revision of an order picked on the skew.
    async fn revise(&mut self, tick: Tick, counted: bool) -> Result<Instant, ErrorKey> {
        let shared = self.shared.clone();
        let Some(hot) = shared.hot.as_ref() else {
            return Err(ErrorKey::BadResponse);
        };
        let rank = hot.zipf.pick(self.rng.next_f64());
        if counted {
            self.stats.hot_picks += 1;
            self.stats.hottest_picks += u64::from(rank == 0);
        }
        let uri = shared
            .target
            .order_uri(&hot.ids[rank], "")
            .ok_or(ErrorKey::BadResponse)?;
        self.revision += 1;
        let body = format!(
            r#"{{"description":"bench revision {}.{}"}}"#,
            self.id, self.revision
        );
        let req = shared.target.write(Method::PUT, uri, Bytes::from(body));
        self.command(Step::Revise, tick, counted, req).await
    }

    async fn command(
        &mut self,
        step: Step,
        tick: Tick,
        counted: bool,
        req: Request<Full<Bytes>>,
    ) -> Result<Instant, ErrorKey> {
        self.body.clear();
        let sink = (step == Step::Place).then_some(&mut self.body);
        let result = self.conn.send(req, sink).await;
        let done = Instant::now();
        let outcome = match result {
            Ok(status) if status.is_success() => {
                if step == Step::Place && !extract_order_id(&self.body, &mut self.order_id) {
                    Err(ErrorKey::BadResponse)
                } else {
                    Ok(())
                }
            }
            Ok(status) => Err(ErrorKey::Status(status.as_u16())),
            Err(key) => Err(key),
        };
        if outcome.is_ok() {
            self.stats.ok_all[step as usize] += 1;
        }
        if counted {
            self.stats.record(step, tick.origin, done, outcome);
        }
        outcome.map(|()| done)
    }

    fn maybe_sample(&mut self, completed_at: Instant) {
        let (Some(every), Some(tx)) = (self.shared.e2e_every, &self.e2e) else {
            return;
        };
        if self.shared.e2e_off.load(Ordering::Relaxed)
            || !self
                .shared
                .e2e_seq
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every)
        {
            return;
        }
        let Some(documents) = self.shared.target.order_uri(&self.order_id, "/documents") else {
            return;
        };
        self.shared.e2e_selected.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(Sample {
            documents,
            completed_at,
        }) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            // Never block a worker on the sampler: the command load must not change because
            // the sampler is busy.
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.e2e_skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What the end-to-end sampler measured.
struct E2eStats {
    latency: Histogram<u64>,
    /// Samples whose documents were all listed in time.
    measured: u64,
    /// Samples still short of the documents after `E2E_LIMIT`.
    timed_out: u64,
    /// Samples dropped because their first poll would have come too late.
    stale: u64,
    /// Polls answered with an error (other than 404) or lost; the sample is polled again.
    poll_errors: u64,
    /// The documents route answered 404: the server does not have it yet.
    unavailable: bool,
}

/// Polls the documents of sampled orders on a connection of its own, so that the measured
/// workers' command stream is the same with or without sampling. One sequential poller over
/// all pending samples is enough at the sample rates this is meant for, and it keeps the
/// poll load bounded.
async fn sampler(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Sample>,
    latency: Histogram<u64>,
) -> E2eStats {
    let mut stats = E2eStats {
        latency,
        measured: 0,
        timed_out: 0,
        stale: 0,
        poll_errors: 0,
        unavailable: false,
    };
    let mut conn = Conn::new(shared.target.addr, shared.timeout);
    let mut pending: Vec<Sample> = Vec::new();
    let mut body = Vec::with_capacity(4096);
    let admit = |sample: Sample, pending: &mut Vec<Sample>, stats: &mut E2eStats| {
        if sample.completed_at.elapsed() > E2E_STALE {
            stats.stale += 1;
        } else {
            pending.push(sample);
        }
    };
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(sample) => admit(sample, &mut pending, &mut stats),
                None => break,
            }
        }
        while let Ok(sample) = rx.try_recv() {
            admit(sample, &mut pending, &mut stats);
        }
        let round = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            body.clear();
            let req = shared.target.get(pending[i].documents.clone());
            let result = conn.send(req, Some(&mut body)).await;
            let now = Instant::now();
            match result {
                Ok(StatusCode::NOT_FOUND) => {
                    // The order exists (its `complete` just succeeded), so a 404 means the
                    // route does not: the server predates the handlers.
                    stats.unavailable = true;
                    shared.e2e_off.store(true, Ordering::Relaxed);
                    eprintln!(
                        "note: GET /orders/{{id}}/documents answered 404: end-to-end \
                         latency is not available from this server; sampling stopped"
                    );
                    rx.close();
                    return stats;
                }
                Ok(status) if status.is_success() => {
                    if document_count(&body).is_some_and(|n| n >= E2E_DOCUMENTS) {
                        let waited = now.saturating_duration_since(pending[i].completed_at);
                        stats.latency.saturating_record(micros(waited));
                        stats.measured += 1;
                        pending.swap_remove(i);
                        continue;
                    }
                }
                Ok(_) | Err(_) => stats.poll_errors += 1,
            }
            if now.saturating_duration_since(pending[i].completed_at) > E2E_LIMIT {
                stats.timed_out += 1;
                pending.swap_remove(i);
                continue;
            }
            i += 1;
        }
        if !pending.is_empty() {
            sleep_until(round + E2E_POLL_INTERVAL).await;
        }
    }
    stats
}

// ---- The pipeline's own figures: `/metrics` (Prometheus text), else `/health`.

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// One scrape of `GET /metrics`: every sample, by metric name.
#[derive(Debug, Clone, Default, PartialEq)]
struct Metrics {
    samples: BTreeMap<String, Vec<(Labels, f64)>>,
    /// Lines that were neither a sample, a comment nor blank.
    skipped: usize,
}

impl Metrics {
    /// Parses the Prometheus text format: `name{label="value",...} value [timestamp]` lines;
    /// `#` lines (HELP, TYPE, comments) and blank lines are skipped, and so is, counted in
    /// `skipped`, any line that does not parse, so that a format extension never stops a run.
    fn parse(text: &str) -> Metrics {
        let mut metrics = Metrics::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_sample(line) {
                Some((name, labels, value)) => metrics
                    .samples
                    .entry(name)
                    .or_default()
                    .push((labels, value)),
                None => metrics.skipped += 1,
            }
        }
        metrics
    }

    /// The metric's value summed over all its label sets (a counter split by label counts
    /// as its total); `None` if it is absent.
    fn total(&self, name: &str) -> Option<f64> {
        self.samples
            .get(name)
            .map(|samples| samples.iter().map(|(_, v)| v).sum())
    }

    /// The metric's values by one label's value (summed over the other labels).
    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (labels, value) in self.samples.get(name).into_iter().flatten() {
            if let Some((_, v)) = labels.iter().find(|(k, _)| k == label) {
                *out.entry(v.clone()).or_insert(0.0) += value;
            }
        }
        out
    }
}

fn is_metric_name(s: &str, first_colon_ok: bool) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || (first_colon_ok && b == b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || (first_colon_ok && b == b':'))
}

/// One sample line; `None` if it is malformed.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name, true) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim();
            if !is_metric_name(key, false) {
                return None;
            }
            rest = rest[eq + 1..].trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_owned(), value));
            rest = rest[end + 1..].trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after,
                None if rest.starts_with('}') => {}
                None => return None,
            }
        }
    } else if !rest.is_empty() && !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = match fields.next()? {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    labels.sort();
    Some((name.to_owned(), labels, value))
}

/// The metric names `orders bench` reads (see the command API's `/metrics`).
mod metric {
    pub const DOCUMENTS: &str = "orders_documents_written_total";
    pub const LAG: &str = "orders_projector_lag";
    pub const DEPTH: &str = "orders_queue_depth";
    pub const IN_FLIGHT: &str = "orders_queue_in_flight";
    pub const DEAD_LETTERS: &str = "orders_queue_dead_letters";
    pub const CPU: &str = "orders_process_cpu_seconds_total";
    pub const TRANSACTIONS: &str = "orders_writer_transactions_total";
    pub const FSYNCS: &str = "orders_writer_fsyncs_total";
    pub const STAGE_CPU: &str = "orders_stage_cpu_seconds_total";
}

/// Where the pipeline figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Metrics,
    /// The server has no `/metrics` (an older release): lag and depths only.
    Health,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Metrics => "metrics",
            Source::Health => "health",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct QueueGauge {
    depth: f64,
    in_flight: f64,
    dead_letters: Option<f64>,
}

/// The pipeline at one instant.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    source: Source,
    /// Events written but not yet projected and published.
    lag: Option<f64>,
    queues: BTreeMap<String, QueueGauge>,
    /// The whole scrape (`Source::Metrics` only), for the counters.
    metrics: Option<Metrics>,
}

impl Snapshot {
    fn from_metrics(metrics: Metrics, at: Instant) -> Snapshot {
        let mut queues: BTreeMap<String, QueueGauge> = BTreeMap::new();
        for (queue, depth) in metrics.by_label(metric::DEPTH, "queue") {
            queues.entry(queue).or_default().depth = depth;
        }
        for (queue, n) in metrics.by_label(metric::IN_FLIGHT, "queue") {
            queues.entry(queue).or_default().in_flight = n;
        }
        for (queue, n) in metrics.by_label(metric::DEAD_LETTERS, "queue") {
            queues.entry(queue).or_default().dead_letters = Some(n);
        }
        Snapshot {
            at,
            source: Source::Metrics,
            lag: metrics.total(metric::LAG),
            queues,
            metrics: Some(metrics),
        }
    }

    /// `GET /health`: `{"projectorLag": n, "queues": [{queue, depth, inFlight, deadLetters}]}`.
    fn from_health(body: &[u8], at: Instant) -> Option<Snapshot> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_f64);
        let mut queues = BTreeMap::new();
        for q in value
            .get("queues")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = q.get("queue").and_then(Value::as_str)?;
            let gauge = QueueGauge {
                depth: number(q, "depth").unwrap_or(0.0),
                in_flight: number(q, "inFlight").unwrap_or(0.0),
                dead_letters: number(q, "deadLetters"),
            };
            queues.insert(name.to_owned(), gauge);
        }
        Some(Snapshot {
            at,
            source: Source::Health,
            lag: number(&value, "projectorLag"),
            queues,
            metrics: None,
        })
    }

    /// Whether the server reports a pipeline at all (an API-only process reports none).
    fn observable(&self) -> bool {
        self.lag.is_some() || !self.queues.is_empty()
    }

    /// Work not yet done: the projector lag plus every queue's waiting and in-flight messages.
    fn backlog(&self) -> f64 {
        self.lag.unwrap_or(0.0)
            + self
                .queues
                .values()
                .map(|q| q.depth + q.in_flight)
                .sum::<f64>()
    }

    /// Over the queues that report them.
    fn dead_letters(&self) -> Option<f64> {
        let known: Vec<f64> = self
            .queues
            .values()
            .filter_map(|q| q.dead_letters)
            .collect();
        (!known.is_empty()).then(|| known.iter().sum())
    }
}

/// How a counter moved from one scrape to the next: `None` if the later scrape lacks it or
/// it went down (the server restarted). A counter the earlier scrape lacks counts from 0:
/// exporters often show a counter only once it has counted something.
fn counter_delta(start: &Metrics, end: &Metrics, name: &str) -> Option<f64> {
    let to = end.total(name)?;
    let delta = to - start.total(name).unwrap_or(0.0);
    (delta >= 0.0).then_some(delta)
}

/// The server's counters over the measured window.
#[derive(Debug, Clone, PartialEq)]
struct WindowFigures {
    /// Between the two scrapes.
    secs: f64,
    /// The measured commands the per-command figures divide by.
    commands: u64,
    documents: Option<f64>,
    transactions: Option<f64>,
    fsyncs: Option<f64>,
    cpu_seconds: Option<f64>,
    stage_cpu_seconds: BTreeMap<String, f64>,
    /// Counters whose name speaks of conflicts or races (version races retried inside the
    /// server), if it exports any.
    conflicts: BTreeMap<String, f64>,
}

impl WindowFigures {
    fn between(start: &Metrics, end: &Metrics, secs: f64, commands: u64) -> WindowFigures {
        let start_stages = start.by_label(metric::STAGE_CPU, "stage");
        let stage_cpu_seconds = end
            .by_label(metric::STAGE_CPU, "stage")
            .into_iter()
            .filter_map(|(stage, to)| {
                let delta = to - start_stages.get(&stage).copied().unwrap_or(0.0);
                (delta >= 0.0).then_some((stage, delta))
            })
            .collect();
        let conflicts = end
            .samples
            .keys()
            .filter(|name| {
                name.ends_with("_total") && (name.contains("conflict") || name.contains("race"))
            })
            .filter_map(|name| Some((name.clone(), counter_delta(start, end, name)?)))
            .collect();
        WindowFigures {
            secs,
            commands,
            documents: counter_delta(start, end, metric::DOCUMENTS),
            transactions: counter_delta(start, end, metric::TRANSACTIONS),
            fsyncs: counter_delta(start, end, metric::FSYNCS),
            cpu_seconds: counter_delta(start, end, metric::CPU),
            stage_cpu_seconds,
            conflicts,
        }
    }

    fn per_sec(&self, n: Option<f64>) -> Option<f64> {
        n.filter(|_| self.secs > 0.0).map(|n| n / self.secs)
    }

    fn per_command(&self, n: Option<f64>) -> Option<f64> {
        n.filter(|_| self.commands > 0)
            .map(|n| n / self.commands as f64)
    }

    /// Server CPU per measured command, in microseconds.
    fn cpu_micros_per_command(&self) -> Option<f64> {
        self.per_command(self.cpu_seconds).map(|s| s * 1e6)
    }

    fn stage_micros_per_command(&self) -> BTreeMap<String, f64> {
        self.stage_cpu_seconds
            .iter()
            .filter_map(|(stage, s)| Some((stage.clone(), self.per_command(Some(*s))? * 1e6)))
            .collect()
    }
}

/// Reads the pipeline's state on a connection of its own.
struct Probe {
    conn: Conn,
    host: HeaderValue,
    metrics: Uri,
    health: Uri,
    /// Decided by the first answer: `/metrics`, or `/health` when it is absent.
    source: Option<Source>,
    body: Vec<u8>,
}

impl Probe {
    fn new(target: &Target, timeout: Duration) -> Result<Probe> {
        Ok(Probe {
            conn: Conn::new(target.addr, timeout),
            host: target.host.clone(),
            metrics: target.uri("/metrics")?,
            health: target.uri("/health")?,
            source: None,
            body: Vec::with_capacity(16 * 1024),
        })
    }

    async fn get(&mut self, uri: Uri) -> Result<StatusCode> {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri.clone();
        req.headers_mut().insert(header::HOST, self.host.clone());
        self.body.clear();
        self.conn
            .send(req, Some(&mut self.body))
            .await
            .map_err(|key| anyhow!("GET {uri} failed: {key}"))
    }

    /// The pipeline now; `Ok(None)` if the server has neither `/metrics` nor `/health`.
    async fn snapshot(&mut self) -> Result<Option<Snapshot>> {
        if self.source != Some(Source::Health) {
            let status = self.get(self.metrics.clone()).await?;
            let at = Instant::now();
            if status.is_success() {
                self.source = Some(Source::Metrics);
                let text = String::from_utf8_lossy(&self.body);
                return Ok(Some(Snapshot::from_metrics(Metrics::parse(&text), at)));
            }
            if self.source.is_some() || status != StatusCode::NOT_FOUND {
                bail!("GET /metrics answered {status}");
            }
            self.source = Some(Source::Health);
        }
        let status = self.get(self.health.clone()).await?;
        let at = Instant::now();
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Snapshot::from_health(&self.body, at)
                .map(Some)
                .ok_or_else(|| anyhow!("GET /health answered what is not its JSON")),
            s => bail!("GET /health answered {s}"),
        }
    }

    /// Polls until the pipeline is idle or `limit` passes; returns the last snapshot.
    async fn until_idle(&mut self, limit: Duration) -> Result<Option<Snapshot>> {
        let deadline = Instant::now() + limit;
        loop {
            let Some(snapshot) = self.snapshot().await? else {
                return Ok(None);
            };
            if !snapshot.observable() || snapshot.backlog() == 0.0 || snapshot.at >= deadline {
                return Ok(Some(snapshot));
            }
            sleep(DRAIN_POLL_INTERVAL).await;
        }
    }
}

// ---- `--hot-orders`: contention on a few orders.

/// Zipf-like ranks 0..n: rank k is picked with a probability proportional to 1/(k+1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .scan(0.0, |sum, k| {
                *sum += (k as f64).powf(-s);
                Some(*sum)
            })
            .collect();
        let total = cdf.last().copied().unwrap_or(1.0);
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// The rank for a uniform `u` in [0, 1).
    fn pick(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// SplitMix64: enough randomness for picking orders, with no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The orders `--hot-orders` writes to, hottest first.
struct HotOrders {
    ids: Vec<String>,
    zipf: Zipf,
}

/// Runs `n` jobs over up to `connections` connections; job `i` gets its connection and `i`.
async fn on_connections<T, F, Fut>(
    target: &Arc<Target>,
    timeout: Duration,
    connections: usize,
    n: usize,
    job: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Arc<Target>, Conn, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (Conn, Result<T>)> + Send + 'static,
{
    let connections = connections.clamp(1, n.max(1));
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (target, job) = (target.clone(), job.clone());
            tokio::spawn(async move {
                let mut conn = Conn::new(target.addr, timeout);
                let mut out = Vec::new();
                for i in (c..n).step_by(connections) {
                    let (back, result) = job(target.clone(), conn, i).await;
                    conn = back;
                    out.push((i, result?));
                }
                anyhow::Ok(out)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await.context("a bench task failed")??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Places the hot orders before the run.
async fn place_hot_orders(
    target: &Arc<Target>,
    timeout: Duration,
    connections: usize,
    n: usize,
) -> Result<Vec<String>> {
    let place_uri = target.uri("/orders")?;
    on_connections(
        target,
        timeout,
        connections,
        n,
        move |target, mut conn, _| {
            let uri = place_uri.clone();
            async move {
                let mut body = Vec::new();
                let result = match conn
                    .send(target.post(uri, PLACE_BODY), Some(&mut body))
                    .await
                {
                    Ok(status) if status.is_success() => {
                        let mut id = String::new();
                        if extract_order_id(&body, &mut id) {
                            Ok(id)
                        } else {
                            Err(anyhow!(
                                "POST /orders answered {status} without an order id"
                            ))
                        }
                    }
                    Ok(status) => Err(anyhow!(
                        "POST /orders answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(key) => Err(anyhow!("POST /orders failed: {key}")),
                };
                (conn, result.context("cannot place the --hot-orders orders"))
            }
        },
    )
    .await
}

/// The hot orders' versions after the run (`GET /orders/{id}`).
async fn hot_versions(
    target: &Arc<Target>,
    timeout: Duration,
    connections: usize,
    ids: Arc<Vec<String>>,
) -> Result<Vec<u64>> {
    let n = ids.len();
    on_connections(
        target,
        timeout,
        connections,
        n,
        move |target, mut conn, i| {
            let ids = ids.clone();
            async move {
                let mut body = Vec::new();
                let result = match target.order_uri(&ids[i], "") {
                    None => Err(anyhow!("bad order id {}", ids[i])),
                    Some(uri) => match conn.send(target.get(uri), Some(&mut body)).await {
                        Ok(status) if status.is_success() => serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v.get("version")?.as_u64())
                            .ok_or_else(|| anyhow!("GET /orders/{} has no version", ids[i])),
                        Ok(status) => Err(anyhow!("GET /orders/{} answered {status}", ids[i])),
                        Err(key) => Err(anyhow!("GET /orders/{} failed: {key}", ids[i])),
                    },
                };
                (conn, result)
            }
        },
    )
    .await
}

async fn bench(args: BenchArgs) -> Result<Summary> {
    let target = Arc::new(Target::resolve(&args.url).await?);
    let timeout = Duration::from_secs(args.timeout);
    match tokio::time::timeout(timeout, open(target.addr)).await {
        Ok(Ok(_probe)) => {}
        Ok(Err(e)) => bail!(
            "cannot connect to {} ({}): {e:#}: is `orders dev` running?",
            args.url,
            target.addr
        ),
        Err(_) => bail!(
            "cannot connect to {}: no answer within {} s: is `orders dev` running?",
            args.url,
            args.timeout
        ),
    }
    let histogram = Histogram::<u64>::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
        .map_err(|e| anyhow!("cannot create a latency histogram: {e:?}"))?;
    let place_uri = Uri::from_maybe_shared(Bytes::from(format!("{}/orders", target.base_path)))
        .with_context(|| format!("invalid --url {:?}: bad path", args.url))?;

    let concurrency = args.concurrency.max(1);
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} commands/s"),
        None => "closed loop".to_owned(),
    };
    let workload = match args.hot_orders {
        Some(n) => format!(", revising {n} hot orders (Zipf s={})", args.hot_skew),
        None => String::new(),
    };
    eprintln!(
        "bench: {} with {concurrency} connections, {mode}{workload}: {} s warm-up, then {} s \
         measured",
        args.url, args.warmup, args.duration
    );

    // The hot orders exist before anything is measured.
    let hot = match args.hot_orders {
        Some(n) => {
            let n = usize::try_from(n).context("--hot-orders is too large")?;
            let ids = place_hot_orders(&target, timeout, HOT_SETUP_CONNECTIONS, n).await?;
            Some(HotOrders {
                ids,
                zipf: Zipf::new(n, args.hot_skew),
            })
        }
        None => None,
    };

    // The pipeline before the run. With --drain it must be idle first, so that every document
    // written from here on is one of this run's.
    let mut probe = Probe::new(&target, timeout)?;
    let drain_limit = Duration::from_secs(args.drain_timeout);
    let baseline = if args.drain {
        let idle = probe
            .until_idle(drain_limit)
            .await
            .context("--drain: cannot read the pipeline's state")?;
        match idle {
            None => bail!("--drain: the server has neither /metrics nor /health"),
            Some(s) if !s.observable() => {
                bail!("--drain: the server reports no pipeline (projector lag, route queues)")
            }
            Some(s) if s.backlog() > 0.0 => bail!(
                "--drain: the pipeline was still busy before the run ({} pending after {} s); \
                 wait for it or raise --drain-timeout",
                s.backlog(),
                args.drain_timeout
            ),
            Some(s) => Ok(s),
        }
    } else {
        scrape(&mut probe).await
    };
    if let Err(why) = &baseline {
        eprintln!("bench: note: pipeline figures unavailable: {why}");
    } else if probe.source == Some(Source::Health) {
        eprintln!(
            "bench: note: GET /metrics answered 404: projector lag and queue depths come from \
             /health; documents/s, transactions, fsyncs and server CPU are unavailable"
        );
    }

    let t0 = Instant::now();
    let measure_start = t0 + Duration::from_secs(args.warmup);
    let shared = Arc::new(Shared {
        target,
        place_uri,
        timeout,
        measure_start,
        end: measure_start + Duration::from_secs(args.duration),
        stop: AtomicBool::new(false),
        e2e_every: args.e2e_sample,
        e2e_seq: AtomicU64::new(0),
        e2e_selected: AtomicU64::new(0),
        e2e_skipped: AtomicU64::new(0),
        e2e_off: AtomicBool::new(false),
        hot,
    });

    // The pipeline when the measured window opens: without a warm-up that is the baseline,
    // taken just before the first command.
    let start_task = {
        let first = baseline.clone();
        let warmup = args.warmup;
        tokio::spawn(async move {
            if warmup == 0 || first.is_err() {
                return (probe, first);
            }
            sleep_until(measure_start).await;
            let start = scrape(&mut probe).await;
            (probe, start)
        })
    };

    let (e2e_tx, sampler_task) = match args.e2e_sample {
        Some(_) => {
            let (tx, rx) = mpsc::channel(E2E_QUEUE);
            let task = tokio::spawn(sampler(shared.clone(), rx, histogram.clone()));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };

    let workers: Vec<JoinHandle<WorkerStats>> = (0..concurrency)
        .map(|i| {
            let pacer = match args.rate {
                None => Pacer::Closed,
                // Each worker sends rate/concurrency commands per second; the schedules are
                // staggered by 1/rate so that the workers do not fire in bursts.
                Some(rate) => Pacer::Open {
                    next: t0 + Duration::from_secs_f64(f64::from(i) / rate),
                    interval: Duration::from_secs_f64(f64::from(concurrency) / rate),
                },
            };
            let worker = Worker {
                shared: shared.clone(),
                conn: Conn::new(shared.target.addr, timeout),
                pacer,
                body: Vec::with_capacity(1024),
                order_id: String::with_capacity(64),
                stats: WorkerStats::new(histogram.clone()),
                e2e: e2e_tx.clone(),
                rng: SplitMix64(u64::from(i).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED),
                revision: 0,
                id: i,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    // The sampler ends once every worker has dropped its sender and the last sample is done.
    drop(e2e_tx);

    let interrupt = {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("bench: interrupted, finishing the lifecycles in flight");
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let mut totals = WorkerStats::new(histogram);
    for worker in workers {
        totals.merge(worker.await.context("a bench worker failed")?)?;
    }
    let e2e = match sampler_task {
        Some(task) => Some(task.await.context("the end-to-end sampler failed")?),
        None => None,
    };
    interrupt.abort();

    // The pipeline when the last measured command was answered.
    let (mut probe, start) = start_task.await.context("the pipeline probe failed")?;
    let end = match &start {
        Ok(_) => scrape(&mut probe).await,
        Err(why) => Err(why.clone()),
    };
    let measured: u64 = totals.sent.iter().sum();
    let pipeline = match (start, end) {
        (Ok(start), Ok(end)) => {
            let figures = match (&start.metrics, &end.metrics) {
                (Some(a), Some(b)) => {
                    let secs = end.at.saturating_duration_since(start.at).as_secs_f64();
                    Some(WindowFigures::between(a, b, secs, measured))
                }
                _ => None,
            };
            Ok(PipelineWindow {
                start,
                end,
                figures,
            })
        }
        (Err(why), _) | (_, Err(why)) => Err(why),
    };

    let drain = match (args.drain, &baseline, &pipeline) {
        (false, _, _) => None,
        (true, Ok(baseline), Ok(window)) => {
            let last = if window.end.backlog() == 0.0 {
                Ok(Some(window.end.clone()))
            } else {
                probe.until_idle(drain_limit).await
            };
            Some(DrainReport::new(
                baseline,
                &window.end,
                last,
                drain_limit,
                &totals,
            ))
        }
        (true, _, Err(why)) | (true, Err(why), _) => Some(DrainReport::failed(
            format!("cannot read the pipeline's state: {why}"),
            drain_limit,
            &totals,
        )),
    };

    let hot = match &shared.hot {
        Some(hot) => {
            let ids = Arc::new(hot.ids.clone());
            let versions = hot_versions(&shared.target, timeout, HOT_SETUP_CONNECTIONS, ids).await;
            Some(HotReport {
                orders: hot.ids.len() as u64,
                skew: args.hot_skew,
                picks: totals.hot_picks,
                hottest_picks: totals.hottest_picks,
                revisions_ok: totals.ok_all[Step::Revise as usize],
                // Placing wrote version 1; each applied revision appended one event.
                revisions_applied: versions
                    .map(|v| v.iter().map(|v| v.saturating_sub(1)).sum())
                    .map_err(|e| format!("{e:#}")),
            })
        }
        None => None,
    };

    // Every measured command was sent at or after `measure_start` and answered by `last_done`,
    // so this span holds all of them: rates over it are never flattering.
    let elapsed = totals.last_done.map_or(Duration::ZERO, |d| {
        d.saturating_duration_since(measure_start)
    });
    Ok(Summary {
        url: args.url,
        concurrency,
        target_rate: args.rate,
        warmup: args.warmup,
        elapsed,
        interrupted: shared.stop.load(Ordering::Relaxed),
        sent: totals.sent,
        ok: totals.ok,
        lifecycles: totals.lifecycles,
        lag_at_end: totals.lag_at_end,
        errors: totals.errors,
        latency: totals.latency,
        e2e: e2e.map(|stats| E2eSummary {
            every: args.e2e_sample.unwrap_or(1),
            selected: shared.e2e_selected.load(Ordering::Relaxed),
            skipped: shared.e2e_skipped.load(Ordering::Relaxed) + stats.stale,
            stats,
        }),
        pipeline,
        drain,
        hot,
    })
}

/// One reading of the pipeline, or why there is none.
async fn scrape(probe: &mut Probe) -> Result<Snapshot, String> {
    match probe.snapshot().await {
        Ok(Some(snapshot)) => Ok(snapshot),
        Ok(None) => Err("the server has neither /metrics nor /health".to_owned()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// The pipeline when the measured window opened and closed.
struct PipelineWindow {
    start: Snapshot,
    end: Snapshot,
    /// The server's counters over the window (`/metrics` only).
    figures: Option<WindowFigures>,
}

/// `--drain`: what was left once the load stopped, and whether anything was lost.
struct DrainReport {
    limit: Duration,
    /// From the window's close until the pipeline was idle (or the deadline).
    waited: Duration,
    drained: bool,
    /// Work left at the last poll (0 once drained).
    backlog: f64,
    /// Documents written since before the first command (`/metrics` only).
    documents: Option<f64>,
    /// What the successful commands of the whole run (warm-up included) imply: one document
    /// per place (acknowledgement) and start (work-started notice), two per complete (the
    /// invoice as JSON and as PDF).
    expected_documents: u64,
    /// Lifecycles completed in the whole run, warm-up included.
    completed_lifecycles: u64,
    /// Dead letters added since before the first command.
    dead_letters: Option<f64>,
    /// The pipeline could not be read.
    error: Option<String>,
}

impl DrainReport {
    fn new(
        baseline: &Snapshot,
        end: &Snapshot,
        last: Result<Option<Snapshot>>,
        limit: Duration,
        totals: &WorkerStats,
    ) -> DrainReport {
        let last = match last {
            Ok(Some(last)) => last,
            Ok(None) => {
                return DrainReport::failed(
                    "the server stopped answering /metrics and /health".to_owned(),
                    limit,
                    totals,
                );
            }
            Err(e) => return DrainReport::failed(format!("{e:#}"), limit, totals),
        };
        let mut report = DrainReport::failed(String::new(), limit, totals);
        report.error = None;
        report.waited = last.at.saturating_duration_since(end.at);
        report.backlog = last.backlog();
        report.drained = report.backlog == 0.0;
        report.documents = match (baseline.metrics.as_ref(), last.metrics.as_ref()) {
            (Some(a), Some(b)) => counter_delta(a, b, metric::DOCUMENTS),
            _ => None,
        };
        report.dead_letters = last
            .dead_letters()
            .map(|n| n - baseline.dead_letters().unwrap_or(0.0));
        report
    }

    fn failed(error: String, limit: Duration, totals: &WorkerStats) -> DrainReport {
        let ok = &totals.ok_all;
        DrainReport {
            limit,
            waited: Duration::ZERO,
            drained: false,
            backlog: 0.0,
            documents: None,
            expected_documents: ok[Step::Place as usize]
                + ok[Step::Start as usize]
                + 2 * ok[Step::Complete as usize],
            completed_lifecycles: ok[Step::Complete as usize],
            dead_letters: None,
            error: Some(error),
        }
    }

    /// Documents the successful commands imply but the pipeline did not write.
    fn missing_documents(&self) -> Option<f64> {
        let missing = self.expected_documents as f64 - self.documents?;
        (missing > 0.0).then_some(missing)
    }

    /// Why the run fails, if it does.
    fn failure(&self) -> Option<String> {
        if let Some(error) = &self.error {
            return Some(format!("--drain: {error}"));
        }
        if !self.drained {
            return Some(format!(
                "the pipeline did not drain within {} s ({} still pending)",
                self.limit.as_secs(),
                self.backlog
            ));
        }
        if let Some(missing) = self.missing_documents() {
            return Some(format!(
                "{missing} documents missing: {} written, {} expected",
                self.documents.unwrap_or(0.0),
                self.expected_documents
            ));
        }
        match self.dead_letters {
            Some(n) if n > 0.0 => Some(format!("{n} messages went to dead-letter queues")),
            _ => None,
        }
    }
}

/// `--hot-orders`: the contention run's own figures.
struct HotReport {
    orders: u64,
    skew: f64,
    /// Measured revisions, and those of the hottest order.
    picks: u64,
    hottest_picks: u64,
    /// Revisions answered 2xx in the whole run, warm-up included.
    revisions_ok: u64,
    /// Revisions the hot orders' versions show were appended.
    revisions_applied: Result<u64, String>,
}

impl HotReport {
    fn hottest_share(&self) -> f64 {
        match self.picks {
            0 => 0.0,
            n => self.hottest_picks as f64 / n as f64,
        }
    }

    /// A 2xx whose event is not in the order's history: a lost update.
    fn lost_updates(&self) -> Option<u64> {
        let applied = *self.revisions_applied.as_ref().ok()?;
        (applied < self.revisions_ok).then(|| self.revisions_ok - applied)
    }
}

struct E2eSummary {
    /// `--e2e-sample`.
    every: u64,
    /// Lifecycles picked for a sample.
    selected: u64,
    /// Picked but never polled: the sampler was behind (queue full, or too late to be exact).
    skipped: u64,
    stats: E2eStats,
}

struct Summary {
    url: String,
    concurrency: u32,
    target_rate: Option<f64>,
    warmup: u64,
    elapsed: Duration,
    interrupted: bool,
    sent: [u64; STEPS],
    ok: [u64; STEPS],
    lifecycles: u64,
    /// Open loop: how far the workers were behind their schedule when the window closed.
    lag_at_end: Duration,
    errors: BTreeMap<ErrorKey, u64>,
    latency: Histogram<u64>,
    e2e: Option<E2eSummary>,
    /// The pipeline over the window, or why it could not be read.
    pipeline: Result<PipelineWindow, String>,
    drain: Option<DrainReport>,
    hot: Option<HotReport>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Summary {
    fn commands(&self) -> u64 {
        self.sent.iter().sum()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn error_rate(&self) -> f64 {
        match self.commands() {
            0 => 0.0,
            n => self.error_count() as f64 / n as f64,
        }
    }

    fn per_sec(&self, n: u64) -> f64 {
        match self.elapsed.as_secs_f64() {
            s if s > 0.0 => n as f64 / s,
            _ => 0.0,
        }
    }

    /// p50, p95, p99, p99.9, max, in microseconds.
    fn percentiles(&self) -> [u64; 5] {
        let h = &self.latency;
        [
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.95),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
        ]
    }

    /// Open loop only: the server did not keep up with the target rate.
    fn below_target(&self) -> bool {
        self.target_rate.is_some_and(|rate| {
            self.per_sec(self.commands()) < rate * 0.95 || self.lag_at_end > LAG_TOLERANCE
        })
    }

    fn verdict(&self) -> Result<()> {
        if self.commands() == 0 {
            bail!(
                "no command was measured: the server at {} never answered",
                self.url
            );
        }
        if self.error_rate() > MAX_ERROR_RATE {
            bail!(
                "{} of {} commands failed ({:.2}%), more than the 1% allowed",
                self.error_count(),
                self.commands(),
                self.error_rate() * 100.0
            );
        }
        if let Some(failure) = self.drain.as_ref().and_then(DrainReport::failure) {
            bail!("{failure}");
        }
        if let Some(lost) = self.hot.as_ref().and_then(HotReport::lost_updates) {
            bail!("{lost} revisions answered 2xx are not in their order's history (lost updates)");
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        let [p50, p95, p99, p999, max] = self.percentiles();
        let by_status: serde_json::Map<String, Value> = self
            .errors
            .iter()
            .map(|(key, n)| (key.to_string(), json!(n)))
            .collect();
        let e2e = self.e2e.as_ref().map(|e| {
            let h = &e.stats.latency;
            json!({
                "available": !e.stats.unavailable,
                "every": e.every,
                "selected": e.selected,
                "measured": e.stats.measured,
                "timedOut": e.stats.timed_out,
                "skipped": e.skipped,
                "pollErrors": e.stats.poll_errors,
                "p50Ms": ms(h.value_at_quantile(0.50)),
                "p99Ms": ms(h.value_at_quantile(0.99)),
                "maxMs": ms(h.max()),
            })
        });
        let mut json = json!({
            "url": self.url,
            "concurrency": self.concurrency,
            "mode": if self.target_rate.is_some() { "open" } else { "closed" },
            "targetRate": self.target_rate,
            "belowTarget": self.below_target(),
            "scheduleLagMs": self.lag_at_end.as_secs_f64() * 1000.0,
            "warmupSecs": self.warmup,
            "durationSecs": self.elapsed.as_secs_f64(),
            "interrupted": self.interrupted,
            "commands": self.commands(),
            "commandsOk": self.ok.iter().sum::<u64>(),
            "commandsPerSec": self.per_sec(self.commands()),
            "lifecycles": self.lifecycles,
            "lifecyclesPerSec": self.per_sec(self.lifecycles),
            "byCommand": {
                "place": { "sent": self.sent[0], "ok": self.ok[0] },
                "start": { "sent": self.sent[1], "ok": self.ok[1] },
                "complete": { "sent": self.sent[2], "ok": self.ok[2] },
            },
            "errors": { "total": self.error_count(), "rate": self.error_rate(), "byStatus": by_status },
            "latencyMs": {
                "p50": ms(p50), "p95": ms(p95), "p99": ms(p99), "p999": ms(p999), "max": ms(max),
                "mean": self.latency.mean() / 1000.0,
            },
            "e2e": e2e,
            "pipeline": match &self.pipeline {
                Ok(window) => window.to_json(),
                Err(why) => json!({ "available": false, "reason": why }),
            },
            "drain": self.drain.as_ref().map(DrainReport::to_json),
            "hot": self.hot.as_ref().map(HotReport::to_json),
        });
        if self.hot.is_some() {
            json["byCommand"]["revise"] = json!({ "sent": self.sent[3], "ok": self.ok[3] });
        }
        json
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.target_rate {
            Some(rate) => format!("open loop, target {rate} commands/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "orders bench: {} ({} connections, {mode})",
            self.url, self.concurrency
        )?;
        let interrupted = if self.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        writeln!(
            f,
            "  duration       {:.2} s measured{interrupted}, after {} s warm-up",
            self.elapsed.as_secs_f64(),
            self.warmup
        )?;
        if self.hot.is_some() {
            writeln!(
                f,
                "  commands       {} (revise {})",
                self.commands(),
                self.sent[3]
            )?;
            writeln!(f, "  commands/s     {:.1}", self.per_sec(self.commands()))?;
        } else {
            writeln!(
                f,
                "  commands       {} (place {}, start {}, complete {})",
                self.commands(),
                self.sent[0],
                self.sent[1],
                self.sent[2]
            )?;
            writeln!(f, "  commands/s     {:.1}", self.per_sec(self.commands()))?;
            writeln!(f, "  lifecycles/s   {:.1}", self.per_sec(self.lifecycles))?;
        }
        write!(
            f,
            "  errors         {} ({:.2}%)",
            self.error_count(),
            self.error_rate() * 100.0
        )?;
        for (i, (key, n)) in self.errors.iter().enumerate() {
            write!(f, "{} {key}: {n}", if i == 0 { " " } else { "," })?;
        }
        writeln!(f)?;
        let [p50, p95, p99, p999, max] = self.percentiles();
        writeln!(
            f,
            "  latency ms     p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(p50),
            ms(p95),
            ms(p99),
            ms(p999),
            ms(max)
        )?;
        if let Some(e2e) = &self.e2e {
            if e2e.stats.unavailable {
                writeln!(
                    f,
                    "  end-to-end     unavailable: GET /orders/{{id}}/documents answered 404"
                )?;
            } else {
                let h = &e2e.stats.latency;
                writeln!(
                    f,
                    "  end-to-end ms  p50 {:.3}  p99 {:.3}  max {:.3}  ({} measured, {} timed out, {} skipped)",
                    ms(h.value_at_quantile(0.50)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max()),
                    e2e.stats.measured,
                    e2e.stats.timed_out,
                    e2e.skipped
                )?;
            }
        }
        if self.below_target() {
            writeln!(
                f,
                "  note           below the target rate: the server (or --concurrency) did not \
                 keep up; {:.0} ms behind schedule at the end, latencies include the backlog",
                self.lag_at_end.as_secs_f64() * 1000.0
            )?;
        }
        if let Some(hot) = &self.hot {
            hot.fmt_lines(f, self.pipeline.as_ref().ok())?;
        }
        match &self.pipeline {
            Ok(window) => window.fmt_lines(f)?,
            Err(why) => writeln!(f, "  pipeline       unavailable: {why}")?,
        }
        if let Some(drain) = &self.drain {
            drain.fmt_lines(f)?;
        }
        Ok(())
    }
}

/// A backlog (lag plus queued and in-flight messages) moves by a batch or so even when the
/// pipeline keeps up; beyond this much (or a tenth of where it started) it is a trend.
const BACKLOG_NOISE: f64 = 100.0;

/// Whether the pipeline kept up over the window: "flat", "growing" or "shrinking".
fn trend(start: f64, end: f64) -> &'static str {
    let tolerance = BACKLOG_NOISE.max(start * 0.1);
    if end > start + tolerance {
        "growing"
    } else if end < start - tolerance {
        "shrinking"
    } else {
        "flat"
    }
}

/// `12.3` for figures that may be missing.
fn or_unavailable(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "unavailable".to_owned(), |v| format!("{v:.decimals$}"))
}

impl PipelineWindow {
    fn secs(&self) -> f64 {
        self.end
            .at
            .saturating_duration_since(self.start.at)
            .as_secs_f64()
    }

    /// Every queue either snapshot names, with its gauges at the start and the end.
    fn queues(&self) -> BTreeMap<&str, (QueueGauge, QueueGauge)> {
        let mut out: BTreeMap<&str, (QueueGauge, QueueGauge)> = BTreeMap::new();
        for (name, q) in &self.start.queues {
            out.entry(name).or_default().0 = q.clone();
        }
        for (name, q) in &self.end.queues {
            out.entry(name).or_default().1 = q.clone();
        }
        out
    }

    fn to_json(&self) -> Value {
        let f = self.figures.as_ref();
        let queues: serde_json::Map<String, Value> = self
            .queues()
            .into_iter()
            .map(|(name, (a, b))| {
                let q = json!({
                    "depthStart": a.depth, "depthEnd": b.depth,
                    "inFlightStart": a.in_flight, "inFlightEnd": b.in_flight,
                    "deadLettersStart": a.dead_letters, "deadLettersEnd": b.dead_letters,
                });
                (name.to_owned(), q)
            })
            .collect();
        let (backlog_start, backlog_end) = (self.start.backlog(), self.end.backlog());
        json!({
            "available": true,
            "source": self.end.source.name(),
            "windowSecs": self.secs(),
            "projectorLag": { "start": self.start.lag, "end": self.end.lag },
            "queues": queues,
            "backlog": {
                "start": backlog_start,
                "end": backlog_end,
                "trend": trend(backlog_start, backlog_end),
            },
            "documents": f.and_then(|f| f.documents),
            "documentsPerSec": f.and_then(|f| f.per_sec(f.documents)),
            "transactionsPerSec": f.and_then(|f| f.per_sec(f.transactions)),
            "fsyncsPerCommand": f.and_then(|f| f.per_command(f.fsyncs)),
            "cpuMicrosPerCommand": f.and_then(WindowFigures::cpu_micros_per_command),
            "stageCpuMicrosPerCommand": f.map(WindowFigures::stage_micros_per_command),
            "conflicts": f.map(|f| &f.conflicts),
        })
    }

    fn fmt_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.figures {
            Some(w) => {
                writeln!(
                    f,
                    "  pipeline       from /metrics, {:.2} s between the window's scrapes",
                    w.secs
                )?;
                writeln!(
                    f,
                    "  documents/s    {} ({} written in the window)",
                    or_unavailable(w.per_sec(w.documents), 1),
                    or_unavailable(w.documents, 0)
                )?;
                writeln!(
                    f,
                    "  writer         {} transactions/s, {} fsyncs/command",
                    or_unavailable(w.per_sec(w.transactions), 1),
                    or_unavailable(w.per_command(w.fsyncs), 3)
                )?;
                write!(
                    f,
                    "  server CPU     {} µs/command (whole server process, load generator \
                     excluded)",
                    or_unavailable(w.cpu_micros_per_command(), 1)
                )?;
                let stages = w.stage_micros_per_command();
                for (i, (stage, micros)) in stages.iter().enumerate() {
                    let lead = if i == 0 { "; by stage: " } else { ", " };
                    write!(f, "{lead}{stage} {micros:.1}")?;
                }
                writeln!(f)?;
            }
            None => writeln!(
                f,
                "  pipeline       from /health (the server has no /metrics): documents/s, \
                 writer and server CPU figures unavailable"
            )?,
        }
        let count = |v: Option<f64>| or_unavailable(v, 0);
        writeln!(
            f,
            "  projector lag  {} -> {} (window start -> end)",
            count(self.start.lag),
            count(self.end.lag)
        )?;
        let queues = self.queues();
        if !queues.is_empty() {
            let list = |pick: fn(&QueueGauge) -> f64| {
                queues
                    .iter()
                    .map(|(name, (a, b))| format!("{name} {} -> {}", pick(a), pick(b)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(f, "  queue depth    {}", list(|q| q.depth))?;
            writeln!(f, "  in flight      {}", list(|q| q.in_flight))?;
        }
        let (a, b) = (self.start.backlog(), self.end.backlog());
        let meaning = match trend(a, b) {
            "growing" => "the pipeline fell behind the commands",
            "shrinking" => "the pipeline caught up on an earlier backlog",
            _ => "the pipeline kept up",
        };
        writeln!(
            f,
            "  backlog        {a} -> {b}: {} ({meaning})",
            trend(a, b)
        )
    }
}

impl DrainReport {
    fn to_json(&self) -> Value {
        json!({
            "drained": self.drained,
            "waitedSecs": self.waited.as_secs_f64(),
            "limitSecs": self.limit.as_secs(),
            "pending": self.backlog,
            "documents": self.documents,
            "expectedDocuments": self.expected_documents,
            "completedLifecycles": self.completed_lifecycles,
            "missingDocuments": self.missing_documents(),
            "deadLetters": self.dead_letters,
            "error": self.error,
            "ok": self.failure().is_none(),
        })
    }

    fn fmt_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(error) = &self.error {
            return writeln!(f, "  drain          failed: {error}");
        }
        if self.drained {
            writeln!(
                f,
                "  drain          idle {:.3} s after the window closed",
                self.waited.as_secs_f64()
            )?;
        } else {
            writeln!(
                f,
                "  drain          NOT idle {} s after the window closed: {} pending",
                self.limit.as_secs(),
                self.backlog
            )?;
        }
        let expected = format!(
            "{} expected (one per successful place and start, two per complete; {} \
             completed lifecycles × 4 when none failed)",
            self.expected_documents, self.completed_lifecycles
        );
        match (self.documents, self.missing_documents()) {
            (None, _) => writeln!(
                f,
                "  documents      unavailable without /metrics; {expected}"
            )?,
            (Some(n), missing) => {
                let verdict = match missing {
                    Some(missing) => format!("{missing} MISSING"),
                    None if n > self.expected_documents as f64 => "more than expected \
                        (another client, or commands that timed out but were applied)"
                        .to_owned(),
                    None => "nothing lost".to_owned(),
                };
                writeln!(
                    f,
                    "  documents      {n} written since the run began, {expected}: {verdict}"
                )?;
            }
        }
        if let Some(n) = self.dead_letters {
            writeln!(f, "  dead letters   {n:+} since the run began")?;
        }
        Ok(())
    }
}

impl HotReport {
    fn to_json(&self) -> Value {
        let (applied, error) = match &self.revisions_applied {
            Ok(n) => (Some(*n), None),
            Err(e) => (None, Some(e.as_str())),
        };
        json!({
            "orders": self.orders,
            "skew": self.skew,
            "hottestShare": self.hottest_share(),
            "revisionsOk": self.revisions_ok,
            "revisionsApplied": applied,
            "lostUpdates": self.lost_updates(),
            "versionsError": error,
        })
    }

    fn fmt_lines(
        &self,
        f: &mut fmt::Formatter<'_>,
        window: Option<&PipelineWindow>,
    ) -> fmt::Result {
        writeln!(
            f,
            "  hot orders     {} (Zipf s={}): the hottest got {:.1}% of the measured revisions",
            self.orders,
            self.skew,
            self.hottest_share() * 100.0
        )?;
        let applied = match (&self.revisions_applied, self.lost_updates()) {
            (Err(e), _) => format!("the versions could not be read: {e}"),
            (Ok(n), Some(lost)) => format!("{n} in the orders' versions: {lost} LOST"),
            (Ok(n), None) => format!("{n} in the orders' versions"),
        };
        writeln!(
            f,
            "  revisions      {} answered 2xx in the whole run; {applied}",
            self.revisions_ok
        )?;
        let conflicts = window
            .and_then(|w| w.figures.as_ref())
            .map(|w| &w.conflicts)
            .filter(|c| !c.is_empty());
        match conflicts {
            Some(counters) => {
                let list: Vec<String> = counters.iter().map(|(n, v)| format!("{n} +{v}")).collect();
                writeln!(f, "  version races  {}", list.join(", "))
            }
            None => writeln!(
                f,
                "  version races  retried inside the server, not visible here (no conflict \
                 counter in /metrics); non-2xx answers are under errors"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering::SeqCst;

    use axum::extract::{Path, State};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    /// An in-process stand-in for the order API: the three lifecycle commands with the real
    /// status rules, and optionally the documents route.
    #[derive(Default)]
    struct Fake {
        /// Answer 409 to every Nth `/start` (0: never), as a conflicting writer would cause.
        reject_every_start: u64,
        /// Close the connection after every answer, to make the client reconnect.
        close_connections: bool,
        next_id: AtomicU64,
        places: AtomicU64,
        starts: AtomicU64,
        completes: AtomicU64,
        rejected: AtomicU64,
        /// Transitions the status rules refuse: the bench must never cause one.
        illegal: AtomicU64,
        /// Statuses each order has reached (1 received, 2 in process, 3 completed), which is
        /// also how many documents it has.
        orders: Mutex<HashMap<String, usize>>,
        /// Serve `/metrics` (and `/health`), or `/health` only, as an older release does.
        metrics: bool,
        health: bool,
        /// Answer 409 to every Nth revision (0: never).
        reject_every_revise: u64,
        /// Revisions applied, by order.
        revisions: Mutex<HashMap<String, u64>>,
        /// A stand-in pipeline: every successful place, start and complete leaves one
        /// document pending, and every scrape of `/metrics` or `/health` writes a few.
        pipeline: Mutex<FakePipeline>,
    }

    #[derive(Default)]
    struct FakePipeline {
        pending: u64,
        documents: u64,
        commands: u64,
    }

    /// Documents each scrape lets the fake pipeline write: small, so a drain takes polls.
    const FAKE_DRAIN_STEP: u64 = 25;

    struct Server {
        url: String,
        fake: Arc<Fake>,
        _runtime: tokio::runtime::Runtime,
    }

    fn serve(fake: Fake, documents: bool) -> Server {
        let fake = Arc::new(fake);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test server runtime");
        let mut app = Router::new()
            .route("/orders", post(place))
            .route("/orders/{id}/start", post(start))
            .route("/orders/{id}/complete", post(complete));
        if documents {
            app = app.route("/orders/{id}/documents", get(list_documents));
        }
        app = app.route("/orders/{id}", get(get_order).put(revise));
        if fake.metrics {
            app = app.route("/metrics", get(metrics));
        }
        if fake.health || fake.metrics {
            app = app.route("/health", get(health));
        }
        let app = app.with_state(fake.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the test server");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("test server address")
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            url,
            fake,
            _runtime: runtime,
        }
    }

    fn finish(fake: &Fake, status: StatusCode, body: Value) -> Response {
        let mut response = (status, Json(body)).into_response();
        if fake.close_connections {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    async fn place(State(fake): State<Arc<Fake>>, body: axum::body::Bytes) -> Response {
        fake.places.fetch_add(1, SeqCst);
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(description) = request.get("description").and_then(Value::as_str) else {
            return finish(
                &fake,
                StatusCode::BAD_REQUEST,
                json!({"error": "description"}),
            );
        };
        let id = format!("bench-{}", fake.next_id.fetch_add(1, SeqCst));
        fake.orders.lock().expect("orders").insert(id.clone(), 1);
        let order = json!({
            "orderId": id, "description": description, "customerId": request.get("customerId"),
            "status": "received", "version": 1,
        });
        let body = json!({"message": "Order processed successfully", "order": order});
        pipeline_command(&fake, true);
        finish(&fake, StatusCode::CREATED, body)
    }

    async fn start(State(fake): State<Arc<Fake>>, Path(id): Path<String>) -> Response {
        let n = fake.starts.fetch_add(1, SeqCst) + 1;
        if fake.reject_every_start != 0 && n % fake.reject_every_start == 0 {
            fake.rejected.fetch_add(1, SeqCst);
            return finish(
                &fake,
                StatusCode::CONFLICT,
                json!({"error": "injected conflict"}),
            );
        }
        transition(&fake, &id, 1)
    }

    async fn complete(State(fake): State<Arc<Fake>>, Path(id): Path<String>) -> Response {
        fake.completes.fetch_add(1, SeqCst);
        transition(&fake, &id, 2)
    }

    fn transition(fake: &Fake, id: &str, from: usize) -> Response {
        let mut orders = fake.orders.lock().expect("orders");
        match orders.get_mut(id) {
            Some(reached) if *reached == from => {
                *reached += 1;
                pipeline_command(fake, true);
                if from == 2 {
                    // A completion's second document: the invoice PDF.
                    fake.pipeline.lock().expect("pipeline").pending += 1;
                }
                let order = json!({"orderId": id, "version": *reached});
                finish(
                    fake,
                    StatusCode::OK,
                    json!({"message": "ok", "order": order}),
                )
            }
            _ => {
                fake.illegal.fetch_add(1, SeqCst);
                finish(
                    fake,
                    StatusCode::CONFLICT,
                    json!({"error": "illegal transition"}),
                )
            }
        }
    }

    /// One command's effect on the fake pipeline.
    fn pipeline_command(fake: &Fake, pending: bool) {
        let mut p = fake.pipeline.lock().expect("pipeline");
        p.commands += 1;
        p.pending += u64::from(pending);
    }

    /// A scrape: the pipeline catches up a little, then reports (lag, depth, documents,
    /// commands).
    fn pipeline_scrape(fake: &Fake) -> (u64, u64, u64, u64) {
        let mut p = fake.pipeline.lock().expect("pipeline");
        let written = p.pending.min(FAKE_DRAIN_STEP);
        p.pending -= written;
        p.documents += written;
        (p.pending, p.pending / 2, p.documents, p.commands)
    }

    async fn metrics(State(fake): State<Arc<Fake>>) -> Response {
        let (lag, depth, documents, commands) = pipeline_scrape(&fake);
        let cpu = commands as f64 * 0.000_5;
        let text = format!(
            "# HELP orders_documents_written_total Documents the status handlers wrote.\n\
             # TYPE orders_documents_written_total counter\n\
             orders_documents_written_total {documents}\n\
             orders_projector_lag {lag}\n\
             orders_queue_depth{{queue=\"order-received\"}} {depth}\n\
             orders_queue_depth{{queue=\"order-completed\"}} 0\n\
             orders_queue_in_flight{{queue=\"order-received\"}} 0\n\
             orders_queue_dead_letters{{queue=\"order-received\"}} 0\n\
             orders_process_cpu_seconds_total {cpu}\n\
             orders_writer_transactions_total {commands}\n\
             orders_writer_fsyncs_total {commands}\n\
             orders_stage_cpu_seconds_total{{stage=\"api\"}} {}\n\
             orders_stage_cpu_seconds_total{{stage=\"writer\"}} {}\n",
            cpu * 0.5,
            cpu * 0.25
        );
        text.into_response()
    }

    async fn health(State(fake): State<Arc<Fake>>) -> Response {
        let (lag, depth, _, _) = pipeline_scrape(&fake);
        let queues = json!([
            {"queue": "order-received", "depth": depth, "inFlight": 0, "deadLetters": 0},
            {"queue": "order-completed", "depth": 0, "inFlight": 0, "deadLetters": 0},
        ]);
        finish(
            &fake,
            StatusCode::OK,
            json!({"status": "ok", "projectorLag": lag, "queues": queues}),
        )
    }

    async fn revise(
        State(fake): State<Arc<Fake>>,
        Path(id): Path<String>,
        body: axum::body::Bytes,
    ) -> Response {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if request.get("description").and_then(Value::as_str).is_none() {
            return finish(&fake, StatusCode::BAD_REQUEST, json!({"error": "body"}));
        }
        if !fake.orders.lock().expect("orders").contains_key(&id) {
            return finish(&fake, StatusCode::NOT_FOUND, json!({"error": "no order"}));
        }
        let mut revisions = fake.revisions.lock().expect("revisions");
        let n = revisions.values().sum::<u64>() + 1;
        if fake.reject_every_revise != 0 && n % fake.reject_every_revise == 0 {
            // Counted, so that the next revision is not rejected too.
            *revisions.entry(String::new()).or_default() += 1;
            return finish(&fake, StatusCode::CONFLICT, json!({"error": "injected"}));
        }
        let version = {
            let r = revisions.entry(id.clone()).or_default();
            *r += 1;
            *r + 1
        };
        pipeline_command(&fake, false);
        let order = json!({"orderId": id, "version": version});
        finish(
            &fake,
            StatusCode::OK,
            json!({"message": "ok", "order": order}),
        )
    }

    async fn get_order(State(fake): State<Arc<Fake>>, Path(id): Path<String>) -> Response {
        if !fake.orders.lock().expect("orders").contains_key(&id) {
            return finish(&fake, StatusCode::NOT_FOUND, json!({"error": "no order"}));
        }
        let revisions = fake.revisions.lock().expect("revisions");
        let version = 1 + revisions.get(&id).copied().unwrap_or(0);
        finish(
            &fake,
            StatusCode::OK,
            json!({"orderId": id, "version": version}),
        )
    }

    async fn list_documents(State(fake): State<Arc<Fake>>, Path(id): Path<String>) -> Response {
        let reached = fake
            .orders
            .lock()
            .expect("orders")
            .get(&id)
            .copied()
            .unwrap_or(0);
        let names = ["acknowledgement", "work-started", "invoice"];
        let items: Vec<Value> = names
            .iter()
            .take(reached)
            .map(|n| json!({"name": n}))
            .collect();
        finish(&fake, StatusCode::OK, json!({"items": items}))
    }

    fn bench_args(url: &str, concurrency: u32, extra: &[&str]) -> BenchArgs {
        let concurrency = concurrency.to_string();
        let mut argv = vec!["bench", "--url", url, "--duration", "1", "--warmup", "0"];
        argv.extend(["--concurrency", &concurrency]);
        argv.extend(extra);
        Cli::try_parse_from(argv).expect("valid flags").args
    }

    fn assert_percentiles_monotonic(summary: &Summary) {
        let p = summary.percentiles();
        assert!(
            p.windows(2).all(|w| w[0] <= w[1]),
            "percentiles not monotonic: {p:?}"
        );
        assert_eq!(summary.latency.len(), summary.ok.iter().sum::<u64>());
    }

    #[test]
    fn closed_loop_counts_add_up_and_conflicts_are_errors() {
        let server = serve(
            Fake {
                reject_every_start: 4,
                ..Fake::default()
            },
            false,
        );
        let summary = execute(bench_args(&server.url, 4, &[])).expect("bench runs");
        let fake = &server.fake;
        let rejected = fake.rejected.load(SeqCst);

        assert!(summary.lifecycles > 0, "no lifecycle completed");
        assert!(rejected > 0, "the server never rejected a start");
        assert_eq!(
            fake.illegal.load(SeqCst),
            0,
            "the bench sent an illegal transition"
        );
        // With no warm-up, every command the server saw was measured, and nothing else.
        assert_eq!(
            summary.sent,
            [
                fake.places.load(SeqCst),
                fake.starts.load(SeqCst),
                fake.completes.load(SeqCst),
                0
            ]
        );
        assert_eq!(
            summary.errors,
            BTreeMap::from([(ErrorKey::Status(409), rejected)])
        );
        // Each placed order is started; each started one is completed; each completed one is
        // a lifecycle of three commands, and each rejected start ended a lifecycle of two.
        assert_eq!(summary.ok[0], summary.sent[1]);
        assert_eq!(summary.ok[1], summary.sent[2]);
        assert_eq!(summary.ok[2], summary.lifecycles);
        assert_eq!(summary.commands(), 3 * summary.lifecycles + 2 * rejected);
        assert_percentiles_monotonic(&summary);
        assert!(summary.elapsed >= Duration::from_secs(1));

        // One start in four fails: far above the 1% the run tolerates.
        let verdict = summary
            .verdict()
            .expect_err("too many errors must fail the run");
        assert!(
            verdict.to_string().contains("more than the 1% allowed"),
            "{verdict}"
        );
        let json = summary.to_json();
        assert_eq!(json["errors"]["byStatus"]["409"], json!(rejected));
        assert_eq!(json["commands"], json!(summary.commands()));
        assert!(summary.to_string().contains("409: "));
    }

    #[test]
    fn open_loop_follows_the_schedule() {
        let server = serve(Fake::default(), false);
        let (rate, concurrency) = (240.0, 3);
        let summary =
            execute(bench_args(&server.url, concurrency, &["--rate", "240"])).expect("bench runs");

        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert_eq!(summary.commands(), 3 * summary.lifecycles);
        // Worker i's lifecycles start at i/rate + 3k·concurrency/rate, k = 0, 1, ...; every
        // one due within the second runs, late or not.
        let step = 3.0 * f64::from(concurrency) / rate;
        let expected: f64 = (0..concurrency)
            .map(|i| ((1.0 - f64::from(i) / rate) / step).ceil())
            .sum();
        let diff = (summary.lifecycles as f64 - expected).abs();
        assert!(
            diff <= f64::from(concurrency),
            "{} lifecycles, expected {expected}",
            summary.lifecycles
        );
        assert_percentiles_monotonic(&summary);
        summary.verdict().expect("a clean run passes");
        assert_eq!(summary.to_json()["mode"], json!("open"));
    }

    #[test]
    fn reconnects_when_the_server_closes_connections() {
        let server = serve(
            Fake {
                close_connections: true,
                ..Fake::default()
            },
            false,
        );
        let summary = execute(bench_args(&server.url, 2, &[])).expect("bench runs");
        assert!(summary.lifecycles > 0);
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert_eq!(summary.commands(), 3 * summary.lifecycles);
    }

    #[test]
    fn end_to_end_samples_are_all_accounted_for() {
        let server = serve(Fake::default(), true);
        let args = bench_args(&server.url, 3, &["--rate", "240", "--e2e-sample", "2"]);
        let summary = execute(args).expect("bench runs");
        let e2e = summary.e2e.as_ref().expect("sampling was asked for");

        assert!(!e2e.stats.unavailable);
        assert_eq!(e2e.selected, summary.lifecycles.div_ceil(2));
        assert_eq!(
            e2e.stats.measured + e2e.stats.timed_out + e2e.skipped,
            e2e.selected
        );
        assert!(e2e.stats.measured > 0, "no sample measured");
        assert_eq!(e2e.stats.timed_out, 0);
        let h = &e2e.stats.latency;
        assert!(h.value_at_quantile(0.5) <= h.value_at_quantile(0.99));
        assert!(h.value_at_quantile(0.99) <= h.max());
        assert_eq!(summary.to_json()["e2e"]["available"], json!(true));
    }

    #[test]
    fn end_to_end_without_a_documents_route_is_reported_not_failed() {
        let server = serve(Fake::default(), false);
        let summary = execute(bench_args(&server.url, 2, &["--e2e-sample", "1"])).expect("runs");
        let e2e = summary.e2e.as_ref().expect("sampling was asked for");
        assert!(e2e.stats.unavailable);
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        summary
            .verdict()
            .expect("a missing documents route is not a failed run");
        assert!(summary.to_string().contains("unavailable"));
    }

    #[test]
    fn a_refused_connection_says_what_to_start() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let Err(err) = execute(bench_args(&url, 1, &[])) else {
            panic!("a bench with nothing listening must fail");
        };
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("cannot connect to {url}")),
            "{message}"
        );
        assert!(message.contains("is `orders dev` running?"), "{message}");
    }

    #[test]
    fn flags_have_the_documented_defaults_and_limits() {
        let args = Cli::try_parse_from(["bench"]).expect("defaults").args;
        assert_eq!(
            (
                args.duration,
                args.warmup,
                args.concurrency,
                args.timeout,
                args.threads
            ),
            (30, 3, 64, 10, 1)
        );
        assert_eq!((args.rate, args.json, args.e2e_sample), (None, false, None));
        if std::env::var_os("ORDERS_URL").is_none() {
            assert_eq!(args.url, "http://127.0.0.1:3000");
        }
        let args = Cli::try_parse_from(["bench", "--rate", "5000", "--json", "--e2e-sample", "10"])
            .expect("flags")
            .args;
        assert_eq!(
            (args.rate, args.json, args.e2e_sample),
            (Some(5000.0), true, Some(10))
        );
        for bad in [
            ["--rate", "0"],
            ["--rate", "-1"],
            ["--concurrency", "0"],
            ["--duration", "0"],
        ] {
            assert!(
                Cli::try_parse_from(["bench", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn urls_resolve_with_host_header_and_base_path() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let target = runtime
            .block_on(Target::resolve("http://127.0.0.1:3000/api/"))
            .expect("ok");
        assert_eq!(target.host, "127.0.0.1:3000");
        assert_eq!(target.base_path, "/api");
        let uri = target.order_uri("o-1", "/start").expect("uri");
        assert_eq!(uri.to_string(), "/api/orders/o-1/start");
        for bad in [
            "https://127.0.0.1:3000",
            "127.0.0.1:3000",
            "http://127.0.0.1:3000/?x=1",
        ] {
            assert!(runtime.block_on(Target::resolve(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_ids_are_found_in_place_answers() {
        let mut out = String::new();
        let cases: [(&[u8], Option<&str>); 7] = [
            (
                br#"{"message":"Order processed successfully","order":{"orderId":"0190a-b.c:d_e","status":"received"}}"#,
                Some("0190a-b.c:d_e"),
            ),
            (b"{ \"order\" : { \"orderId\" :\n \"x1\" } }", Some("x1")),
            // A non-string `orderId` elsewhere does not hide the order's.
            (br#"{"orderId":5,"order":{"orderId":"real"}}"#, Some("real")),
            // Escaped characters are legal JSON; the full parse handles them.
            (br#"{"order":{"orderId":"a\u0062"}}"#, Some("ab")),
            (br#"{"order":{"orderId":""}}"#, None),
            (br#"{"message":"no order"}"#, None),
            (b"not json", None),
        ];
        for (body, expected) in cases {
            let found = extract_order_id(body, &mut out);
            assert_eq!(
                found.then_some(out.as_str()),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            document_count(br#"{"items":[{"name":"a"},{"name":"b"}]}"#),
            Some(2)
        );
        assert_eq!(document_count(b"{}"), None);
    }

    #[test]
    fn prometheus_text_gives_samples_by_name_and_label() {
        let text = "\
# HELP orders_queue_depth Messages waiting.
# TYPE orders_queue_depth gauge
orders_queue_depth{queue=\"order-received\"} 12
orders_queue_depth{ queue = \"order-completed\" , } 3 1700000000000
orders_stage_cpu_seconds_total{stage=\"writer\",db=\"a\"} 1.5
orders_stage_cpu_seconds_total{db=\"b\",stage=\"writer\"} 0.5
orders_stage_cpu_seconds_total{stage=\"api\"} 2e-3
odd{label=\"a \\\"quoted\\\" \\\\ back\\nslash\"} +Inf
orders_documents_written_total 42

not a sample line
broken{queue=\"x} 1
name_without_value
two values 1 2 3
";
        let m = Metrics::parse(text);
        assert_eq!(m.skipped, 4, "{m:?}");
        assert_eq!(m.total("orders_documents_written_total"), Some(42.0));
        assert_eq!(m.total("orders_queue_depth"), Some(15.0));
        assert_eq!(m.total("absent"), None);
        assert_eq!(
            m.by_label("orders_queue_depth", "queue"),
            BTreeMap::from([
                ("order-completed".to_owned(), 3.0),
                ("order-received".to_owned(), 12.0)
            ])
        );
        assert_eq!(
            m.by_label("orders_stage_cpu_seconds_total", "stage"),
            BTreeMap::from([("api".to_owned(), 0.002), ("writer".to_owned(), 2.0)])
        );
        let (labels, value) = &m.samples["odd"][0];
        assert_eq!(labels[0].1, "a \"quoted\" \\ back\nslash");
        assert_eq!(*value, f64::INFINITY);
        assert!(parse_sample("x NaN").is_some_and(|(_, _, v)| v.is_nan()));
        assert_eq!(
            parse_sample("x{} -Inf").map(|s| s.2),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(parse_sample("1x 1"), None);
        assert_eq!(parse_sample("x{1a=\"v\"} 1"), None);
        assert_eq!(parse_sample("x 1 notatimestamp"), None);
    }

    #[test]
    fn window_figures_are_counter_deltas_per_second_and_per_command() {
        let start = Metrics::parse(
            "orders_documents_written_total 100\n\
             orders_process_cpu_seconds_total 10\n\
             orders_writer_transactions_total 50\n\
             orders_writer_fsyncs_total 50\n\
             orders_stage_cpu_seconds_total{stage=\"api\"} 1\n\
             orders_stage_cpu_seconds_total{stage=\"writer\"} 5\n\
             orders_append_conflicts_total 7\n",
        );
        let end = Metrics::parse(
            "orders_documents_written_total 3100\n\
             orders_process_cpu_seconds_total 10.5\n\
             orders_writer_transactions_total 30\n\
             orders_stage_cpu_seconds_total{stage=\"api\"} 1.25\n\
             orders_stage_cpu_seconds_total{stage=\"writer\"} 5.1\n\
             orders_stage_cpu_seconds_total{stage=\"projector\"} 0.05\n\
             orders_append_conflicts_total 9\n",
        );
        let w = WindowFigures::between(&start, &end, 2.0, 1000);
        assert_eq!(w.documents, Some(3000.0));
        assert_eq!(w.per_sec(w.documents), Some(1500.0));
        // Went down: the server restarted, so no figure rather than a negative one.
        assert_eq!(w.transactions, None);
        // Gone from the later scrape.
        assert_eq!(w.fsyncs, None);
        let cpu = w.cpu_micros_per_command().expect("cpu");
        assert!((cpu - 500.0).abs() < 1e-6, "{cpu}");
        let stages = w.stage_micros_per_command();
        assert_eq!(stages.len(), 3);
        assert!((stages["api"] - 250.0).abs() < 1e-6, "{stages:?}");
        assert!((stages["writer"] - 100.0).abs() < 1e-6, "{stages:?}");
        // Absent at the start: counted from 0.
        assert!((stages["projector"] - 50.0).abs() < 1e-6, "{stages:?}");
        assert_eq!(
            w.conflicts,
            BTreeMap::from([("orders_append_conflicts_total".to_owned(), 2.0)])
        );
        let idle = WindowFigures::between(&start, &start, 0.0, 0);
        assert_eq!(
            (idle.per_sec(idle.documents), idle.cpu_micros_per_command()),
            (None, None)
        );
    }

    #[test]
    fn snapshots_read_lag_and_queues_from_metrics_or_health() {
        let at = Instant::now();
        let m = Snapshot::from_metrics(
            Metrics::parse(
                "orders_projector_lag 4\n\
                 orders_queue_depth{queue=\"a\"} 2\n\
                 orders_queue_in_flight{queue=\"a\"} 1\n\
                 orders_queue_depth{queue=\"b\"} 0\n\
                 orders_queue_dead_letters{queue=\"b\"} 3\n",
            ),
            at,
        );
        let body = br#"{"status":"ok","projectorLag":4,"queues":[
            {"queue":"a","depth":2,"inFlight":1,"deadLetters":0},
            {"queue":"b","depth":0,"inFlight":0,"deadLetters":3}]}"#;
        let h = Snapshot::from_health(body, at).expect("health JSON");
        for s in [&m, &h] {
            assert_eq!(s.lag, Some(4.0));
            assert_eq!(s.backlog(), 7.0);
            assert_eq!(s.dead_letters(), Some(3.0));
            assert_eq!(s.queues["a"].in_flight, 1.0);
            assert!(s.observable());
        }
        assert_eq!((m.source, h.source), (Source::Metrics, Source::Health));
        let api_only = Snapshot::from_health(br#"{"status":"ok","queues":[]}"#, at).expect("ok");
        assert!(!api_only.observable());
        assert!(Snapshot::from_health(b"<html>", at).is_none());
        assert_eq!(trend(0.0, 50.0), "flat");
        assert_eq!(trend(0.0, 5000.0), "growing");
        assert_eq!(trend(5000.0, 10.0), "shrinking");
    }

    #[test]
    fn zipf_picks_stay_in_range_and_favour_the_hottest() {
        let n = 50;
        let zipf = Zipf::new(n, 1.0);
        let mut rng = SplitMix64(7);
        let mut picks = vec![0u64; n];
        let draws = 200_000;
        for _ in 0..draws {
            let rank = zipf.pick(rng.next_f64());
            assert!(rank < n);
            picks[rank] += 1;
        }
        let hottest = picks.iter().copied().max().expect("picks");
        assert_eq!(picks[0], hottest, "{picks:?}");
        assert!(picks[0] > picks[1] && picks[1] > picks[4] && picks[4] > picks[n - 1]);
        // s = 1: rank k gets 1/(k+1) of the first's share; the first gets 1/H(50) ≈ 22.2%.
        let share = picks[0] as f64 / draws as f64;
        assert!((share - 0.2222).abs() < 0.01, "{share}");
        let ratio = picks[0] as f64 / picks[9] as f64;
        assert!((ratio - 10.0).abs() < 1.5, "{ratio}");
        // The edges: u near 1 is the coldest order, one order is always picked, s = 0 is
        // uniform.
        assert_eq!(zipf.pick(1.0 - f64::EPSILON), n - 1);
        assert_eq!(zipf.pick(0.0), 0);
        assert_eq!(Zipf::new(1, 1.0).pick(0.999), 0);
        let uniform = Zipf::new(4, 0.0);
        assert_eq!([0.1, 0.3, 0.6, 0.9].map(|u| uniform.pick(u)), [0, 1, 2, 3]);
    }

    #[test]
    fn metrics_give_the_pipeline_figures_and_drain_accounts_for_every_document() {
        let server = serve(
            Fake {
                metrics: true,
                ..Fake::default()
            },
            false,
        );
        let args = bench_args(
            &server.url,
            3,
            &["--rate", "300", "--drain", "--drain-timeout", "30"],
        );
        let summary = execute(args).expect("bench runs");
        let window = summary.pipeline.as_ref().expect("pipeline figures");
        assert_eq!(window.end.source, Source::Metrics);
        let figures = window.figures.as_ref().expect("counters");
        assert_eq!(figures.commands, summary.commands());
        assert!(figures.documents.is_some_and(|d| d > 0.0), "{figures:?}");
        // The fake counts 0.5 ms of CPU per command it answered in the window.
        let cpu = figures.cpu_micros_per_command().expect("cpu");
        assert!((400.0..=600.0).contains(&cpu), "{cpu}");
        assert_eq!(figures.stage_cpu_seconds.len(), 2);

        let drain = summary.drain.as_ref().expect("--drain");
        assert!(drain.drained, "{:?}", drain.error);
        assert_eq!(drain.error, None);
        assert_eq!(drain.backlog, 0.0);
        assert_eq!(drain.expected_documents, 4 * drain.completed_lifecycles);
        assert_eq!(drain.documents, Some(drain.expected_documents as f64));
        assert_eq!(drain.dead_letters, Some(0.0));
        summary.verdict().expect("nothing lost");

        let text = summary.to_string();
        for part in [
            "documents/s",
            "µs/command",
            "projector lag",
            "queue depth",
            "nothing lost",
        ] {
            assert!(text.contains(part), "{part} missing from\n{text}");
        }
        let json = summary.to_json();
        assert_eq!(json["pipeline"]["source"], json!("metrics"));
        assert_eq!(json["drain"]["ok"], json!(true));
        assert!(json["pipeline"]["cpuMicrosPerCommand"].is_number());
        assert!(json["pipeline"]["queues"]["order-received"]["depthEnd"].is_number());
    }

    #[test]
    fn without_metrics_health_gives_lag_and_depth_and_the_rest_is_unavailable() {
        let server = serve(
            Fake {
                health: true,
                ..Fake::default()
            },
            false,
        );
        let summary = execute(bench_args(&server.url, 2, &["--drain"])).expect("bench runs");
        let window = summary.pipeline.as_ref().expect("pipeline from /health");
        assert_eq!(window.end.source, Source::Health);
        assert!(window.figures.is_none());
        assert!(window.end.lag.is_some());
        let drain = summary.drain.as_ref().expect("--drain");
        assert!(drain.drained);
        assert_eq!(drain.documents, None);
        summary
            .verdict()
            .expect("a drained pipeline without /metrics passes");
        let text = summary.to_string();
        assert!(text.contains("from /health"), "{text}");
        assert!(text.contains("unavailable"), "{text}");
        assert!(
            text.contains("documents      unavailable without /metrics"),
            "{text}"
        );
        assert_eq!(summary.to_json()["pipeline"]["source"], json!("health"));
    }

    #[test]
    fn a_server_without_either_route_is_benched_and_drain_is_refused() {
        let server = serve(Fake::default(), false);
        let summary = execute(bench_args(&server.url, 1, &[])).expect("bench runs");
        assert!(summary.pipeline.is_err());
        assert!(summary.to_string().contains("pipeline       unavailable"));
        assert_eq!(summary.to_json()["pipeline"]["available"], json!(false));
        let Err(err) = execute(bench_args(&server.url, 1, &["--drain"])) else {
            panic!("--drain without a pipeline to watch must fail");
        };
        assert!(
            format!("{err:#}").contains("neither /metrics nor /health"),
            "{err:#}"
        );
    }

    #[test]
    fn a_drain_that_finds_documents_missing_fails_the_run() {
        let mut report = DrainReport::failed(String::new(), Duration::from_secs(1), &{
            let mut stats = WorkerStats::new(Histogram::new(3).expect("histogram"));
            stats.ok_all = [10, 10, 9, 0];
            stats
        });
        report.error = None;
        report.drained = true;
        assert_eq!(report.expected_documents, 38);
        report.documents = Some(38.0);
        report.dead_letters = Some(0.0);
        assert_eq!(report.failure(), None);
        report.documents = Some(40.0);
        assert_eq!(
            report.failure(),
            None,
            "extra documents are noted, not failed"
        );
        report.documents = Some(36.0);
        assert_eq!(report.missing_documents(), Some(2.0));
        assert!(
            report
                .failure()
                .is_some_and(|f| f.contains("2 documents missing"))
        );
        report.documents = Some(38.0);
        report.dead_letters = Some(1.0);
        assert!(report.failure().is_some());
        report.dead_letters = None;
        report.drained = false;
        assert!(
            report
                .failure()
                .is_some_and(|f| f.contains("did not drain"))
        );
    }

    #[test]
    fn hot_orders_revise_on_the_skew_and_every_2xx_is_in_the_versions() {
        let server = serve(
            Fake {
                metrics: true,
                reject_every_revise: 50,
                ..Fake::default()
            },
            false,
        );
        // With a warm-up, whose revisions the versions check must count too.
        let argv = [
            "bench",
            "--url",
            &server.url,
            "--duration",
            "1",
            "--warmup",
            "1",
        ];
        let argv = argv
            .into_iter()
            .chain(["--concurrency", "4", "--hot-orders", "20"]);
        let args = Cli::try_parse_from(argv).expect("flags").args;
        let summary = execute(args).expect("bench runs");
        let hot = summary.hot.as_ref().expect("hot report");
        let fake = &server.fake;
        assert_eq!(hot.orders, 20);
        assert_eq!(
            fake.places.load(SeqCst),
            20,
            "only the hot orders are placed"
        );
        assert_eq!(summary.sent[..3], [0, 0, 0]);
        assert!(summary.sent[3] > 100, "{:?}", summary.sent);
        assert_eq!(summary.lifecycles, 0);
        // 1/H(20) ≈ 27.7% of the picks go to the hottest order.
        assert!(
            (0.2..0.36).contains(&hot.hottest_share()),
            "{}",
            hot.hottest_share()
        );
        assert_eq!(hot.revisions_applied, Ok(hot.revisions_ok));
        assert_eq!(hot.lost_updates(), None);
        let conflicts = summary
            .errors
            .get(&ErrorKey::Status(409))
            .copied()
            .unwrap_or(0);
        assert!(conflicts > 0, "{:?}", summary.errors);
        assert_eq!(summary.ok[3] + conflicts, summary.sent[3]);
        let text = summary.to_string();
        assert!(text.contains("(revise "), "{text}");
        assert!(text.contains("hot orders     20"), "{text}");
        assert!(text.contains("409: "), "{text}");
        let json = summary.to_json();
        assert_eq!(json["hot"]["revisionsOk"], json!(hot.revisions_ok));
        assert_eq!(json["byCommand"]["revise"]["sent"], json!(summary.sent[3]));
        // The server saw the same skew: its most revised order has about the hottest share.
        let revisions = fake.revisions.lock().expect("revisions");
        let applied: Vec<u64> = revisions
            .iter()
            .filter(|(id, _)| !id.is_empty())
            .map(|(_, n)| *n)
            .collect();
        let most = applied.iter().copied().max().expect("revised orders");
        let share = most as f64 / applied.iter().sum::<u64>() as f64;
        assert!((share - hot.hottest_share()).abs() < 0.06, "{share}");
    }

    #[test]
    fn hot_order_flags_are_checked() {
        let args = Cli::try_parse_from(["bench", "--hot-orders", "100"])
            .expect("flags")
            .args;
        assert_eq!(
            (
                args.hot_orders,
                args.hot_skew,
                args.drain,
                args.drain_timeout
            ),
            (Some(100), 1.0, false, 120)
        );
        for bad in [
            vec!["--hot-orders", "0"],
            vec!["--hot-skew", "-1"],
            vec!["--hot-orders", "5", "--e2e-sample", "2"],
            vec!["--drain-timeout", "0"],
        ] {
            let argv = std::iter::once("bench").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
