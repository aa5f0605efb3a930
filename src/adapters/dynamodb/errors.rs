//! SDK errors to `StoreError`: transaction cancellations by reason, everything else with its full context.

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use super::commit::Target;
use crate::service::StoreError;

/// Any failed call, with the SDK's whole error chain (plain `Display` says only "service error").
pub fn unavailable<E, R>(operation: &str, error: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("{operation}: {}", DisplayErrorContext(error)))
}

/// A failed `TransactWriteItems` of these actions (in the order they were sent).
pub fn commit_error<R: std::fmt::Debug>(
    error: SdkError<TransactWriteItemsError, R>,
    targets: &[Target],
) -> StoreError {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        error.as_service_error()
    {
        // One reason per action, in action order; "None" for the actions that were fine.
        for (reason, target) in cancelled.cancellation_reasons().iter().zip(targets) {
            match (reason.code(), target) {
                (Some("ConditionalCheckFailed"), Target::Product { sku }) => {
                    return StoreError::VersionConflict { sku: sku.clone() };
                }
                (Some("ConditionalCheckFailed"), Target::BatchRef { reference, .. }) => {
                    return StoreError::DuplicateBatchReference(reference.clone());
                }
                // Another transaction was writing the same items at the same moment: nothing was
                // written, and trying again on fresh state is the right answer, as for a version
                // conflict (the bus retries those).
                (Some("TransactionConflict"), target) => {
                    return StoreError::VersionConflict {
                        sku: target.sku().to_owned(),
                    };
                }
                _ => {}
            }
        }
    }
    unavailable("TransactWriteItems", &error)
}
