//! The stored shape of a product, shared by every store: small records, so a load reads only the
//! product's head and the lines a command needs, and a commit writes only what changed. See
//! `docs/storage.md`. The records are here; `writes` turns a commit into record writes, `restore`
//! records back into a product, `collect` gathers the lines a shrink frees or new stock is offered
//! to from records read in pages.

mod collect;
mod restore;
mod writes;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::EventEnvelope;
use crate::service::StoreError;

pub use collect::{LineCollector, LinesToFree, WaitingLines, LINES_TO_FREE_PAGE};
pub use restore::{restore_line, restore_lines, restore_product};
pub use writes::{batch_record, record_writes};

/// The product's own record: its SKU, the version every commit checks and increments, and the
/// version its running stock-out episode began at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub sku: String,
    pub version_number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_stock_since: Option<u64>,
}

/// A batch without its lines (lines are [`AllocationRecord`]s), with the total they allocate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub reference: String,
    pub sku: String,
    pub purchased_quantity: u32,
    /// The sum of the quantities of this batch's allocation records, kept in the same commits.
    pub allocated_quantity: u64,
    pub eta: Option<NaiveDate>,
}

/// One order line of the SKU: the batch holding it, or (no batch) the version since which it waits
/// for stock (a back-order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    pub orderid: String,
    pub sku: String,
    pub qty: u32,
    #[serde(default)]
    pub batchref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<u64>,
}

/// One event waiting in (or delivered from) the outbox. Ordered by `(sku, version_number, slot)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub sku: String,
    pub version_number: u64,
    /// The event's place among those of its version: see [`outbox_slot`].
    pub slot: String,
    pub envelope: EventEnvelope,
}

/// One write of a commit. A store applies all of a commit's writes atomically, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Put the product record if the stored version is `expected_version` (`None`: must not exist).
    Product {
        record: ProductRecord,
        expected_version: Option<u64>,
    },
    /// Put a new batch; its reference must not exist in any SKU (the batch-reference record).
    NewBatch(BatchRecord),
    /// Overwrite an existing batch (its quantities changed).
    UpdateBatch(BatchRecord),
    /// Put an order line; `expected` is the line as the product was loaded with it (`None`: no
    /// line), which a store whose loads are not one snapshot checks (`docs/storage.md`).
    PutAllocation {
        line: AllocationRecord,
        expected: Option<AllocationRecord>,
    },
    /// Delete an order line, expected as loaded (see `PutAllocation`).
    DeleteAllocation {
        sku: String,
        orderid: String,
        expected: Option<AllocationRecord>,
    },
    Outbox(OutboxRecord),
}

/// The place of the `index`-th event of a commit in its version's outbox: the index, zero-padded to
/// 6 digits (sorts in commit order).
pub fn outbox_slot(index: usize) -> String {
    format!("{index:06}")
}

/// Stored records that do not make a valid product of this SKU.
fn corrupt(sku: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("product {sku}: {what}"))
}
