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
/// TTL attribute of outbox items (epoch seconds), set when the item is published.
pub const EXPIRES_AT: &str = "expires_at";
/// When an outbox item was committed (epoch seconds): the `pending` index's sort key.
pub const CREATED_AT: &str = "created_at";
/// Partition key of the `pending` GSI, present only on outbox items not yet published: see
/// [`pending_shard`].
pub const PENDING_SHARD: &str = "pending_shard";
/// Outbox items not yet published, by shard and commit time (sparse: publishing removes
/// `pending_shard`, and the item leaves the index).
pub const PENDING_INDEX: &str = "pending";
/// How many partitions the `pending` index spreads the outbox over (a GSI partition takes about
/// 1,000 writes a second).
pub const PENDING_SHARDS: u32 = 8;

/// `sk` of the product item.
pub const PRODUCT_SK: &str = "PRODUCT";
/// `sk` prefix of batch items.
pub const BATCH_SK_PREFIX: &str = "BATCH#";
/// `sk` prefix of allocation items.
pub const ALLOCATION_SK_PREFIX: &str = "ALLOCATION#";
/// `sk` of the batch-reference item.
pub const BATCHREF_SK: &str = "BATCHREF";

/// How long an outbox item is kept (DynamoDB TTL) after it is published: 7 days. An item never
/// published never expires.
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

/// `pending_shard` of an unpublished outbox item: `PENDING#<n>`, n in `0..PENDING_SHARDS` chosen by
/// a stable hash (FNV-1a) of the event id.
pub fn pending_shard(event_id: &str) -> String {
    let hash = event_id.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("PENDING#{}", hash % PENDING_SHARDS)
}

/// Every value of `pending_shard`.
pub fn pending_shards() -> impl Iterator<Item = String> {
    (0..PENDING_SHARDS).map(|n| format!("PENDING#{n}"))
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
    }

    #[test]
    fn every_pending_shard_is_listed_and_the_same_event_always_has_the_same() {
        let listed: Vec<String> = pending_shards().collect();
        let used: std::collections::BTreeSet<String> = (0..200)
            .map(|n| pending_shard(&format!("SKU:{n}:0")))
            .collect();
        assert_eq!(
            used.len(),
            PENDING_SHARDS as usize,
            "events spread over every shard"
        );
        assert!(used.iter().all(|shard| listed.contains(shard)));
        assert_eq!(pending_shard("LAMP:7:0"), pending_shard("LAMP:7:0"));
        assert!(!batch_line_sk("b#x", "o").starts_with(&batch_lines_prefix("b")));
    }
}
