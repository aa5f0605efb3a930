//! A moto server (offline AWS) for tests: one per test binary (and a second for bulk loads), started on
//! first use, stopped when the test process exits, even after a panic or a kill.
//!
//! `moto().await` installs the tools venv (`scripts/tools-venv.sh`, a no-op when up to date), then
//! starts moto's server on a free 127.0.0.1 port (what `moto_server -H 127.0.0.1 -p PORT` runs, with
//! DynamoDB requests serialized: see [`SERVE`]) behind a tiny shell watchdog whose stdin is a pipe held
//! by this process: when the process ends, for any reason, the pipe closes and the watchdog kills the
//! server. The server's output goes to `target/tmp/moto-<test binary>.log`.
//!
//! Clients are configured explicitly (endpoint, static test credentials, us-east-1): no process-wide
//! environment variables. Build clients per test (`Moto::dynamodb()`): an SDK client's connection pool
//! belongs to the tokio runtime of the test that made it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

/// How long the server may take to answer after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Spawn attempts (a free port can be taken between probing and binding).
const ATTEMPTS: usize = 3;

/// Stops the server when this process's copy of the pipe closes (at exit, whatever the cause), and
/// exits when the server does. `$0` is the server program, `$@` its arguments. SIGKILL: moto keeps
/// nothing worth a clean shutdown, and on SIGTERM its interpreter took about 4 s to exit.
const WATCHDOG: &str = r#"
exec 3<&0
"$0" "$@" </dev/null &
server=$!
{ cat <&3 >/dev/null; kill -KILL "$server" 2>/dev/null; } &
wait "$server"
"#;

/// Runs moto's server (what `moto_server` runs: `moto.server.main`) with two fixes to its DynamoDB:
///
/// - Requests are serialized. moto serves requests on threads and its TransactWriteItems is not atomic
///   under concurrency (it checks and writes item by item, and on cancellation restores a snapshot of
///   the whole table, which can undo another thread's committed transaction): with 24 concurrent
///   allocators the contract suite saw oversells and lost commits in 5 runs out of 5. DynamoDB applies
///   each request atomically; one lock around DynamoDB requests restores that. Other services (SQS
///   long polls, Streams) stay concurrent.
/// - A transaction snapshots each table once, not once per action (moto deep-copies the whole table,
///   stream records included, for every action): a 98-action commit took 8.4 s instead of 0.1 s.
///   Safe because DynamoDB requests no longer overlap.
const SERVE: &str = r#"
import copy, sys, threading
from moto import server
from moto.dynamodb import models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication as App

lock = threading.Lock()
dispatch = App.__call__
def serialized(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with lock:
            return dispatch(self, environ, start_response)
    return dispatch(self, environ, start_response)
App.__call__ = serialized

class SnapshotOnce:
    def __init__(self):
        self.copies = {}
    def deepcopy(self, obj, memo=None):
        if id(obj) not in self.copies:
            self.copies[id(obj)] = (obj, copy.deepcopy(obj))
        return self.copies[id(obj)][1]
transact = models.DynamoDBBackend.transact_write_items
def transact_write_items(self, items):
    models.copy = SnapshotOnce()
    try:
        return transact(self, items)
    finally:
        models.copy = copy
models.DynamoDBBackend.transact_write_items = transact_write_items

server.main(sys.argv[1:])
"#;

/// A running moto server.
pub struct Moto {
    endpoint: String,
    sdk_config: SdkConfig,
    log: PathBuf,
    /// The watchdog and the write end of its stdin: kept open for the life of the process.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
static BULK: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The moto server of this test binary, started on first use.
pub async fn moto() -> &'static Moto {
    started(&MOTO, "shared").await
}

/// A second server for tests that load it with bulk data (100,000 items): moto is one Python
/// process, and such a load would starve every other test's requests on the shared server.
pub async fn bulk_moto() -> &'static Moto {
    started(&BULK, "bulk").await
}

async fn started(
    server: &'static OnceLock<Result<Moto, String>>,
    name: &'static str,
) -> &'static Moto {
    let started = match server.get() {
        Some(started) => started,
        None => tokio::task::spawn_blocking(move || server.get_or_init(|| Moto::start(name)))
            .await
            .expect("the moto start-up thread panicked"),
    };
    match started {
        Ok(moto) => moto,
        Err(message) => panic!("{message}"),
    }
}

impl Moto {
    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK configuration for any AWS client pointed at this server.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// A new DynamoDB client (make one per test: see the module docs).
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config)
    }

    /// What SNS was asked to publish to this topic, from moto's internal record
    /// (`/moto-api/data.json`): `(message, subject)` per `Publish`, the message being the
    /// `MessageStructure=json` document, or the text itself for a plain message (the emails).
    pub fn published_to(&self, topic_arn: &str) -> Vec<(serde_json::Value, String)> {
        use serde_json::Value;
        let url = format!("{}/moto-api/data.json", self.endpoint);
        let text = ureq::get(&url)
            .call()
            .and_then(|mut answer| answer.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("reading {url}: {e}"));
        let data: Value = serde_json::from_str(&text).expect("moto's data.json is JSON");
        let topics = data["sns"]["Topic"]
            .as_array()
            .expect("moto's data.json lists SNS topics (internal API: check the moto version)");
        let topic = topics
            .iter()
            .find(|topic| topic["arn"] == topic_arn)
            .expect("the topic in moto's data.json");
        topic["sent_notifications"]
            .as_array()
            .expect("sent_notifications")
            .iter()
            .map(|sent| {
                let message = sent[1].as_str().unwrap_or_default();
                let document = serde_json::from_str(message)
                    .unwrap_or_else(|_| Value::String(message.to_owned()));
                (document, sent[2].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// Creates an SNS topic under a name unique to this run and returns its ARN.
    pub async fn create_topic(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        aws_sdk_sns::Client::new(&self.sdk_config)
            .create_topic()
            .name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating topic {name} in moto: {e}\n{}", self.log_tail()))
            .topic_arn()
            .unwrap_or_else(|| panic!("moto created topic {name} without an ARN"))
            .to_owned()
    }

    /// Creates a table laid out as `template.yaml` declares it, under a name unique to this run, and
    /// returns the name.
    pub async fn create_table(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        super::dynamodb_table::create_table(&self.dynamodb(), &name)
            .await
            .unwrap_or_else(|e| panic!("creating table {name} in moto: {e}\n{}", self.log_tail()));
        name
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    fn start(name: &str) -> Result<Self, String> {
        let python = super::tools::tools_python()?.to_owned();
        let log = log_path(name)?;
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            match spawn(&python, &log) {
                Ok(moto) => return Ok(moto),
                Err(failure) => failures.push(failure),
            }
        }
        Err(format!(
            "moto did not start ({ATTEMPTS} attempts):\n{}",
            failures.join("\n")
        ))
    }
}

/// A name unique to this process and call.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{n}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// `target/tmp/moto-<test binary>.log`, truncated.
fn log_path(name: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".to_owned());
    Ok(dir.join(format!("moto-{binary}-{name}.log")))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn spawn(python: &Path, log: &Path) -> Result<Moto, String> {
    let port = free_port()?;
    let output =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let errors = output
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(python)
        .args(["-c", SERVE, "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("cannot start moto with {}: {e}", python.display()))?;
    let Some(stdin) = child.stdin.take() else {
        let _ = child.kill();
        return Err("the watchdog has no stdin pipe".to_owned());
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    loop {
        if answers(address) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "moto server on port {port} exited ({status}); log {}:\n{}",
                log.display(),
                log_tail(log)
            ));
        }
        if started.elapsed() > READY_TIMEOUT {
            drop(stdin); // stops the server
            let _ = child.wait();
            return Err(format!(
                "moto server on port {port} did not answer within {READY_TIMEOUT:?}; log {}:\n{}",
                log.display(),
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let sdk_config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "moto",
        )))
        .build();
    Ok(Moto {
        endpoint,
        sdk_config,
        log: log.to_owned(),
        _watchdog: Mutex::new((child, stdin)),
    })
}

/// Whether moto's own API answers 200 at this address.
fn answers(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
