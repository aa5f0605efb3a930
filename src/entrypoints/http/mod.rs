//! The HTTP contract (`docs/openapi.yaml`), independent of the server: the Lambda functions and the local
//! server both turn their requests into an [`HttpRequest`] and answer the [`HttpResponse`] of [`handle`],
//! which routes it ([`route`], the one place mapping method and path to an operation), parses its input
//! (`input`), runs its command on the bus or reads the view, and maps the outcome (`errors`).

mod errors;
mod input;

use serde_json::json;
use tracing::{info, warn};

pub use errors::error_response;
pub use input::MAX_BODY_BYTES;

/// The request id header: a client's valid one is kept as the correlation id, else the front end's
/// (the local server generates one; API Gateway has its own); the answer carries it.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A client's request id if it is 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters.
pub fn valid_request_id(id: &str) -> Option<&str> {
    (!id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(id)
}

use crate::service::{AllocationsView, App, ProductRepository};

/// A request, as any HTTP front end received it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path without the query string, e.g. `/allocations/order-1`.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// The front end's request id; becomes the correlation id of every event the request causes.
    pub request_id: Option<&'a str>,
}

/// A JSON answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Extra headers (e.g. `Allow` on 405). `Content-Type: application/json` is implied.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// `{"message": ...}`, the shape of every non-data answer.
    pub fn message(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &json!({ "message": message.into() }))
    }
}

/// Routes the request, validates its input, runs the command on the bus (or reads the view) and
/// maps the outcome.
pub async fn handle<S: ProductRepository + AllocationsView>(
    app: &App<S>,
    request: &HttpRequest<'_>,
) -> HttpResponse {
    let response = match route(request.method, request.path) {
        Ok(route) => dispatch(app, route, request).await,
        Err(response) => response,
    };
    if response.status >= 500 {
        warn!(
            method = request.method,
            path = request.path,
            status = response.status,
            "request failed"
        );
    } else {
        info!(
            method = request.method,
            path = request.path,
            status = response.status,
            "request"
        );
    }
    response
}

async fn dispatch<S: ProductRepository + AllocationsView>(
    app: &App<S>,
    route: Route,
    request: &HttpRequest<'_>,
) -> HttpResponse {
    let App { bus, store } = app;
    let correlation_id = request.request_id;
    let outcome: Result<HttpResponse, HttpResponse> = async {
        match route {
            Route::AddBatch => {
                let cmd = input::create_batch(request)?;
                bus.handle(&cmd, correlation_id).await?;
                Ok(HttpResponse::message(201, "OK"))
            }
            Route::Allocate => {
                let cmd = input::allocate(request)?;
                // Through its product's queue: concurrent allocations of one SKU are applied
                // together instead of racing (see `service::product_queue`).
                let batchref = bus.handle(&cmd, correlation_id).await?;
                Ok(HttpResponse::json(201, &json!({ "batchref": batchref })))
            }
            Route::ChangeBatchQuantity => {
                let cmd = input::change_batch_quantity(request)?;
                bus.handle(&cmd, correlation_id).await?;
                Ok(HttpResponse::message(200, "OK"))
            }
            Route::Allocations { orderid } => {
                let orderid = input::path_order_id(&orderid)?;
                let views = store.allocations_for_order(&orderid).await?;
                if views.is_empty() {
                    Ok(HttpResponse::message(404, "not found"))
                } else {
                    Ok(HttpResponse::json(200, &json!(views)))
                }
            }
        }
    }
    .await;
    outcome.unwrap_or_else(|error| error)
}

/// An operation of the API: the route table below maps each method and path to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    AddBatch,
    Allocate,
    ChangeBatchQuantity,
    /// `orderid` is still percent-encoded as it appeared in the path.
    Allocations {
        orderid: String,
    },
}

/// Maps a request line to its route, or answers 404 (unknown path) / 405 (known path, other method).
pub fn route(method: &str, path: &str) -> Result<Route, HttpResponse> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (allowed, route) = match segments.as_slice() {
        ["add_batch"] => ("POST", Route::AddBatch),
        ["allocate"] => ("POST", Route::Allocate),
        ["change_batch_quantity"] => ("POST", Route::ChangeBatchQuantity),
        ["allocations", orderid] => (
            "GET",
            Route::Allocations {
                orderid: (*orderid).to_owned(),
            },
        ),
        _ => return Err(HttpResponse::message(404, format!("no route for {path}"))),
    };
    if method.eq_ignore_ascii_case(allowed) {
        Ok(route)
    } else {
        let mut response = HttpResponse::message(
            405,
            format!("method {method} not allowed on {path}; use {allowed}"),
        );
        response.headers.push(("allow", allowed.to_owned()));
        Err(response)
    }
}
