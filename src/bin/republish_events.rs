//! `republish_events` Lambda function: publishes the outbox events the stream relay lost (on a
//! schedule), or a SKU's events of a time range again (on an operator's request).
//!
//! Thin: JSON logs, the SNS publisher to `TOPIC_ARN` and the outbox of `TABLE_NAME` built once at cold
//! start, then every invocation through `entrypoints::lambda::republish::handle`.

use allocation::entrypoints::lambda::{init, republish};
use allocation::entrypoints::logging::{self, LogFormat};
use lambda_runtime::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(LogFormat::Json);
    let republisher = init::republisher_from_env().await?;
    let republisher = &republisher;
    lambda_runtime::run(service_fn(move |event| {
        republish::handle(republisher, event)
    }))
    .await
}
