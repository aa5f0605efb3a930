//! API Gateway HTTP API (payload 2.0, through `lambda_http`) ⇄ the HTTP contract of [`crate::entrypoints::http`].
//!
//! Only adaptation happens here: routing, validation and error mapping are `http::handle`'s. The
//! client's `x-request-id` (if valid), else the API Gateway request id, becomes the correlation id of
//! the events the request causes and is echoed in `x-request-id`, as the local server does; the Lambda
//! request id, the X-Ray trace id and it are fields of the invocation's tracing span. Each request is
//! logged with the caller's identity (the IAM principal, or the JWT's subject): the audit trail. Its
//! metrics are emitted in EMF (`lambda::metrics`).

use std::convert::Infallible;

use lambda_http::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::{info_span, warn, Instrument};

use super::init;
use super::metrics::BusCounts;
use crate::entrypoints::http::{self as contract, HttpRequest, HttpResponse, REQUEST_ID_HEADER};
use crate::entrypoints::logging::{self, LogFormat};
use crate::service::{AllocationsView, App, ProductRepository, RecordsRead};

/// The whole `main` of an HTTP function: JSON logs, the bus over `TABLE_NAME` built once at cold
/// start, then every request through [`handle`], several at once where the execution environment
/// takes several (Lambda Managed Instances set `AWS_LAMBDA_MAX_CONCURRENCY`; one at a time
/// otherwise): requests for one SKU then meet in its product's queue and share a load and a commit.
/// The four HTTP binaries are this one program (the route each is deployed for is the template's);
/// they differ in name only.
pub async fn run() -> Result<(), lambda_http::Error> {
    logging::init(LogFormat::Json);
    let app = init::app_from_env().await?;
    lambda_http::run_concurrent(lambda_http::service_fn(move |request| {
        let app = app.clone();
        async move { handle(&app, request).await }
    }))
    .await
}

/// Answers one API Gateway request: the function every HTTP binary runs under
/// `lambda_http::run_concurrent`.
pub async fn handle<S: ProductRepository + AllocationsView + RecordsRead>(
    app: &App<S>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let invocation = request.lambda_context_ref().cloned().unwrap_or_default();
    let lambda_request_id = invocation.request_id.clone();
    let context = request.request_context_ref();
    let client_request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(contract::valid_request_id)
        .map(str::to_owned);
    let api_request_id = context.and_then(api_request_id).map(str::to_owned);
    // Without either (a direct invoke), the Lambda request id correlates.
    let correlation_id = client_request_id
        .or(api_request_id)
        .or_else(|| Some(lambda_request_id.clone()).filter(|id| !id.is_empty()));
    let caller = context
        .and_then(caller)
        .unwrap_or_else(|| "anonymous".to_owned());
    let path = path_without_stage(&request, context);
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let http_request = HttpRequest {
        method: request.method().as_str(),
        path: &path,
        content_type,
        // lambda_http has already decoded a base64 body (`isBase64Encoded`).
        body: request.body().as_ref(),
        request_id: correlation_id.as_deref(),
    };
    let span = info_span!(
        "http",
        request_id = %lambda_request_id,
        correlation_id = correlation_id.as_deref().unwrap_or_default(),
        trace_id = invocation.xray_trace_id.as_deref().unwrap_or_default(),
        caller = %caller,
    );
    let before = BusCounts::of(app);
    // The contract logs the request (method, path, status) inside the span: with its caller.
    let response = contract::handle(app, &http_request).instrument(span).await;
    BusCounts::of(app).since(before).emit(&invocation);
    let mut response = to_lambda_response(response);
    if let Some(id) = correlation_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
    }
    Ok(response)
}

/// Who called: the IAM principal (`userArn`, else `callerId`) of a SigV4-signed request, or the JWT's
/// subject (`sub`, else `client_id`) under a JWT authorizer.
fn caller(context: &RequestContext) -> Option<String> {
    let RequestContext::ApiGatewayV2(context) = context else {
        return None;
    };
    let authorizer = context.authorizer.as_ref()?;
    if let Some(iam) = &authorizer.iam {
        if let Some(id) = iam.user_arn.as_ref().or(iam.caller_id.as_ref()) {
            return Some(id.clone());
        }
    }
    let claims = &authorizer.jwt.as_ref()?.claims;
    claims
        .get("sub")
        .or_else(|| claims.get("client_id"))
        .map(|subject| format!("jwt:{subject}"))
}

fn api_request_id(context: &RequestContext) -> Option<&str> {
    match context {
        RequestContext::ApiGatewayV2(context) => context.request_id.as_deref(),
        #[allow(unreachable_patterns)] // more variants with more lambda_http features
        _ => None,
    }
}

/// The request's path as the routes know it. HTTP API puts the stage in `rawPath` unless it is
/// `$default` (the template's); without a raw path (not an API Gateway event), the URI's path.
fn path_without_stage(request: &Request, context: Option<&RequestContext>) -> String {
    let raw = request.raw_http_path();
    let path = if raw.is_empty() {
        request.uri().path()
    } else {
        raw
    };
    let stage = match context {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" && !stage.is_empty() => path
            .strip_prefix('/')
            .and_then(|rest| rest.strip_prefix(stage))
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path)
            .to_owned(),
        _ => path.to_owned(),
    }
}

/// The contract's answer as a `lambda_http` response: status, JSON content type, extra headers.
pub fn to_lambda_response(response: HttpResponse) -> Response<Body> {
    let mut lambda_response = Response::new(Body::Text(response.body));
    *lambda_response.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = lambda_response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in response.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => warn!(header = name, value = %value, "dropping an invalid response header"),
        }
    }
    lambda_response
}
