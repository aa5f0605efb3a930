//! Amazon's DynamoDB Local for tests: one per test binary (and a second for bulk loads), started on
//! first use, in memory, stopped when the test process exits (`server`).
//!
//! `scripts/dynamodb-local.sh` unpacks it first (a no-op when done; it needs Java 17+). Clients are
//! configured explicitly (endpoint, static test credentials, us-east-1): no process-wide environment
//! variables. Build clients per test: an SDK client's connection pool belongs to the tokio runtime
//! of the test that made it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

use super::interposer::Interposer;
use super::server::{http_status, unique_name, Server, Spec};

/// How long the JVM may take to answer after it is spawned (about 3 s on an idle machine).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running DynamoDB Local.
pub struct DynamoDbLocal {
    server: Server,
}

static SHARED: OnceLock<Result<DynamoDbLocal, String>> = OnceLock::new();
static BULK: OnceLock<Result<DynamoDbLocal, String>> = OnceLock::new();

/// The DynamoDB Local of this test binary, started on first use.
pub async fn dynamodb_local() -> &'static DynamoDbLocal {
    started(&SHARED, "shared").await
}

/// A second server for tests that load bulk data (100,000 items), so such a load does not slow
/// every other test's requests.
pub async fn bulk_dynamodb_local() -> &'static DynamoDbLocal {
    started(&BULK, "bulk").await
}

/// Starts it from a blocking thread (for callers that are not async).
pub fn dynamodb_local_blocking() -> Result<&'static DynamoDbLocal, String> {
    SHARED
        .get_or_init(|| DynamoDbLocal::start("shared"))
        .as_ref()
        .map_err(Clone::clone)
}

async fn started(
    server: &'static OnceLock<Result<DynamoDbLocal, String>>,
    name: &'static str,
) -> &'static DynamoDbLocal {
    let started = match server.get() {
        Some(started) => started,
        None => {
            tokio::task::spawn_blocking(move || server.get_or_init(|| DynamoDbLocal::start(name)))
                .await
                .expect("the DynamoDB Local start-up thread panicked")
        }
    };
    match started {
        Ok(local) => local,
        Err(message) => panic!("{message}"),
    }
}

impl DynamoDbLocal {
    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// A new client (make one per test: see the module docs).
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(self.config().build())
    }

    /// A new client whose requests pass through this interposer.
    pub fn client_through(&self, interposer: &Arc<Interposer>) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            self.config().http_client(interposer.http_client()).build(),
        )
    }

    fn config(&self) -> aws_sdk_dynamodb::config::Builder {
        aws_sdk_dynamodb::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(test_credentials()))
    }

    /// Creates a table laid out as `template.yaml` declares it, under a name unique to this run, and
    /// returns the name.
    pub async fn create_table(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        super::dynamodb_table::create_table(&self.client(), &name)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating table {name} in DynamoDB Local: {e}\n{}",
                    self.log_tail()
                )
            });
        name
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    fn start(name: &str) -> Result<Self, String> {
        let home = installed()?;
        let library = format!(
            "-Djava.library.path={}",
            home.join("DynamoDBLocal_lib").display()
        );
        let jar = home.join("DynamoDBLocal.jar").display().to_string();
        let args = move |port: u16| {
            [
                library.as_str(),
                "-jar",
                jar.as_str(),
                "-inMemory",
                "-disableTelemetry",
                "-port",
                &port.to_string(),
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let server = Server::start(&Spec {
            server: "dynamodb-local",
            name,
            program: std::path::Path::new("java"),
            args: &args,
            answers: &answers,
            ready_timeout: READY_TIMEOUT,
        })?;
        Ok(Self { server })
    }
}

/// Any credentials do: DynamoDB Local does not check signatures.
pub fn test_credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "tests")
}

/// The directory holding `DynamoDBLocal.jar`, after `scripts/dynamodb-local.sh` made sure it is
/// unpacked (once per test binary).
fn installed() -> Result<PathBuf, String> {
    static HOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    HOME.get_or_init(|| {
        let output = Command::new("bash")
            .arg("scripts/dynamodb-local.sh")
            .current_dir(super::tools::repo())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run bash scripts/dynamodb-local.sh: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "scripts/dynamodb-local.sh failed ({}):\n{stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        stdout
            .lines()
            .last()
            .map(PathBuf::from)
            .ok_or_else(|| "scripts/dynamodb-local.sh printed no directory".to_owned())
    })
    .clone()
}

/// Whether DynamoDB Local is up: it answers a bare GET with an error status, and any answer will do.
fn answers(address: SocketAddr) -> bool {
    http_status(address, "/").is_some()
}

/// Puts these items into `table` with BatchWriteItem (25 per request, 40 tasks at once), asking
/// again for what DynamoDB left unprocessed (10 times at most): a bulk load for cost and drill tests.
pub async fn bulk_put(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<allocation::adapters::dynamodb::items::Item>,
) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
            WriteRequest::builder().put_request(put).build()
        })
        .collect();
    let mut writes = tokio::task::JoinSet::new();
    for chunk in requests.chunks(requests.len().div_ceil(40).max(25)) {
        let (client, table, chunk) = (client.clone(), table.to_owned(), chunk.to_vec());
        writes.spawn(async move {
            for batch in chunk.chunks(25) {
                let mut left = batch.to_vec();
                for _ in 0..10 {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, left)
                        .send()
                        .await
                        .unwrap();
                    left = out
                        .unprocessed_items()
                        .and_then(|u| u.get(&table))
                        .cloned()
                        .unwrap_or_default();
                    if left.is_empty() {
                        break;
                    }
                }
                assert!(left.is_empty(), "DynamoDB Local left items unprocessed");
            }
        });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap();
    }
}
