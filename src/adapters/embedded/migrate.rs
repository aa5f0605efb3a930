//! Opening a file of an earlier layout: its tables are rewritten into today's, in the transaction
//! that opens the file (all or nothing), once.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::tables::{unavailable, LAYOUT2_ALLOCATIONS, LAYOUT2_ORDERS, LINES};
use crate::service::StoreError;

/// Layout 2 → 3: the lines move from `allocations` (keyed sku, order id) to `lines` (keyed order
/// id, sku), which also serves `allocations_for_order`, so the `orders` read model goes: one table
/// fewer written by every allocation. Values are unchanged. Takes time in proportion to the lines
/// (logged before and after).
pub(super) fn from_layout_2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let storage = |e: redb::StorageError| unavailable("migrate to layout 3", e);
    let open = |e: redb::TableError| unavailable("migrate to layout 3: open table", e);
    let old = txn.open_table(LAYOUT2_ALLOCATIONS).map_err(open)?;
    let total = old.len().map_err(storage)?;
    tracing::warn!(
        lines = total,
        "embedded store: migrating the file from layout 2 to 3 (lines keyed by order)"
    );
    {
        let mut lines = txn.open_table(LINES).map_err(open)?;
        for entry in old.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let (sku, orderid) = key.value();
            lines
                .insert((orderid, sku), value.value())
                .map_err(storage)?;
        }
    }
    drop(old);
    let delete = |e: redb::TableError| unavailable("migrate to layout 3: delete table", e);
    txn.delete_table(LAYOUT2_ALLOCATIONS).map_err(delete)?;
    txn.delete_table(LAYOUT2_ORDERS).map_err(delete)?;
    tracing::warn!(lines = total, "embedded store: migrated to layout 3");
    Ok(())
}
