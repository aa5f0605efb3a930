//! The read side (book ch. 12's views): what `GET /allocations/{orderid}` answers, read straight from
//! the store, without the bus, the unit of work or the domain.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// One row of the `GET /allocations/{orderid}` read model: the batch holding the order's line of
/// this SKU, or `None` while the line waits for stock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AllocationView {
    pub sku: String,
    pub batchref: Option<String>,
}

/// The allocations read model.
pub trait AllocationsView: Send + Sync + 'static {
    /// Which batch holds each of this order's lines (may be eventually consistent).
    fn allocations_for_order(
        &self,
        orderid: &str,
    ) -> impl Future<Output = Result<Vec<AllocationView>, StoreError>> + Send;
}
