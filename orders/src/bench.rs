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
        let mut req = Request::new(Full::new(Bytes::from_static(body)));
        *req.method_mut() = Method::POST;
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
}

/// What one worker measured; merged into the summary at the end, so workers share nothing
/// on the hot path.
struct WorkerStats {
    latency: Histogram<u64>,
    sent: [u64; 3],
    ok: [u64; 3],
    errors: BTreeMap<ErrorKey, u64>,
    lifecycles: u64,
    last_done: Option<Instant>,
    /// How far behind its schedule the worker was when the window closed (open loop).
    lag_at_end: Duration,
}

impl WorkerStats {
    fn new(latency: Histogram<u64>) -> WorkerStats {
        WorkerStats {
            latency,
            sent: [0; 3],
            ok: [0; 3],
            errors: BTreeMap::new(),
            lifecycles: 0,
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
        for i in 0..3 {
            self.sent[i] += other.sent[i];
            self.ok[i] += other.ok[i];
        }
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
        self.lifecycles += other.lifecycles;
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
    target: Target,
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
        let place = self.shared.place_uri.clone();
        self.command(Step::Place, first, counted, place, PLACE_BODY)
            .await?;
        for (step, suffix) in [(Step::Start, "/start"), (Step::Complete, "/complete")] {
            let tick = self.pacer.tick().await;
            let uri = self
                .shared
                .target
                .order_uri(&self.order_id, suffix)
                .ok_or(ErrorKey::BadResponse)?;
            let done = self.command(step, tick, counted, uri, EMPTY_OBJECT).await?;
            if step == Step::Complete {
                return Ok(done);
            }
        }
        Err(ErrorKey::BadResponse)
    }

    async fn command(
        &mut self,
        step: Step,
        tick: Tick,
        counted: bool,
        uri: Uri,
        body: &'static [u8],
    ) -> Result<Instant, ErrorKey> {
        let req = self.shared.target.post(uri, body);
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

async fn bench(args: BenchArgs) -> Result<Summary> {
    let target = Target::resolve(&args.url).await?;
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
    eprintln!(
        "bench: {} with {concurrency} connections, {mode}: {} s warm-up, then {} s measured",
        args.url, args.warmup, args.duration
    );

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
    });

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
    })
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
    sent: [u64; 3],
    ok: [u64; 3],
    lifecycles: u64,
    /// Open loop: how far the workers were behind their schedule when the window closed.
    lag_at_end: Duration,
    errors: BTreeMap<ErrorKey, u64>,
    latency: Histogram<u64>,
    e2e: Option<E2eSummary>,
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
        json!({
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
        })
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
        Ok(())
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
    }

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
                fake.completes.load(SeqCst)
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
}
