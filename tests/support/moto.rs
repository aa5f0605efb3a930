//! The tests' AWS: moto (offline AWS) for SNS and SQS, Amazon's DynamoDB Local for DynamoDB and its
//! streams (`dynamodb_local`), one of each per test binary, started on first use, stopped when the
//! test process exits (`server`).
//!
//! `moto().await` installs the tools venv (`scripts/tools-venv.sh`, a no-op when up to date), then
//! starts moto's server (`python -m moto.server -H 127.0.0.1 -p PORT`) and DynamoDB Local side by side. Its
//! [`Moto::sdk_config`] sends every service to moto but DynamoDB and DynamoDB Streams, which go to
//! DynamoDB Local, as `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_DYNAMODB` would; no process-wide
//! environment variables. Build clients per test: an SDK client's connection pool belongs to the
//! tokio runtime of the test that made it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

use super::dynamodb_local::{dynamodb_local_blocking, test_credentials, DynamoDbLocal};
pub use super::server::unique_name;
use super::server::{http_status, Server, Spec};

/// How long moto may take to answer after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server, with the DynamoDB Local beside it.
pub struct Moto {
    server: Server,
    dynamodb: &'static DynamoDbLocal,
    sdk_config: SdkConfig,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The moto server of this test binary (and its DynamoDB Local), started on first use.
pub async fn moto() -> &'static Moto {
    let started = match MOTO.get() {
        Some(started) => started,
        None => tokio::task::spawn_blocking(|| MOTO.get_or_init(Moto::start))
            .await
            .expect("the moto start-up thread panicked"),
    };
    match started {
        Ok(moto) => moto,
        Err(message) => panic!("{message}"),
    }
}

/// Each service's endpoint, as the SDK reads `AWS_ENDPOINT_URL_<SERVICE>` and `AWS_ENDPOINT_URL`.
#[derive(Debug)]
struct Endpoints {
    dynamodb: String,
    moto: String,
}

impl LoadServiceConfig for Endpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        Some(match key.service_id() {
            "DynamoDB" | "DynamoDB Streams" => self.dynamodb.clone(),
            _ => self.moto.clone(),
        })
    }
}

impl Moto {
    /// moto's `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// SDK configuration for any AWS client: DynamoDB (and its streams) on DynamoDB Local, every
    /// other service on moto.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    /// The DynamoDB Local beside this server.
    pub fn dynamodb_local(&self) -> &'static DynamoDbLocal {
        self.dynamodb
    }

    /// moto's log file.
    pub fn log(&self) -> &Path {
        &self.server.log
    }

    /// A new DynamoDB client, of DynamoDB Local (make one per test: see the module docs).
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        self.dynamodb.client()
    }

    /// What SNS was asked to publish to this topic, from moto's internal record
    /// (`/moto-api/data.json`): `(message, subject)` per `Publish`, the message being the
    /// `MessageStructure=json` document, or the text itself for a plain message (the emails).
    pub fn published_to(&self, topic_arn: &str) -> Vec<(serde_json::Value, String)> {
        use serde_json::Value;
        let url = format!("{}/moto-api/data.json", self.endpoint());
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

    /// Creates a table laid out as `template.yaml` declares it (on DynamoDB Local), under a name
    /// unique to this run, and returns the name.
    pub async fn create_table(&self, prefix: &str) -> String {
        self.dynamodb.create_table(prefix).await
    }

    /// The last lines of moto's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    fn start() -> Result<Self, String> {
        // The JVM starts while moto does.
        let dynamodb = std::thread::spawn(dynamodb_local_blocking);
        let python = super::tools::tools_python()?.to_owned();
        let args = |port: u16| {
            [
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let server = Server::start(&Spec {
            server: "moto",
            name: "shared",
            program: &python,
            args: &args,
            answers: &answers,
            ready_timeout: READY_TIMEOUT,
        })?;
        let dynamodb = dynamodb
            .join()
            .map_err(|_| "the DynamoDB Local start-up thread panicked".to_owned())??;
        let sdk_config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(test_credentials()))
            .service_config(Endpoints {
                dynamodb: dynamodb.endpoint(),
                moto: server.endpoint(),
            })
            .build();
        Ok(Moto {
            server,
            dynamodb,
            sdk_config,
        })
    }
}

/// Whether moto's own API answers 200 at this address.
fn answers(address: SocketAddr) -> bool {
    http_status(address, "/moto-api/data.json") == Some(200)
}
