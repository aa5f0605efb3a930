//! The route table of the HTTP API: the one place that maps method and path to an operation.

use super::HttpResponse;

/// An operation of the API.
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
