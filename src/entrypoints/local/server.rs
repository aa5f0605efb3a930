//! The local HTTP server: axum adapted to the shared HTTP contract (`entrypoints::http::handle`).
//!
//! Every request, whatever its method, path, headers or body, goes to ONE fallback handler, which reads
//! the body (at most one byte past the contract's limit, so the contract itself answers "too large"),
//! picks or makes the request id, and hands the request to the shared contract; axum has no route of its
//! own and no extractor that could reject a request, so every answer is the contract's JSON. The only
//! local-only route is `GET /admin/dead-letters`. [`serve`] runs it with the event flow until a
//! shutdown signal, then drains both.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tracing::{info, warn, Instrument};

use super::flow::{EventFlow, FlowConfig};
use super::relay::RelayStats;

use crate::entrypoints::http::{self, HttpRequest, HttpResponse, MAX_BODY_BYTES};
use crate::service::{AllocationsView, App, OutboxFeed, ProductRepository};

/// The local-only admin route listing the dead letters.
pub const DEAD_LETTERS_PATH: &str = "/admin/dead-letters";
pub use crate::entrypoints::http::{MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER};

/// The router: everything goes to [`handle`].
pub fn router<S: ProductRepository + AllocationsView + OutboxFeed>(app: App<S>) -> Router {
    Router::new().fallback(handle::<S>).with_state(app)
}

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the HTTP API on `listener` with the event flow, until `shutdown` resolves; then finishes
/// the requests in flight (bounded by [`SHUTDOWN_GRACE`]) and flushes the event flow.
pub async fn serve<S: ProductRepository + AllocationsView + OutboxFeed>(
    app: App<S>,
    listener: TcpListener,
    flow: &FlowConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<RelayStats> {
    use axum::serve::ListenerExt;

    let events = EventFlow::start(&app, flow);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown.await;
    info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => warn!(%error, "server error"),
        Ok(Err(error)) => warn!(%error, "server task failed"),
        Err(_) => warn!("requests still in flight after {SHUTDOWN_GRACE:?}; closing them"),
    }
    info!("flushing the event flow");
    Ok(events.shutdown().await)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("received SIGINT"),
        () = terminate => info!("received SIGTERM"),
    }
}

/// The URL a bound address serves, e.g. `http://127.0.0.1:5005`.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The client's `x-request-id` if valid (`http::valid_request_id`), else a new random one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(http::valid_request_id)
        .map_or_else(|| format!("{:032x}", fastrand::u128(..)), str::to_owned)
}

/// Bodies over the contract's limit are still read (and dropped) up to this size before answering, so
/// that an ordinary client, still sending, gets the 400 instead of a reset connection. Past it the
/// connection is closed after the answer.
pub const MAX_DRAINED_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Reads the body, keeping at most `limit + 1` bytes (enough for the contract to answer that it is too
/// large) and draining the rest up to [`MAX_DRAINED_BODY_BYTES`]. `Err` if it could not be read.
async fn read_body(mut body: Body, limit: usize) -> Result<Vec<u8>, axum::Error> {
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(data) = frame?.into_data() {
            seen = seen.saturating_add(data.len());
            if bytes.len() <= limit {
                let keep = (limit + 1 - bytes.len()).min(data.len());
                bytes.extend_from_slice(&data[..keep]);
            }
            if seen > MAX_DRAINED_BODY_BYTES {
                break;
            }
        }
    }
    Ok(bytes)
}

async fn handle<S: ProductRepository + AllocationsView + OutboxFeed>(
    State(app): State<App<S>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let request_id = request_id(&parts.headers);
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let span = tracing::info_span!("request", request_id = %request_id);
    let response = async {
        let body = match read_body(body, MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(error) => {
                warn!(%error, "cannot read the request body");
                return HttpResponse::message(
                    400,
                    format!("cannot read the request body: {error}"),
                );
            }
        };
        if path == DEAD_LETTERS_PATH {
            return dead_letters(&app, method).await;
        }
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        let request = HttpRequest {
            method,
            path,
            content_type,
            body: &body,
            request_id: Some(&request_id),
        };
        http::handle(&app, &request).await
    }
    .instrument(span)
    .await;
    info!(request_id = %request_id, method, path, status = response.status,
        latency_us = started.elapsed().as_micros() as u64, "request");
    into_axum(response, &request_id)
}

/// `GET /admin/dead-letters`: every dead letter, oldest first, as a JSON array.
async fn dead_letters<S: OutboxFeed + ProductRepository>(
    app: &App<S>,
    method: &str,
) -> HttpResponse {
    if method != "GET" {
        let mut response = HttpResponse::message(
            405,
            format!("method {method} not allowed on {DEAD_LETTERS_PATH}; use GET"),
        );
        response.headers.push(("allow", "GET".to_owned()));
        return response;
    }
    match app.store.dead_letters().await {
        Ok(letters) => HttpResponse::json(200, &serde_json::json!(letters)),
        Err(error) => http::error_response(&error.into()),
    }
}

fn into_axum(response: HttpResponse, request_id: &str) -> Response {
    let mut answer = Response::new(Body::from(response.body));
    *answer.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = answer.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    for (name, value) in response.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_client_request_id_is_kept_and_a_bad_one_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        let generated = request_id(&headers);
        assert_eq!(generated.len(), 32);
        assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        assert_ne!(request_id(&headers), long);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_body_is_kept_up_to_one_byte_past_the_limit() {
        let body = Body::from(vec![b'a'; 10]);
        assert_eq!(read_body(body, 100).await.unwrap().len(), 10);
        let body = Body::from(vec![b'a'; 1000]);
        assert_eq!(read_body(body, 100).await.unwrap().len(), 101);
        let body = Body::from(vec![b'a'; MAX_DRAINED_BODY_BYTES + 10]);
        assert_eq!(read_body(body, 100).await.unwrap().len(), 101);
    }
}
