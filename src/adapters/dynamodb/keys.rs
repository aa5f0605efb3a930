//! Key and attribute names of the single-table layout (see `docs/storage.md`): one place for every prefix.

/// Partition key attribute of the table.
pub const PK: &str = "pk";
/// Sort key attribute of the table.
pub const SK: &str = "sk";
/// Partition key of the `lines` GSI (line items only): [`batch_lines_pk`] for an allocated line,
/// [`waiting_lines_pk`] for a waiting one.
pub const LINES_PK: &str = "lines_pk";
/// Sort key of the `lines` GSI: the order id (allocated), or [`waiting_line_sk`] (waiting).
pub const LINES_SK: &str = "lines_sk";
/// Order lines by batch (deallocation order) and a SKU's waiting lines (oldest first). A global
/// index: no item collection limit, eventually consistent (`docs/storage.md`).
pub const LINES_INDEX: &str = "lines";
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
/// `sk` prefix of line items (in their order's partition).
pub const LINE_SK_PREFIX: &str = "LINE#";
/// `sk` of the batch-reference item.
pub const BATCHREF_SK: &str = "BATCHREF";

/// How long an outbox item is kept (DynamoDB TTL) after it is published: 7 days. An item never
/// published never expires.
pub const OUTBOX_TTL_SECONDS: i64 = 7 * 24 * 60 * 60;

/// The partition of a product: its one item (the product with its batches).
pub fn product_pk(sku: &str) -> String {
    format!("PRODUCT#{sku}")
}

/// The partition of an order: its lines, one per SKU.
pub fn order_pk(orderid: &str) -> String {
    format!("ORDER#{orderid}")
}

/// `sk` of an order's line of this SKU.
pub fn line_sk(sku: &str) -> String {
    format!("{LINE_SK_PREFIX}{sku}")
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

/// `lines_pk` of a batch's lines: `BATCH#<reference>` (references are unique across SKUs); their
/// `lines_sk` is the order id, so read backwards they come in deallocation order.
pub fn batch_lines_pk(reference: &str) -> String {
    format!("BATCH#{reference}")
}

/// `lines_pk` of a SKU's waiting lines (back-orders): `WAITING#<sku>`.
pub fn waiting_lines_pk(sku: &str) -> String {
    format!("WAITING#{sku}")
}

/// `lines_sk` of a waiting line: `<since, zero-padded to 20>#<order id>`, so a SKU's waiting lines
/// sort oldest first.
pub fn waiting_line_sk(since: u64, orderid: &str) -> String {
    format!("{since:020}#{orderid}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_sort_keys_sort_in_commit_order() {
        assert_eq!(outbox_sk(7, "000002"), "00000000000000000007#000002");
        assert!(outbox_sk(9, "000999") < outbox_sk(10, "000000"));
    }

    #[test]
    fn waiting_lines_sort_oldest_first() {
        assert!(waiting_line_sk(9, "z") < waiting_line_sk(10, "a"));
        assert_eq!(waiting_line_sk(7, "o-1"), "00000000000000000007#o-1");
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
    }
}
