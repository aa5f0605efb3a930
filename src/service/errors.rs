//! Errors of the service layer and of the stores behind it.

use super::notifications::NotificationError;
use crate::domain::DomainError;

/// A store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer committed the product first (its version number moved): retry with fresh state.
    #[error("concurrent update of product {sku}; try again")]
    VersionConflict { sku: String },
    /// A new batch's reference is already taken (possibly by another SKU).
    #[error("Batch {0} already exists")]
    DuplicateBatchReference(String),
    /// The commit is larger than the store can write atomically.
    #[error("commit too large: {0}")]
    CommitTooLarge(String),
    /// Stored data that does not make a valid product.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The backend refused the request for lack of capacity (DynamoDB throttling): nothing was
    /// written; retry after a while.
    #[error("store throttled: {0}")]
    Throttled(String),
    /// The backend failed (network, I/O); the detail is kept for the logs.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Why a command or event could not be handled. Mapped to HTTP status codes at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("Invalid sku {0}")]
    InvalidSku(String),
    #[error("Out of stock for sku {0}")]
    OutOfStock(String),
    #[error("Unknown batch {0}")]
    UnknownBatch(String),
    #[error("Batch {0} already exists")]
    DuplicateBatch(String),
    /// A request under an existing key (order id and SKU, batch reference) that is not the request
    /// that made it: HTTP 409, naming what differs.
    #[error(transparent)]
    Conflict(DomainError),
    #[error(transparent)]
    Invalid(DomainError),
    /// A handler broke a rule of its own (e.g. used a line it did not load): a bug, not bad input.
    #[error("internal error: {0}")]
    Internal(DomainError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Notification(#[from] NotificationError),
}

impl ServiceError {
    pub fn is_version_conflict(&self) -> bool {
        matches!(
            self,
            ServiceError::Store(StoreError::VersionConflict { .. })
        )
    }

    /// Worth trying again on fresh state after a pause: a lost version race, or throttling.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ServiceError::Store(StoreError::VersionConflict { .. } | StoreError::Throttled(_))
        )
    }
}

impl From<DomainError> for ServiceError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::DuplicateBatch(reference) => ServiceError::DuplicateBatch(reference),
            DomainError::UnknownBatch(reference) => ServiceError::UnknownBatch(reference),
            DomainError::LineNotLoaded(_) | DomainError::LinesNotLoaded(_) => {
                ServiceError::Internal(error)
            }
            DomainError::OrderLineDiffers { .. } | DomainError::BatchDiffers { .. } => {
                ServiceError::Conflict(error)
            }
            other => ServiceError::Invalid(other),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::DuplicateBatchReference(reference) => {
                ServiceError::DuplicateBatch(reference)
            }
            other => ServiceError::Store(other),
        }
    }
}
