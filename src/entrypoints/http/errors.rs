//! The error mapping of the HTTP API: each service error to a status and a `{"message": ...}` body.

use tracing::{error, warn};

use super::HttpResponse;
use crate::service::{ServiceError, StoreError};

/// Seconds a client is asked to wait (`Retry-After`) before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The answer for a failed request. Internal details are logged, never sent to the client.
pub fn error_response(error: &ServiceError) -> HttpResponse {
    let status = match error {
        ServiceError::Invalid(_) | ServiceError::InvalidSku(_) => 400,
        ServiceError::UnknownBatch(_) => 404,
        ServiceError::OutOfStock(_)
        | ServiceError::DuplicateBatch(_)
        | ServiceError::Conflict(_) => 409,
        // Contention or throttling that outlasted the retries: not the client's fault, try again.
        ServiceError::Store(
            StoreError::VersionConflict { .. }
            | StoreError::Throttled(_)
            | StoreError::Unavailable(_),
        ) => 503,
        ServiceError::Store(StoreError::CommitTooLarge(_) | StoreError::Corrupt(_))
        | ServiceError::Store(StoreError::DuplicateBatchReference(_))
        | ServiceError::Internal(_)
        | ServiceError::Notification(_) => 500,
    };
    match status {
        500 => {
            error!(%error, "internal error");
            HttpResponse::message(500, "internal error")
        }
        503 => {
            let message = match error {
                ServiceError::Store(StoreError::VersionConflict { sku }) => {
                    warn!(%error, "contention outlasted the retries");
                    format!("too many concurrent updates of product {sku}; try again")
                }
                ServiceError::Store(StoreError::Throttled(_)) => {
                    warn!(%error, "throttling outlasted the retries");
                    "service busy, try again".to_owned()
                }
                _ => {
                    error!(%error, "store unavailable");
                    "service unavailable, try again".to_owned()
                }
            };
            let mut response = HttpResponse::message(503, message);
            response
                .headers
                .push(("retry-after", RETRY_AFTER_SECONDS.to_string()));
            response
        }
        _ => HttpResponse::message(status, error.to_string()),
    }
}

impl From<ServiceError> for HttpResponse {
    fn from(error: ServiceError) -> Self {
        error_response(&error)
    }
}

impl From<StoreError> for HttpResponse {
    fn from(error: StoreError) -> Self {
        error_response(&ServiceError::from(error))
    }
}
