//! `reallocate` Lambda function: AllocationRequired events from the reallocation queue (SQS, raw
//! SNS delivery) → the bus, reporting failed messages only (`ReportBatchItemFailures`).
//!
//! Thin: JSON logs, the bus over `TABLE_NAME` built once at cold start, then every batch through
//! `entrypoints::lambda::sqs::handle`, several at once on Lambda Managed Instances.

use allocation::entrypoints::lambda::{init, sqs};
use allocation::entrypoints::logging::{self, LogFormat};
use lambda_runtime::{service_fn, Error};

fn main() -> Result<(), Error> {
    init::tokio_runtime()?.block_on(async {
        logging::init(LogFormat::Json);
        let app = init::app_from_env().await?;
        // Concurrent batches where the environment takes several at once (Managed Instances):
        // their reallocations of one SKU then meet in the product's queue.
        lambda_runtime::run_concurrent(service_fn(move |event| {
            let app = app.clone();
            async move { sqs::handle(&app, event).await }
        }))
        .await
    })
}
