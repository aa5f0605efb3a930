//! `publish_events` Lambda function: outbox inserts from the table's stream → the events topic (SNS),
//! reporting the first failed record (`ReportBatchItemFailures`).
//!
//! Thin: JSON logs, the SNS publisher to `TOPIC_ARN` built once at cold start, then every batch
//! through `entrypoints::lambda::streams::handle`. It reads no table.

use allocation::entrypoints::lambda::{init, streams};
use allocation::entrypoints::logging::{self, LogFormat};
use lambda_runtime::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(LogFormat::Json);
    let publisher = init::publisher_from_env().await?;
    let publisher = &publisher;
    lambda_runtime::run(service_fn(move |event| streams::handle(publisher, event))).await
}
