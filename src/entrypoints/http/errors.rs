//! The error mapping of the HTTP API: each service error to a status and a `{"message": ...}` body.

use tracing::error;

use super::HttpResponse;
use crate::service::{ServiceError, StoreError};

/// The answer for a failed request. Internal details are logged, never sent to the client.
pub fn error_response(error: &ServiceError) -> HttpResponse {
    let status = match error {
        ServiceError::Invalid(_) | ServiceError::InvalidSku(_) => 400,
        ServiceError::UnknownBatch(_) => 404,
        ServiceError::OutOfStock(_) | ServiceError::DuplicateBatch(_) => 409,
        ServiceError::Store(StoreError::VersionConflict { .. }) => 409,
        ServiceError::Store(StoreError::Unavailable(_)) => 503,
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
            error!(%error, "store unavailable");
            HttpResponse::message(503, "service unavailable, try again")
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
