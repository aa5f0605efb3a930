//! Key and attribute names of the single-table layout (see `docs/storage.md`): one place for every prefix.

/// Partition key attribute of the table.
pub const PK: &str = "pk";
/// Sort key attribute of the table.
pub const SK: &str = "sk";
/// Partition key of the `by_order` GSI (allocation items only).
pub const GSI1PK: &str = "gsi1pk";
/// Sort key of the `by_order` GSI (the SKU).
pub const GSI1SK: &str = "gsi1sk";
/// The read model's index: allocations by order id.
pub const BY_ORDER_INDEX: &str = "by_order";
/// Type tag of every item.
pub const ENTITY: &str = "entity";
/// TTL attribute of outbox items (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

/// `sk` of the product item.
pub const PRODUCT_SK: &str = "PRODUCT";
/// `sk` prefix of batch items.
pub const BATCH_SK_PREFIX: &str = "BATCH#";
/// `sk` prefix of allocation items.
pub const ALLOCATION_SK_PREFIX: &str = "ALLOCATION#";
/// `sk` of the batch-reference item.
pub const BATCHREF_SK: &str = "BATCHREF";

/// How long an outbox item is kept (DynamoDB TTL) after it is written: 7 days.
pub const OUTBOX_TTL_SECONDS: i64 = 7 * 24 * 60 * 60;

/// The partition of a product: its product, batch and allocation items.
pub fn product_pk(sku: &str) -> String {
    format!("PRODUCT#{sku}")
}

pub fn batch_sk(reference: &str) -> String {
    format!("{BATCH_SK_PREFIX}{reference}")
}

pub fn allocation_sk(orderid: &str) -> String {
    format!("{ALLOCATION_SK_PREFIX}{orderid}")
}

/// The partition of the item mapping a batch reference to its SKU (references are global).
pub fn batchref_pk(reference: &str) -> String {
    format!("BATCHREF#{reference}")
}

/// The partition holding a SKU's outbox items.
pub fn outbox_pk(sku: &str) -> String {
    format!("OUTBOX#{sku}")
}

/// `<version zero-padded to 20>#<sequence zero-padded to 3>`: sorts in commit order.
pub fn outbox_sk(version_number: u64, sequence: u32) -> String {
    format!("{version_number:020}#{sequence:03}")
}

/// `gsi1pk` of an allocation item.
pub fn order_gsi_pk(orderid: &str) -> String {
    format!("ORDER#{orderid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_sort_keys_sort_in_commit_order() {
        assert_eq!(outbox_sk(7, 2), "00000000000000000007#002");
        assert!(outbox_sk(9, 999) < outbox_sk(10, 0));
        assert_eq!(outbox_sk(u64::MAX, 0).len(), 24);
    }
}
