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
/// Sort key of the `by_batch` LSI (allocation items only): `batch_line_sk`.
pub const LSI1SK: &str = "lsi1sk";
/// A product's lines by batch and order id (local secondary index: strongly consistent reads).
pub const BY_BATCH_INDEX: &str = "by_batch";
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

/// `<version zero-padded to 20>#<slot>`: sorts in commit order (see `records::outbox_slot`).
pub fn outbox_sk(version_number: u64, slot: &str) -> String {
    format!("{version_number:020}#{slot}")
}

/// `lsi1sk` prefix of a batch's lines: `LINE#<length of the reference, 3 digits>#<reference>#`. The
/// length makes the prefix of one batch never the prefix of another's (`b` and `b#x`).
pub fn batch_lines_prefix(reference: &str) -> String {
    format!("LINE#{:03}#{reference}#", reference.len())
}

/// `lsi1sk` of an allocation item: its batch's prefix, then the order id, so a batch's lines sort by
/// order id (read backwards: deallocation order).
pub fn batch_line_sk(reference: &str, orderid: &str) -> String {
    format!("{}{orderid}", batch_lines_prefix(reference))
}

/// `lsi1sk` prefix of a product's waiting lines (back-orders).
pub const WAITING_LINES_PREFIX: &str = "WAITING#";

/// `lsi1sk` of a waiting line: `WAITING#<since, zero-padded to 20>#<order id>`, so a product's
/// waiting lines sort oldest first.
pub fn waiting_line_sk(since: u64, orderid: &str) -> String {
    format!("{WAITING_LINES_PREFIX}{since:020}#{orderid}")
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
        assert_eq!(outbox_sk(7, "000002"), "00000000000000000007#000002");
        assert!(outbox_sk(9, "000999") < outbox_sk(10, "000000"));
    }

    #[test]
    fn a_batch_line_prefix_never_starts_another_batch_s_lines() {
        assert_eq!(batch_line_sk("b", "o-1"), "LINE#001#b#o-1");
        assert!(waiting_line_sk(9, "z") < waiting_line_sk(10, "a"));
        assert!(!batch_line_sk("b#x", "o").starts_with(&batch_lines_prefix("b")));
    }
}
