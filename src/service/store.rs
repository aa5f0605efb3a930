//! A store as an adapter provides it: the repository, the allocations view, and the two small ports
//! that watch it (the records its loads read, for the metrics; the outbox it wrote, for the contract
//! suite's audit). Each user asks only for the port it uses; `Store` names the whole, which every
//! adapter implements and `tests/support/contract.rs` checks.

use std::future::Future;

use super::{AllocationsView, ProductRepository, StoreError};
use crate::domain::EventEnvelope;

/// How many product, batch and allocation records the loads have read since the store was made:
/// what a load costs, counted rather than timed (the `RecordsRead` metric, and the cost tests).
pub trait RecordsRead {
    fn records_read(&self) -> u64;
}

/// The audit of what a SKU's commits announced.
pub trait OutboxAudit {
    /// Every outbox event recorded for this SKU, in commit order (the store contract checks it
    /// against the state written with it).
    fn outbox(
        &self,
        sku: &str,
    ) -> impl Future<Output = Result<Vec<EventEnvelope>, StoreError>> + Send;
}

/// Every port a store adapter implements (embedded, DynamoDB; the tests' in-memory one).
pub trait Store: ProductRepository + AllocationsView + RecordsRead + OutboxAudit {}

impl<S: ProductRepository + AllocationsView + RecordsRead + OutboxAudit> Store for S {}
