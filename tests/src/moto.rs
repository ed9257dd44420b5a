//! A moto server (the AWS emulator from PyPI) for end-to-end tests of `--backend aws`: the
//! one named by `MOTO_ENDPOINT`, or one started for this test binary from `.venv` (see
//! `requirements-dev.txt`) and stopped when the binary ends, however it ends. Without
//! either, the test fails and says how to get one.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The endpoint URL, e.g. `http://127.0.0.1:41234`.
pub fn endpoint() -> &'static str {
    static SERVER: OnceLock<(String, Option<Mutex<Child>>)> = OnceLock::new();
    &SERVER.get_or_init(start).0
}

fn start() -> (String, Option<Mutex<Child>>) {
    if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
        return (endpoint, None);
    }
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    assert!(
        binary.exists(),
        "{} is missing: run scripts/test (it installs requirements-dev.txt into .venv) or set \
         MOTO_ENDPOINT to a running moto_server",
        binary.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The shell kills moto when our end of its stdin closes: when this process exits.
    let owner = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; read -r _; kill "$pid""#)
        .arg(&binary)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto_server");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {addr} in {READY_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (format!("http://{addr}"), Some(Mutex::new(owner)))
}

/// Environment for an `orders` process on moto: dummy credentials, a region, and resource
/// names under `prefix` so that tests sharing a server do not meet.
pub fn env(prefix: &str) -> Vec<(String, String)> {
    let names = [
        ("ORDERS_EVENTS_TABLE", "orders-events"),
        ("ORDERS_READ_MODEL_TABLE", "orders-read-model"),
        ("ORDERS_LEDGER_TABLE", "orders-ledger"),
        ("ORDERS_DOCUMENTS_BUCKET", "ordersource-documents"),
        ("ORDERS_EVENT_BUS", "ordersource"),
    ];
    let mut env: Vec<(String, String)> = names
        .iter()
        .map(|(k, v)| (k.to_string(), format!("{prefix}{v}")))
        .collect();
    env.extend(
        [
            ("ORDERS_QUEUE_PREFIX", prefix),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env
}

/// Calls a DynamoDB action on the moto server over DynamoDB's JSON protocol, as any tool
/// outside the service could (moto checks no signature): e.g. a tamperer changing a stored
/// event. Panics unless the call succeeds.
pub async fn dynamodb(action: &str, body: serde_json::Value) -> serde_json::Value {
    let endpoint = endpoint();
    let addr: SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("{endpoint} is not http://HOST:PORT: {e}"));
    let target = format!("DynamoDB_20120810.{action}");
    let response = crate::Client { addr }
        .post_with(
            "/",
            body,
            &[
                ("x-amz-target", target.as_str()),
                ("content-type", "application/x-amz-json-1.0"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{action}: {}", response.text);
    response.json
}
