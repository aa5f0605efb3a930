//! `publish_events` Lambda function: outbox inserts from the table's stream → the events topic (SNS),
//! reporting the first failed record (`ReportBatchItemFailures`), and marking each published item in
//! the outbox.
//!
//! Thin: JSON logs, the SNS publisher to `TOPIC_ARN` and the outbox of `TABLE_NAME` built once at cold
//! start, then every batch through `entrypoints::lambda::streams::handle`.

use allocation::entrypoints::lambda::{init, streams};
use allocation::entrypoints::logging::{self, LogFormat};
use lambda_runtime::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(LogFormat::Json);
    let (publisher, outbox) = init::relay_from_env().await?;
    let (publisher, outbox) = (&publisher, &outbox);
    lambda_runtime::run(service_fn(move |event| {
        streams::handle(publisher, outbox, event)
    }))
    .await
}
