//! `allocate` Lambda function: `POST /allocate` → Allocate (API Gateway HTTP API, payload 2.0).
//!
//! Thin: `entrypoints::lambda::http::run` on the function's async runtime (`init::tokio_runtime`):
//! JSON logs, the bus over `TABLE_NAME` built once at cold start, then every request through the
//! HTTP contract, `entrypoints::http`, which owns the rules.

use allocation::entrypoints::lambda::{http, init};

fn main() -> Result<(), lambda_http::Error> {
    init::tokio_runtime()?.block_on(http::run())
}
