//! A Lambda Runtime API emulator: the HTTP interface a custom runtime (here each
//! `lambda_runtime` main) polls inside a Lambda sandbox, served on a local port, and a
//! function process started as Lambda starts one: `AWS_LAMBDA_RUNTIME_API` pointing at the
//! emulator, the function's name, memory and log settings, the deployment's `ORDERS_*`
//! names, nothing else of this process's environment (but `LLVM_PROFILE_FILE` under
//! coverage).
//!
//! Implemented (Runtime API 2018-06-01): `GET /runtime/invocation/next` (the event, with
//! `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`, `-Trace-Id`),
//! `POST /runtime/invocation/{id}/response`, `POST /runtime/invocation/{id}/error`,
//! `POST /runtime/init/error`.
//!
//! It also times what a cold start costs: process spawn → first `invocation/next` (init),
//! spawn → first response, and the process's peak resident memory (`VmHWM`).

use std::{
    collections::HashMap,
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

const PREFIX: &str = "/2018-06-01/runtime";
/// An invocation's time limit, as the deadline header states it.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// `POST .../response`: the function's JSON answer.
    Response(Value),
    /// `POST .../error`: the error document and `Lambda-Runtime-Function-Error-Type`.
    Error { error_type: String, body: Value },
}

impl Outcome {
    /// The response, or a panic naming the error.
    #[track_caller]
    pub fn response(self) -> Value {
        match self {
            Outcome::Response(v) => v,
            Outcome::Error { error_type, body } => {
                panic!("the invocation failed: {error_type}: {body}")
            }
        }
    }
}

struct Invocation {
    id: String,
    event: Value,
}

struct Shared {
    function_arn: String,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_next: OnceLock<Instant>,
    init_error: Mutex<Option<String>>,
}

/// One sandbox's Runtime API.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    sender: mpsc::UnboundedSender<Invocation>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("a header value")
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.first_next.get_or_init(Instant::now);
    // One invocation at a time, as in a sandbox: the runtime asks again after answering.
    let Some(invocation) = shared.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now() + INVOCATION_TIMEOUT;
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", header("application/json"));
    headers.insert("lambda-runtime-aws-request-id", header(&invocation.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&shared.function_arn),
    );
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        deadline_ms / 1000 % (1 << 32),
        &invocation.id.replace('-', "")[..24],
        &invocation.id.replace('-', "")[16..32],
    );
    headers.insert("lambda-runtime-trace-id", header(&trace));
    (headers, invocation.event.to_string()).into_response()
}

fn finish(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    let waiter = shared
        .waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    match waiter {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        // Lambda answers an unknown or already answered request id with 400.
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_or_text(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    finish(&shared, &id, Outcome::Response(json_or_text(&body)))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_owned();
    let body = json_or_text(&body);
    finish(&shared, &id, Outcome::Error { error_type, body })
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    /// Serves the Runtime API of a function named `function_name` on a free local port.
    pub async fn start(function_name: &str) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"),
            queue: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            first_next: OnceLock::new(),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serves");
        });
        Self {
            addr,
            shared,
            sender,
            server,
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Hands `event` to the function's next `invocation/next` and waits for its answer.
    pub async fn invoke(&self, event: Value, within: Duration) -> Option<Outcome> {
        let id = uuid::Uuid::now_v7().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), tx);
        self.sender
            .send(Invocation { id, event })
            .expect("the emulator is running");
        tokio::time::timeout(within, rx).await.ok()?.ok()
    }

    /// When the runtime first asked for an invocation.
    pub fn first_next(&self) -> Option<Instant> {
        self.shared.first_next.get().copied()
    }

    /// What the runtime reported on `init/error`, if it did.
    pub fn init_error(&self) -> Option<String> {
        self.shared
            .init_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Where the Lambda binaries are: `$LAMBDA_BIN_DIR` (e.g. `target/lambda` for the size
/// profile), else the profile directory of this test executable (`target/debug`).
pub fn lambda_bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("LAMBDA_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .expect("the test executable's path")
            .parent()
            .and_then(Path::parent)
            .expect("the test executable is in <target>/<profile>/deps/")
            .to_path_buf(),
    };
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build the Lambda binaries first (cargo build -p command-api -p \
         projector -p handlers --bins), or point LAMBDA_BIN_DIR at them",
        bin.display()
    );
    bin
}

/// A function process in its own sandbox (its own Runtime API), killed on drop.
pub struct Function {
    pub name: String,
    pub api: RuntimeApi,
    child: Child,
    spawned: Instant,
    first_response: Option<Instant>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// What one cold start cost.
#[derive(Debug, Clone, Copy)]
pub struct ColdStart {
    /// Process spawn → first `invocation/next`.
    pub init: Duration,
    /// Process spawn → first answer.
    pub first_response: Duration,
    /// Peak resident set (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Function {
    /// Starts `binary` as Lambda would for a function `name` with `memory_mb` MB, with
    /// `env` (the function's own environment, as the CDK app sets it) on top of what Lambda
    /// sets, and `endpoint` as every AWS service's endpoint.
    pub async fn start(
        binary: &Path,
        name: &str,
        memory_mb: u32,
        endpoint: &str,
        env: &[(&str, String)],
    ) -> Self {
        let api = RuntimeApi::start(name).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("function.log");
        let out = File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .current_dir(dir.path())
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/01/[$LATEST]emulated")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("LAMBDA_TASK_ROOT", dir.path())
            .env("_HANDLER", "bootstrap")
            .env("TZ", ":UTC")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_SESSION_TOKEN", "testing")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (key, value) in env {
            command.env(key, value);
        }
        // Under `cargo llvm-cov` (scripts/test) the binaries are instrumented: their
        // coverage counts only if they write it where the report looks.
        if let Some(profile) = std::env::var_os("LLVM_PROFILE_FILE") {
            command.env("LLVM_PROFILE_FILE", profile);
        }
        let spawned = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Self {
            name: name.to_owned(),
            api,
            child,
            spawned,
            first_response: None,
            log,
            _dir: dir,
        }
    }

    /// Invokes the function with `event`; panics (with the function's log) if it does not
    /// answer in time or exits.
    pub async fn invoke(&mut self, event: Value) -> Outcome {
        let outcome = self.api.invoke(event, INVOCATION_TIMEOUT).await;
        self.first_response.get_or_insert_with(Instant::now);
        match outcome {
            Some(outcome) => outcome,
            None => panic!(
                "{} did not answer within {INVOCATION_TIMEOUT:?} (exit: {:?}, init error: \
                 {:?}); its log:\n{}",
                self.name,
                self.child.try_wait(),
                self.api.init_error(),
                self.log()
            ),
        }
    }

    /// What the function wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The peak resident set so far (`VmHWM` of `/proc/<pid>/status`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the function's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmHWM line")
    }

    /// The cold start's figures, once the function has answered its first invocation.
    pub fn cold_start(&self) -> ColdStart {
        let first_next = self.api.first_next().expect("the runtime asked for work");
        let first_response = self.first_response.expect("an invocation was answered");
        ColdStart {
            init: first_next - self.spawned,
            first_response: first_response - self.spawned,
            peak_rss_kib: self.peak_rss_kib(),
        }
    }
}
