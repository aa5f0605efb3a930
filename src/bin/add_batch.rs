//! `add_batch` Lambda function: `POST /add_batch` → CreateBatch (API Gateway HTTP API, payload 2.0).
//!
//! Thin: `entrypoints::lambda::http::run` (JSON logs, the bus over `TABLE_NAME` built once at cold
//! start, then every request through the HTTP contract, `entrypoints::http`, which owns the rules).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    allocation::entrypoints::lambda::http::run().await
}
