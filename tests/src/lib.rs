//! End-to-end harness: starts the real `orders` binary (`orders dev`) on a fresh data
//! directory and a free port, and talks HTTP/1.1 to it like any outside client would.
//!
//! - [`TestApp::spawn`] (alias [`spawn_app`]) starts the service; dropping the handle kills it.
//! - [`TestApp::stop_graceful`] sends SIGTERM, [`TestApp::kill9`] sends SIGKILL,
//!   [`TestApp::start`] starts it again on the same data directory.
//! - [`Client`] sends one request per connection and returns a [`Resp`] (status, headers,
//!   text and JSON), with helpers to check RFC 9457 problem documents.
//! - [`wait_until`] / [`wait_for`] poll with a deadline; tests never sleep to synchronise.
//!
//! The binary is `$ORDERS_BIN` if set, else `<target>/debug/orders` next to the test
//! executable: build it first with `cargo build -p orders`.

pub mod audit;
pub mod moto;

use std::{
    fs::File,
    future::Future,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How long the service may take to print its address.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one HTTP exchange may take before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful shutdown may take.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the projector may take to catch up in tests.
pub const PROJECTION_TIMEOUT: Duration = Duration::from_secs(20);

/// The message every successful write carries (what seed 000's clients check).
pub const OK_MESSAGE: &str = "Order processed successfully";
/// The first event's `prevHash`.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the `orders` binary is: `$ORDERS_BIN`, else `<target>/debug/orders` (the test
/// executable lives in `<target>/debug/deps/`).
pub fn orders_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ORDERS_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ORDERS_BIN={} is not a file; build it first: cargo build -p orders",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in <target>/<profile>/deps/");
    let bin = profile_dir.join(format!("orders{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the orders binary is missing at {}; build it first: cargo build -p orders \
         (or point ORDERS_BIN at it)",
        bin.display()
    );
    bin
}

/// Starts `orders dev` on a fresh data directory. Same as [`TestApp::spawn`].
pub fn spawn_app() -> TestApp {
    TestApp::spawn()
}

/// A running (or stopped) `orders dev` process and its data directory.
///
/// Dropping it stops the process (SIGTERM, SIGKILL after [`DROP_STOP_TIMEOUT`]) and then
/// removes the directory.
pub struct TestApp {
    /// The address of the current process (changes on every start).
    pub addr: SocketAddr,
    /// A client for the current process.
    pub client: Client,
    child: Option<Child>,
    stdout_rest: Arc<Mutex<String>>,
    stdout_reader: Option<std::thread::JoinHandle<()>>,
    starts: usize,
    /// Extra environment for every start (e.g. test hooks).
    env: Vec<(String, String)>,
    /// Extra `orders dev` arguments for every start (e.g. `--backend aws`).
    args: Vec<String>,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts `orders dev --listen 127.0.0.1:0 --data <fresh dir>` with `RUST_LOG=warn`.
    pub fn spawn() -> TestApp {
        Self::spawn_with_env(&[])
    }

    /// Like [`TestApp::spawn`], with extra environment variables for the service.
    pub fn spawn_with_env(env: &[(&str, &str)]) -> TestApp {
        Self::spawn_with(&[], env)
    }

    /// Like [`TestApp::spawn`], with extra `orders dev` arguments and environment.
    pub fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::Builder::new()
            .prefix("ordersource-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let mut app = TestApp {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            client: Client {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            child: None,
            stdout_rest: Arc::default(),
            stdout_reader: None,
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            dir,
        };
        app.start();
        app
    }

    /// The service's data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Leaves `name` out of the environment of the next starts (e.g. a test hook).
    pub fn remove_env(&mut self, name: &str) {
        self.env.retain(|(k, _)| k != name);
    }

    /// The service's stderr (all starts), for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("orders.log")
    }

    /// The last `max` bytes of the service's stderr.
    pub fn log_tail(&self, max: usize) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let from = log.len().saturating_sub(max);
        String::from_utf8_lossy(&log[from..]).into_owned()
    }

    /// The service's stderr (all starts, a `kill -9` loses no line already written) as
    /// plain text lines: the terminal colours the logger adds even to a file removed.
    pub fn log_lines(&self) -> Vec<String> {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(&log)
            .lines()
            .map(strip_ansi)
            .collect()
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id of the running service.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the service is not running")
            .id()
    }

    /// Starts the service (again) on this handle's data directory and waits for its
    /// `listening on http://...` line.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "start: the service is already running"
        );
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the log file");
        let rust_log = std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = Command::new(orders_bin())
            .arg("dev")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(self.data_dir())
            .args(&self.args)
            .env("RUST_LOG", rust_log)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("ORDERS_LISTEN")
            .env_remove("ORDERS_DATA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", orders_bin().display()));
        self.starts += 1;

        // Read the first stdout line on a thread so that a silent process cannot hang the
        // test; keep draining stdout afterwards (it must stay empty).
        let stdout = child.stdout.take().expect("piped stdout");
        let rest = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<std::io::Result<String>>();
        let rest_w = rest.clone();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let mut remainder = String::new();
            let _ = reader.read_to_string(&mut remainder);
            rest_w.lock().unwrap().push_str(&remainder);
        });
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "reading the service's stdout: {e}\nlog:\n{}",
                    self.log_tail(4000)
                );
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the service printed no address within {STARTUP_TIMEOUT:?}\nlog:\n{}",
                    self.log_tail(4000)
                );
            }
        };
        let addr = line
            .strip_suffix('\n')
            .and_then(|l| l.strip_prefix("listening on http://"))
            .and_then(|a| a.parse::<SocketAddr>().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "expected exactly `listening on http://127.0.0.1:<port>` on stdout, got {line:?}\nlog:\n{}",
                self.log_tail(4000)
            );
        };
        assert!(
            addr.ip().is_loopback() && addr.port() != 0,
            "bad address line {line:?}"
        );
        self.addr = addr;
        self.client = Client { addr };
        self.child = Some(child);
        self.stdout_rest = rest;
        self.stdout_reader = Some(reader);
    }

    /// Sends SIGTERM and waits (with a deadline) for the process to exit; returns its exit
    /// status. Panics if it does not stop in time.
    pub async fn stop_graceful(&mut self) -> ExitStatus {
        self.stop_with_signal("TERM").await
    }

    /// Sends `signal` (a `kill -<signal>` name such as `TERM` or `INT`) and waits (with a
    /// deadline) for the process to exit; returns its exit status. Panics if it does not
    /// stop within [`SHUTDOWN_TIMEOUT`].
    pub async fn stop_with_signal(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("stop: the service is not running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("running kill");
        assert!(
            status.success(),
            "kill -{signal} {} failed: {status}",
            child.id()
        );
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the service") {
                self.join_stdout();
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the service did not exit within {SHUTDOWN_TIMEOUT:?} of SIG{signal}\nlog:\n{}",
                    self.log_tail(4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the process dies at once, wherever it was.
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("kill9: the service is not running");
        child.kill().expect("SIGKILL the service");
        child.wait().expect("reaping the service");
        self.join_stdout();
    }

    /// SIGTERM, expect a clean exit (status 0), start again on the same data directory.
    pub async fn restart_graceful(&mut self) {
        let status = self.stop_graceful().await;
        assert!(
            status.success(),
            "the service exited with {status} after SIGTERM\nlog:\n{}",
            self.log_tail(4000)
        );
        self.start();
    }

    /// SIGKILL, then start again on the same data directory.
    pub fn restart_after_crash(&mut self) {
        self.kill9();
        self.start();
    }

    /// What the process printed on stdout after its address line (for a stopped process:
    /// everything; it should be nothing).
    pub fn stdout_after_address(&self) -> String {
        self.stdout_rest.lock().unwrap().clone()
    }

    fn join_stdout(&mut self) {
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
    }

    // ---- HTTP shortcuts on the current process ----

    pub async fn get(&self, path: &str) -> Resp {
        self.client.get(path).await
    }
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.client.get_with(path, headers).await
    }
    pub async fn post(&self, path: &str, body: impl Into<Payload>) -> Resp {
        self.client.post(path, body).await
    }
    pub async fn post_with(
        &self,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.client.post_with(path, body, headers).await
    }
    pub async fn put(&self, path: &str, body: impl Into<Payload>) -> Resp {
        self.client.put(path, body).await
    }
    pub async fn put_with(
        &self,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.client.put_with(path, body, headers).await
    }
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.client.send(method, path, body, headers).await
    }

    // ---- Domain shortcuts ----

    /// `POST /orders` with `orderId` and `description`; expects 201.
    pub async fn place(&self, order_id: &str, description: &str) -> Value {
        let r = self
            .post(
                "/orders",
                json!({"orderId": order_id, "description": description}),
            )
            .await
            .expect_status(201);
        r.json["order"].clone()
    }

    /// `GET /orders/{id}`; expects 200, returns the order.
    pub async fn order(&self, order_id: &str) -> Value {
        self.get(&format!("/orders/{order_id}"))
            .await
            .expect_status(200)
            .json
    }

    /// `GET /orders/{id}/events`; expects 200, checks the chain, returns the events.
    pub async fn events(&self, order_id: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/orders/{order_id}/events"))
            .await
            .expect_status(200);
        let items = r.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("events of {order_id}: no items array: {}", r.text))
            .clone();
        assert_chain(order_id, &items);
        items
    }

    /// Everything observable about one order through the strongly consistent reads: the
    /// status and body of `GET /orders/{id}` and of `GET /orders/{id}/events`.
    pub async fn snapshot(&self, order_id: &str) -> Snapshot {
        let order = self.get(&format!("/orders/{order_id}")).await;
        let events = self.get(&format!("/orders/{order_id}/events")).await;
        Snapshot {
            order: (order.status, order.json),
            events: (events.status, events.json),
        }
    }

    /// `GET /health`'s `projectorLag`.
    pub async fn projector_lag(&self) -> u64 {
        let r = self.get("/health").await.expect_status(200);
        r.json["projectorLag"]
            .as_u64()
            .unwrap_or_else(|| panic!("/health has no projectorLag number: {}", r.text))
    }

    /// Polls `/health` until `projectorLag` is 0.
    pub async fn wait_projected(&self) {
        wait_until(
            PROJECTION_TIMEOUT,
            "the projector to catch up (projectorLag 0)",
            || async { self.projector_lag().await == 0 },
        )
        .await;
    }

    /// Pages through `GET /orders` (with `query`, e.g. `status=received&limit=2`) following
    /// `nextCursor`; returns every item in page order.
    pub async fn list_all(&self, query: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let path = match &cursor {
                Some(c) if query.is_empty() => format!("/orders?cursor={c}"),
                Some(c) => format!("/orders?{query}&cursor={c}"),
                None if query.is_empty() => "/orders".to_string(),
                None => format!("/orders?{query}"),
            };
            let r = self.get(&path).await.expect_status(200);
            let page = r.json["items"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}: no items array: {}", r.text));
            items.extend(page.iter().cloned());
            match &r.json["nextCursor"] {
                Value::Null => return items,
                Value::String(c) => {
                    assert!(
                        !page.is_empty(),
                        "GET {path}: an empty page with a nextCursor"
                    );
                    cursor = Some(c.clone());
                }
                other => panic!("GET {path}: nextCursor is neither a string nor null: {other}"),
            }
        }
        panic!("GET /orders?{query}: more than 10000 pages; the cursor does not advance");
    }
}

/// How long dropping a [`TestApp`] waits for the process to exit after SIGTERM.
pub const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl Drop for TestApp {
    /// SIGTERM first: a process built for coverage (`cargo llvm-cov`, see scripts/test)
    /// writes its profile only when it exits, and a SIGKILL would lose what the test ran.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + DROP_STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_stdout();
    }
}

/// What [`TestApp::snapshot`] sees of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub order: (u16, Value),
    pub events: (u16, Value),
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Payload {
    Empty,
    Json(Value),
    Raw(Vec<u8>),
}

impl From<()> for Payload {
    fn from(_: ()) -> Self {
        Payload::Empty
    }
}
impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Payload::Json(v)
    }
}
impl From<&Value> for Payload {
    fn from(v: &Value) -> Self {
        Payload::Json(v.clone())
    }
}
impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::Raw(s.as_bytes().to_vec())
    }
}
impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::Raw(s.into_bytes())
    }
}
impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Payload::Raw(b)
    }
}

/// A GET of an absolute `http://IP:PORT/...` URL (a presigned S3 link on moto), with the
/// same bounds as any other request.
pub async fn get_url(url: &str) -> Resp {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = authority
        .parse()
        .unwrap_or_else(|e| panic!("{url}: not IP:PORT ({e})"));
    Client { addr }
        .get(if path.is_empty() { "/" } else { path })
        .await
}

/// `r`, or where its redirect (the AWS backend's presigned document link) leads.
pub async fn follow(r: Resp) -> Resp {
    if r.status != 307 {
        return r;
    }
    let location = r
        .header("location")
        .unwrap_or_else(|| panic!("{}: a 307 without Location", r.request))
        .to_owned();
    get_url(&location).await
}

/// An HTTP/1.1 client for one service address: a fresh connection per request, every
/// exchange bounded by [`REQUEST_TIMEOUT`]. `Copy`, so tasks can each take one.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, (), &[]).await
    }
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, (), headers).await
    }
    pub async fn post(&self, path: &str, body: impl Into<Payload>) -> Resp {
        self.send(Method::POST, path, body, &[]).await
    }
    pub async fn post_with(
        &self,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.send(Method::POST, path, body, headers).await
    }
    pub async fn put(&self, path: &str, body: impl Into<Payload>) -> Resp {
        self.send(Method::PUT, path, body, &[]).await
    }
    pub async fn put_with(
        &self,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.send(Method::PUT, path, body, headers).await
    }

    /// Sends a request; panics if there is no HTTP response (connection error, timeout).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let what = format!("{method} {path}");
        match self.try_send(method, path, body, headers).await {
            Ok(r) => r,
            Err(e) => panic!("{what}: no HTTP response from {}: {e}", self.addr),
        }
    }

    /// Sends a request; `Err` when no HTTP response came back (for crash tests).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let request_line = format!("{method} {path}");
        let request = build_request(self.addr, method, path, body.into(), headers)?;
        let exchange = async {
            let mut conn = self.connect().await?;
            conn.exchange(request, &request_line).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{request_line}: no response within {REQUEST_TIMEOUT:?}"
            )),
        }
    }

    /// Opens a keep-alive connection for several requests in a row.
    pub async fn connect(&self) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(Conn {
            addr: self.addr,
            sender,
            driver: tokio::spawn(conn),
        })
    }
}

type ReqBody = Full<std::io::Cursor<Vec<u8>>>;

fn build_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Payload,
    headers: &[(&str, &str)],
) -> Result<Request<ReqBody>, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    let sends_content_type = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    let bytes = match body {
        Payload::Empty => Vec::new(),
        Payload::Json(v) => serde_json::to_vec(&v).expect("JSON body"),
        Payload::Raw(b) => b,
    };
    if !bytes.is_empty() && !sends_content_type {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(std::io::Cursor::new(bytes)))
        .map_err(|e| format!("building the request: {e}"))
}

/// One HTTP/1.1 connection, kept alive across requests (as browsers and SDKs do).
pub struct Conn {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
    driver: tokio::task::JoinHandle<hyper::Result<()>>,
}

impl Conn {
    /// Sends one request on this connection; `Err` if the connection cannot carry it (for
    /// example because the server closed it).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: impl Into<Payload>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let request_line = format!("{method} {path}");
        let request = build_request(self.addr, method, path, body.into(), headers)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request, &request_line)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{request_line}: no response within {REQUEST_TIMEOUT:?}"
            )),
        }
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed() && !self.driver.is_finished()
    }

    async fn exchange(
        &mut self,
        request: Request<ReqBody>,
        request_line: &str,
    ) -> Result<Resp, String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes()
            .to_vec();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            request: request_line.to_owned(),
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: bytes,
            text,
            json,
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// `METHOD path`, for failure messages.
    pub request: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub text: String,
    /// The body as JSON; `Null` when it is not JSON.
    pub json: Value,
}

impl Resp {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status; returns the response for chaining.
    #[track_caller]
    pub fn expect_status(self, status: u16) -> Resp {
        assert_eq!(
            self.status, status,
            "{} answered {} (expected {status}): {}",
            self.request, self.status, self.text
        );
        self
    }

    /// Asserts a successful write: the status, `{message, order}` and the strong ETag of
    /// the order's version. Returns the order.
    #[track_caller]
    pub fn expect_write(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{} answered {} (expected {status}): {}",
            self.request, self.status, self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}: content-type",
            self.request
        );
        assert_eq!(
            self.json["message"], OK_MESSAGE,
            "{}: message in {}",
            self.request, self.text
        );
        let order = &self.json["order"];
        let version = order["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: order without a version: {}", self.request, self.text));
        assert_eq!(
            self.header("etag"),
            Some(format!("\"{version}\"").as_str()),
            "{}: ETag must be the order's version, quoted",
            self.request
        );
        order.clone()
    }

    /// Asserts an RFC 9457 problem document with this status: `application/problem+json`,
    /// `type`, `title`, `status`, `detail`, `error` (= `detail`), and well-formed `errors`
    /// if present. Returns the document.
    #[track_caller]
    pub fn expect_problem(&self, status: u16) -> &Value {
        let ctx = format!("{} answered {}: {}", self.request, self.status, self.text);
        assert_eq!(self.status, status, "expected {status}; {ctx}");
        assert!(self.status < 500, "a 5xx; {ctx}");
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct == "application/problem+json" || ct.starts_with("application/problem+json;"),
            "content-type {ct:?} is not application/problem+json; {ctx}"
        );
        let p = &self.json;
        assert!(p.is_object(), "not a JSON object; {ctx}");
        for member in ["type", "title", "detail", "error"] {
            let v = p[member]
                .as_str()
                .unwrap_or_else(|| panic!("no string `{member}`; {ctx}"));
            assert!(!v.trim().is_empty(), "empty `{member}`; {ctx}");
        }
        assert_eq!(
            p["status"].as_u64(),
            Some(u64::from(status)),
            "`status` member; {ctx}"
        );
        assert_eq!(
            p["error"], p["detail"],
            "`error` must equal `detail`; {ctx}"
        );
        if let Some(errors) = p.get("errors") {
            let errors = errors
                .as_array()
                .unwrap_or_else(|| panic!("`errors` is not an array; {ctx}"));
            for e in errors {
                assert!(
                    e["field"].as_str().is_some_and(|f| !f.is_empty())
                        && e["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "`errors` items need `field` and `message`; {ctx}"
                );
            }
        }
        p
    }

    /// The `field`s of the problem's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts a problem with this status whose `errors` name `field`.
    #[track_caller]
    pub fn expect_field_error(&self, status: u16, field: &str) -> &Value {
        let p = self.expect_problem(status);
        let fields = self.error_fields();
        assert!(
            fields.iter().any(|f| f == field),
            "{}: expected a field error for `{field}`, got fields {fields:?}: {}",
            self.request,
            self.text
        );
        p
    }

    /// The problem's `detail`.
    pub fn detail(&self) -> &str {
        self.json["detail"].as_str().unwrap_or("")
    }
}

/// Polls `check` (every 20 ms) until it returns true; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` (every 20 ms) until it returns `Some`; panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh order id with a readable prefix.
pub fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Checks one order's events: versions 1..n without gaps, all of this order, distinct
/// event ids, `prevHash` of v1 = 64 zeros, each `prevHash` = the previous `hash`, and each
/// `hash` = SHA-256 of the RFC 8785 canonical JSON of the envelope without `hash`.
#[track_caller]
pub fn assert_chain(order_id: &str, events: &[Value]) {
    assert!(!events.is_empty(), "order {order_id} has no events");
    let mut prev = ZERO_HASH.to_string();
    let mut ids = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        let ctx = format!("order {order_id}, event #{i}: {e}");
        assert_eq!(
            e["version"].as_u64(),
            Some(i as u64 + 1),
            "versions must be 1..n; {ctx}"
        );
        assert_eq!(e["orderId"], order_id, "{ctx}");
        assert!(
            e["type"].as_str().is_some_and(|t| t.starts_with("Order")),
            "type; {ctx}"
        );
        let id = e["eventId"]
            .as_str()
            .unwrap_or_else(|| panic!("eventId; {ctx}"));
        let uuid =
            uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("eventId is not a UUID; {ctx}"));
        assert_eq!(uuid.get_version_num(), 7, "eventId must be a UUIDv7; {ctx}");
        assert!(ids.insert(id.to_owned()), "duplicate eventId; {ctx}");
        assert_eq!(
            e["prevHash"].as_str(),
            Some(prev.as_str()),
            "prevHash; {ctx}"
        );
        let hash = e["hash"]
            .as_str()
            .unwrap_or_else(|| panic!("hash; {ctx}"))
            .to_owned();
        assert_eq!(recompute_hash(e), hash, "hash does not recompute; {ctx}");
        prev = hash;
    }
}

/// Lowercase hex SHA-256 of the RFC 8785 canonical JSON of `envelope` without `hash`.
pub fn recompute_hash(envelope: &Value) -> String {
    let mut without = envelope.clone();
    if let Some(map) = without.as_object_mut() {
        map.remove("hash");
    }
    let canonical = serde_json_canonicalizer::to_vec(&without).expect("canonical JSON");
    hex::encode(Sha256::digest(&canonical))
}

/// The `type`s of events, in order.
pub fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `line` without its ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `name=value` in a plain log line (values end at a space, `}` or `,`; quotes
/// removed), e.g. a span field or an event field.
pub fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line
        .match_indices(&format!("{name}="))
        .find(|(i, _)| *i == 0 || matches!(line.as_bytes()[i - 1], b' ' | b'{' | b','))
        .map(|(i, m)| i + m.len())?;
    let rest = &line[start..];
    let end = rest.find([' ', '}', ',']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// The UTC timestamp a log line starts with.
pub fn log_time(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let first = line.split_whitespace().next()?;
    chrono::DateTime::parse_from_rfc3339(first)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
