//! A measurement prototype, not a function of the service: `allocate` served by an axum `Router`
//! through `lambda_http` (the HTTP contract behind axum routes instead of the contract's own routing),
//! to compare its cold start and size with the `allocate` binary (`docs/measurements.md`, "One axum
//! Router for Lambda and the local server?").
//!
//! Build and measure: `scripts/measure-axum-router.sh`.

use std::sync::Arc;

use allocation::adapters::dynamodb::DynamoDbStore;
use allocation::entrypoints::http::MAX_BODY_BYTES;
use allocation::entrypoints::lambda::{http, init};
use allocation::entrypoints::logging::{self, LogFormat};
use allocation::service::Bus;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use axum::Router;

type App = Arc<Bus<DynamoDbStore>>;

/// Every route hands the request to the same adapter as the `allocate` binary.
async fn contract(State(bus): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES + 1)
        .await
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default();
    let request = lambda_http::Request::from_parts(parts, lambda_http::Body::from(body));
    let response = match http::handle(&bus, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response.map(axum::body::Body::new)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init(LogFormat::Json);
    let bus = Arc::new(init::bus_from_env().await?);
    let app = Router::new()
        .route("/add_batch", any(contract))
        .route("/allocate", any(contract))
        .route("/change_batch_quantity", any(contract))
        .route("/allocations/{orderid}", any(contract))
        .fallback(contract)
        .with_state(bus);
    lambda_http::run(app).await
}
