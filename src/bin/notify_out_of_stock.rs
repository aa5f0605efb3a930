//! `notify_out_of_stock` Lambda function: `OutOfStock` events from their SQS queue → one email per
//! event id to the purchasing team (the email topic), reporting failed records
//! (`ReportBatchItemFailures`).
//!
//! Thin: JSON logs, the bus with its email notifications built once at cold start, then every batch
//! through `entrypoints::lambda::sqs::handle` (the same adapter as `reallocate`).

use allocation::entrypoints::lambda::{init, sqs};
use allocation::entrypoints::logging::{self, LogFormat};
use lambda_runtime::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(LogFormat::Json);
    let app = init::notifier_app_from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event| sqs::handle(app, event))).await
}
