//! `allocate` Lambda function: `POST /allocate` → Allocate (API Gateway HTTP API, payload 2.0).
//!
//! Thin: JSON logs, the bus over `TABLE_NAME` built once at cold start, then every request through
//! `entrypoints::lambda::http::handle` (which owns no rule: the HTTP contract is `entrypoints::http`).

use allocation::entrypoints::lambda::{http, init};
use allocation::entrypoints::logging::{self, LogFormat};
use lambda_http::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(LogFormat::Json);
    let bus = init::bus_from_env().await?;
    let bus = &bus;
    lambda_http::run(service_fn(move |request| http::handle(bus, request))).await
}
