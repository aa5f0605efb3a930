//! Cold start of every function: settings from the environment, the AWS configuration and clients,
//! the app (store and bus) or the SNS publisher, each built once per execution environment.
//!
//! Settings are read before anything else, so a missing variable fails the start with a clear message
//! (never a panic inside a request). The AWS configuration makes no network call here: Lambda sets the
//! region and credentials in the environment, which the default chains read first (no IMDS lookup).

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use tracing::error;

use super::republish::Republisher;
use crate::adapters::dynamodb::{DynamoDbOutbox, DynamoDbStore, NotificationLog};
use crate::adapters::email::EmailNotifications;
use crate::adapters::sns::SnsPublisher;
use crate::service::{deployed_app, App, Bootstrap};

/// The table of products, batches, allocations and outbox (template.yaml: `!Ref Table`).
pub const TABLE_NAME: &str = "TABLE_NAME";
/// The events topic (template.yaml: `!Ref EventsTopic`).
pub const TOPIC_ARN: &str = "TOPIC_ARN";
/// The topic the out-of-stock emails go to (template.yaml: `!Ref OutOfStockEmailTopic`).
pub const EMAIL_TOPIC_ARN: &str = "EMAIL_TOPIC_ARN";
/// How long after its commit an outbox item still pending is published by the republisher (seconds;
/// optional, default [`DEFAULT_REPUBLISH_AFTER`]).
pub const REPUBLISH_AFTER_SECONDS: &str = "REPUBLISH_AFTER_SECONDS";
/// The stream relay publishes within seconds; five minutes leaves it room to retry first.
pub const DEFAULT_REPUBLISH_AFTER: Duration = Duration::from_secs(300);

/// A function cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error("environment variable {0} is not set (template.yaml sets it for every function)")]
    Missing(&'static str),
    #[error("environment variable {0} is empty")]
    Empty(&'static str),
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(&'static str),
    #[error("environment variable {0} must be a whole number of seconds, not {1:?}")]
    NotSeconds(&'static str, String),
}

/// A required, non-empty environment variable.
pub fn required_env(name: &'static str) -> Result<String, InitError> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Err(InitError::Empty(name)),
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => Err(InitError::Missing(name)),
        Err(std::env::VarError::NotUnicode(_)) => Err(InitError::NotUnicode(name)),
    }
}

/// How long one attempt of an AWS call may take (connecting included), and the whole call with the
/// SDK's own retries: well inside the functions' 10 s timeout and the bus's 3 s retry budget, so a
/// stuck connection becomes an error the bus can answer (503) instead of a timed-out invocation.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_500);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The AWS configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`...), with
/// bounded attempt and operation times.
pub async fn aws_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// The app (bus and store) over the DynamoDB table named by `TABLE_NAME` (the HTTP functions and
/// `reallocate`).
pub async fn app_from_env() -> Result<App<DynamoDbStore>, InitError> {
    let table_name = required_env(TABLE_NAME).inspect_err(log_init_error)?;
    let config = aws_config().await;
    Ok(app_over(&config, table_name))
}

/// The app over this table, with a DynamoDB client of this configuration.
pub fn app_over(config: &SdkConfig, table_name: impl Into<String>) -> App<DynamoDbStore> {
    let client = aws_sdk_dynamodb::Client::new(config);
    deployed_app(Arc::new(DynamoDbStore::new(client, table_name)))
}

/// The app of `notify_out_of_stock`: over the table named by `TABLE_NAME`, its bus sending each
/// delivered `OutOfStock` once, by email, to the topic named by `EMAIL_TOPIC_ARN`.
pub async fn notifier_app_from_env() -> Result<App<DynamoDbStore>, InitError> {
    let table_name = required_env(TABLE_NAME).inspect_err(log_init_error)?;
    let topic_arn = required_env(EMAIL_TOPIC_ARN).inspect_err(log_init_error)?;
    let config = aws_config().await;
    Ok(notifier_app_over(&config, table_name, topic_arn))
}

/// The notifier's app over this table and email topic, with clients of this configuration.
pub fn notifier_app_over(
    config: &SdkConfig,
    table_name: impl Into<String>,
    email_topic_arn: impl Into<String>,
) -> App<DynamoDbStore> {
    let table_name = table_name.into();
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let log = NotificationLog::new(dynamodb.clone(), &table_name);
    let email = EmailNotifications::new(aws_sdk_sns::Client::new(config), email_topic_arn, log);
    Bootstrap::new(Arc::new(DynamoDbStore::new(dynamodb, table_name)))
        .notifications(Arc::new(email))
        .app()
}

/// The relay's parts (`publish_events`): the SNS publisher to the topic named by `TOPIC_ARN`, and the
/// outbox of the table named by `TABLE_NAME`, where it marks what it published.
pub async fn relay_from_env() -> Result<(SnsPublisher, DynamoDbOutbox), InitError> {
    let topic_arn = required_env(TOPIC_ARN).inspect_err(log_init_error)?;
    let table_name = required_env(TABLE_NAME).inspect_err(log_init_error)?;
    let config = aws_config().await;
    Ok((
        SnsPublisher::new(aws_sdk_sns::Client::new(&config), topic_arn),
        DynamoDbOutbox::new(aws_sdk_dynamodb::Client::new(&config), table_name),
    ))
}

/// The republisher (`republish_events`): the relay's parts and `REPUBLISH_AFTER_SECONDS`.
pub async fn republisher_from_env() -> Result<Republisher<SnsPublisher, DynamoDbOutbox>, InitError>
{
    let grace = match std::env::var(REPUBLISH_AFTER_SECONDS) {
        Err(_) => DEFAULT_REPUBLISH_AFTER,
        Ok(text) => text
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| InitError::NotSeconds(REPUBLISH_AFTER_SECONDS, text))
            .inspect_err(log_init_error)?,
    };
    let (publisher, outbox) = relay_from_env().await?;
    Ok(Republisher {
        publisher,
        outbox,
        grace,
    })
}

fn log_init_error(error: &InitError) {
    error!(%error, "the function cannot start");
}

/// Set by Lambda Managed Instances: how many invocations one execution environment runs at once
/// (`lambda_runtime::run_concurrent` starts that many pollers). Unset on standard Lambda.
pub const MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";

/// The async runtime of a function: one thread where an environment serves one invocation at a time
/// (standard Lambda: a second thread would only cost start-up time), a worker per vCPU where it
/// serves several (Managed Instances), so concurrent requests use every core of the instance.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let concurrent = std::env::var(MAX_CONCURRENCY)
        .ok()
        .and_then(|value| value.trim().parse::<u32>().ok())
        .is_some_and(|limit| limit > 1);
    if concurrent {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
}
