//! A moto server (the AWS emulator from PyPI) for the AWS adapter tests: one per test
//! binary, started on first use, or an already-running one named by `MOTO_ENDPOINT`.
//!
//! The server is started by a small shell that waits on a pipe from this process and kills
//! the server when the pipe closes, which it does however this process ends (even on
//! SIGKILL): no server outlives its tests.
//!
//! Without a moto server the AWS tests fail, saying how to get one: they never pass
//! silently.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use backend::aws::{Aws, AwsConfig};

/// How long moto may take to start (about 2 s on a quiet machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

struct Server {
    endpoint: String,
    /// The shell that owns the server; its stdin is the pipe that keeps the server alive.
    _owner: Option<Mutex<Child>>,
}

/// The endpoint URL of this test binary's moto server.
pub fn endpoint() -> &'static str {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => &server.endpoint,
        Err(why) => panic!("no moto server for the AWS tests: {why}"),
    }
}

fn start() -> Result<Server, String> {
    if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
        let addr = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse::<SocketAddr>()
            .map_err(|e| format!("MOTO_ENDPOINT={endpoint:?} is not http://HOST:PORT ({e})"))?;
        wait_until_listening(addr, None)?;
        return Ok(Server {
            endpoint,
            _owner: None,
        });
    }
    let binary = match std::env::var_os("MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server"),
    };
    if !binary.exists() {
        return Err(format!(
            "{} does not exist. Run scripts/test (it creates .venv with moto), or \
             `python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt`, or set \
             MOTO_ENDPOINT=http://127.0.0.1:PORT to a running `moto_server`, or MOTO_SERVER to \
             its path",
            binary.display()
        ));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("moto-{port}.log"));
    let mut owner = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 & pid=$!; read -r _; kill "$pid""#)
        .arg(&binary)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = wait_until_listening(addr, Some(&mut owner)) {
        let mut text = String::new();
        let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
        let _ = owner.kill();
        return Err(format!("{e}; its log ({}):\n{text}", log.display()));
    }
    Ok(Server {
        endpoint: format!("http://{addr}"),
        _owner: Some(Mutex::new(owner)),
    })
}

fn wait_until_listening(addr: SocketAddr, mut owner: Option<&mut Child>) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(owner) = owner.as_deref_mut()
            && let Ok(Some(status)) = owner.try_wait()
        {
            return Err(format!("moto server exited ({status})"));
        }
        if Instant::now() > deadline {
            return Err(format!("nothing listens on {addr} after {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A name prefix no other fixture of any test run uses (random bits of a UUIDv7).
pub fn fresh_prefix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("t{}-", &id[20..])
}

/// The AWS adapters on moto for `config`, nothing created yet. Dummy credentials and the
/// region come through the SDK's config loader, not the environment.
pub async fn connect(config: AwsConfig) -> Aws {
    let endpoint = endpoint();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(endpoint)
        .load()
        .await;
    Aws::with_sdk_config(config, &sdk)
}

/// The AWS adapters on moto, over fresh resources created from the route table.
pub async fn aws() -> Aws {
    aws_with(AwsConfig::prefixed(&fresh_prefix())).await
}

/// The AWS adapters on moto for `config`, its resources created from the route table.
pub async fn aws_with(config: AwsConfig) -> Aws {
    let aws = connect(config).await;
    aws.bootstrap(events_schema::route_table())
        .await
        .expect("bootstrap on moto");
    aws
}
