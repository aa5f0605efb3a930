//! `reallocate` Lambda function: AllocationRequired events from the reallocation queue (SQS, raw
//! SNS delivery) → the bus, reporting failed messages only (`ReportBatchItemFailures`).
//!
//! Thin: JSON logs, the bus over `TABLE_NAME` built once at cold start, then every batch through
//! `entrypoints::lambda::sqs::handle`.

use allocation::entrypoints::lambda::{init, sqs};
use allocation::entrypoints::logging::{self, LogFormat};
use lambda_runtime::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(LogFormat::Json);
    let bus = init::bus_from_env().await?;
    let bus = &bus;
    lambda_runtime::run(service_fn(move |event| sqs::handle(bus, event))).await
}
