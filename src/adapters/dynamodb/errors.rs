//! SDK errors to `StoreError`: transaction cancellations by reason, everything else with its full context.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use super::commit::Target;
use crate::service::StoreError;

/// Error codes (of a call, or of a cancelled transaction's item) that mean "no capacity now".
const THROTTLING: [&str; 4] = [
    "ThrottlingException",
    "ThrottlingError",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// Whether this error code (of a call, or a cancellation reason: `ProvisionedThroughputExceeded`) is
/// throttling.
fn is_throttling(code: &str) -> bool {
    THROTTLING.contains(&code) || code == "ProvisionedThroughputExceeded"
}

/// Any failed call, with the SDK's whole error chain (plain `Display` says only "service error"):
/// `Throttled` when DynamoDB refused it for capacity, else `Unavailable`.
pub fn unavailable<E, R>(operation: &str, error: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let detail = format!("{operation}: {}", DisplayErrorContext(error));
    match error.as_service_error().and_then(|e| e.code()) {
        Some(code) if is_throttling(code) => StoreError::Throttled(detail),
        _ => StoreError::Unavailable(detail),
    }
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
                // The line is no longer as it was read (read before another commit that changed
                // it, or from an index that lagged): nothing was written; retry on fresh state.
                (Some("ConditionalCheckFailed"), Target::Line { sku }) => {
                    return StoreError::VersionConflict { sku: sku.clone() };
                }
                // Another transaction was writing the same items at the same moment: nothing was
                // written, and trying again on fresh state is the right answer, as for a version
                // conflict (the bus retries those).
                (Some("TransactionConflict"), target) => {
                    return StoreError::VersionConflict {
                        sku: target.sku().to_owned(),
                    };
                }
                // An item's partition was over capacity: nothing was written; retry after a pause.
                (Some(code), _) if is_throttling(code) => {
                    return StoreError::Throttled(format!(
                        "TransactWriteItems: {}",
                        DisplayErrorContext(&error)
                    ));
                }
                _ => {}
            }
        }
    }
    unavailable("TransactWriteItems", &error)
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;

    use super::*;

    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError, ()> {
        let mut exception =
            TransactionCanceledException::builder().message("Transaction cancelled");
        for code in codes {
            exception =
                exception.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(exception.build()),
            (),
        )
    }

    fn targets() -> Vec<Target> {
        vec![
            Target::Product { sku: "LAMP".into() },
            Target::Line { sku: "LAMP".into() },
            Target::BatchRef {
                reference: "b1".into(),
                sku: "LAMP".into(),
            },
        ]
    }

    #[test]
    fn cancellation_reasons_map_in_item_order() {
        let conflict = StoreError::VersionConflict { sku: "LAMP".into() };
        let cases = [
            (
                vec!["ConditionalCheckFailed", "None", "None"],
                conflict.clone(),
            ),
            (
                vec!["None", "None", "ConditionalCheckFailed"],
                StoreError::DuplicateBatchReference("b1".into()),
            ),
            (
                vec!["ConditionalCheckFailed", "None", "ConditionalCheckFailed"],
                conflict.clone(),
            ),
            (
                vec!["None", "ConditionalCheckFailed", "None"],
                conflict.clone(),
            ),
            (vec!["None", "TransactionConflict", "None"], conflict),
        ];
        for (codes, expected) in cases {
            assert_eq!(
                commit_error(cancelled(&codes), &targets()),
                expected,
                "{codes:?}"
            );
        }
    }

    #[test]
    fn throttled_items_make_a_throttled_commit() {
        for code in ["ThrottlingError", "ProvisionedThroughputExceeded"] {
            let error = commit_error(cancelled(&["None", code, "None"]), &targets());
            assert!(
                matches!(&error, StoreError::Throttled(m) if m.contains("Transaction cancelled")),
                "{code}: {error:?}"
            );
        }
    }

    #[test]
    fn other_failures_keep_their_detail() {
        let error = commit_error(cancelled(&["None", "ValidationError", "None"]), &targets());
        assert!(
            matches!(&error, StoreError::Unavailable(m) if m.contains("Transaction cancelled")),
            "{error:?}"
        );
        let timeout: SdkError<TransactWriteItemsError, ()> =
            SdkError::timeout_error("no answer within 3.1 s");
        let error = commit_error(timeout, &targets());
        assert!(
            matches!(&error, StoreError::Unavailable(m) if m.contains("no answer within 3.1 s")),
            "{error:?}"
        );
    }
}
