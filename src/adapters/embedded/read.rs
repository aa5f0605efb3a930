//! The read side: each read is one redb read transaction (a consistent snapshot of the last durable
//! commit), so reads run concurrently with each other and with the writer thread.

use std::collections::BTreeSet;

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition};

use super::tables::{
    decode, unavailable, OutboxCheck, StoredDeadLetter, BATCHES, BATCH_LINES, BATCH_REFS,
    DEAD_LETTERS, LINES, META, META_NEXT_SEQ, OUTBOX, PENDING, PRODUCTS, WAITING_LINES,
};
use crate::adapters::records::{
    restore_lines, restore_product, AllocationRecord, BatchRecord, LineCollector, LinesToFree,
    OutboxRecord, ProductRecord, WaitingLines,
};
use crate::domain::{EventEnvelope, Product};
use crate::service::{AllocationView, DeadLetter, StoreError};

fn begin(db: &Database) -> Result<ReadTransaction, StoreError> {
    db.begin_read().map_err(|e| unavailable("begin read", e))
}

fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<ReadOnlyTable<K, V>, StoreError> {
    txn.open_table(definition)
        .map_err(|e| unavailable("open table", e))
}

fn storage(error: redb::StorageError) -> StoreError {
    unavailable("read", error)
}

/// A read's result and how many records it read.
pub(super) type Counted<T> = (T, usize);

/// The product of this SKU (its record and batch records) with the lines of these orders, from one
/// snapshot.
pub(super) fn load(
    db: &Database,
    sku: &str,
    orderids: &[&str],
) -> Result<Counted<Option<Product>>, StoreError> {
    let txn = begin(db)?;
    let products = table(&txn, PRODUCTS)?;
    let Some(value) = products.get(sku).map_err(storage)? else {
        return Ok((None, 0));
    };
    let record: ProductRecord = decode("products", sku, value.value())?;
    let mut batches = Vec::new();
    for entry in table(&txn, BATCHES)?.range((sku, "")..).map_err(storage)? {
        let (key, value) = entry.map_err(storage)?;
        let key = key.value();
        if key.0 != sku {
            break;
        }
        batches.push(decode::<BatchRecord>("batches", key, value.value())?);
    }
    let read = 1 + batches.len();
    let mut product = restore_product(record, batches)?;
    let found = lines(&txn, sku, orderids)?;
    let read = read + found.len();
    restore_lines(&mut product, orderids, found)?;
    Ok((Some(product), read))
}

/// The stored lines of these orders (those that exist) in the product of `sku`.
fn lines(
    txn: &ReadTransaction,
    sku: &str,
    orderids: &[&str],
) -> Result<Vec<AllocationRecord>, StoreError> {
    let lines = table(txn, LINES)?;
    let mut found = Vec::new();
    for orderid in orderids {
        if let Some(value) = lines.get((*orderid, sku)).map_err(storage)? {
            found.push(decode("lines", (orderid, sku), value.value())?);
        }
    }
    Ok(found)
}

/// Adds the lines of these orders to a loaded product.
pub(super) fn load_lines(
    db: &Database,
    product: &mut Product,
    orderids: &[&str],
) -> Result<usize, StoreError> {
    let txn = begin(db)?;
    let found = lines(&txn, product.sku(), orderids)?;
    let read = found.len();
    restore_lines(product, orderids, found)?;
    Ok(read)
}

/// Adds to a loaded product the lines batch `reference` gives up first (greatest order id first).
pub(super) fn load_lines_to_free(
    db: &Database,
    product: &mut Product,
    reference: &str,
    excess: u64,
    max_lines: usize,
) -> Result<usize, StoreError> {
    let txn = begin(db)?;
    let sku = product.sku().to_owned();
    let sku = sku.as_str();
    let mut taken = LinesToFree::new(excess, max_lines);
    let mut read = 0;
    // References hold no control characters: (sku, `<reference>\0`, "") sorts after every line of
    // this batch and before any other batch's.
    let end = format!("{reference}\0");
    let range = table(&txn, BATCH_LINES)?
        .range((sku, reference, "")..(sku, end.as_str(), ""))
        .map_err(storage)?;
    for entry in range.rev() {
        if taken.is_done() {
            break;
        }
        let (key, qty) = entry.map_err(storage)?;
        let (_, batchref, orderid) = key.value();
        read += 1;
        taken.take(AllocationRecord {
            orderid: orderid.to_owned(),
            sku: sku.to_owned(),
            qty: qty.value(),
            batchref: Some(batchref.to_owned()),
            waiting_since: None,
        });
    }
    if !taken.is_done() {
        return Err(taken.shortfall(product, reference));
    }
    taken.restore_into(product)?;
    Ok(read)
}

/// Adds to a loaded product its oldest waiting lines that the stock available may take.
pub(super) fn load_waiting_lines(
    db: &Database,
    product: &mut Product,
    max_lines: usize,
) -> Result<usize, StoreError> {
    let txn = begin(db)?;
    let sku = product.sku().to_owned();
    let sku = sku.as_str();
    let mut taken = WaitingLines::new(product, max_lines);
    let mut read = 0;
    let range = table(&txn, WAITING_LINES)?
        .range((sku, 0, "")..)
        .map_err(storage)?;
    for entry in range {
        if taken.is_done() {
            break;
        }
        let (key, qty) = entry.map_err(storage)?;
        let (line_sku, since, orderid) = key.value();
        if line_sku != sku {
            break;
        }
        read += 1;
        taken.take(AllocationRecord {
            orderid: orderid.to_owned(),
            sku: sku.to_owned(),
            qty: qty.value(),
            batchref: None,
            waiting_since: Some(since),
        });
    }
    taken.restore_into(product)?;
    Ok(read)
}

pub(super) fn sku_of_batch(db: &Database, reference: &str) -> Result<Option<String>, StoreError> {
    let txn = begin(db)?;
    let refs = table(&txn, BATCH_REFS)?;
    let sku = refs.get(reference).map_err(storage)?;
    Ok(sku.map(|sku| sku.value().to_owned()))
}

pub(super) fn allocations_for_order(
    db: &Database,
    orderid: &str,
) -> Result<Vec<AllocationView>, StoreError> {
    let txn = begin(db)?;
    let mut views = Vec::new();
    for entry in table(&txn, LINES)?
        .range((orderid, "")..)
        .map_err(storage)?
    {
        let (key, value) = entry.map_err(storage)?;
        let (order, sku) = key.value();
        if order != orderid {
            break;
        }
        let line: AllocationRecord = decode("lines", (order, sku), value.value())?;
        views.push(AllocationView {
            sku: line.sku,
            batchref: line.batchref,
        });
    }
    Ok(views)
}

fn outbox_record(key: (&str, u64, &str), bytes: &[u8]) -> Result<OutboxRecord, StoreError> {
    decode("outbox", key, bytes)
}

/// Every outbox event of this SKU (delivered or not), in commit (version, index) order.
pub(super) fn outbox(db: &Database, sku: &str) -> Result<Vec<EventEnvelope>, StoreError> {
    let txn = begin(db)?;
    let mut events = Vec::new();
    for entry in table(&txn, OUTBOX)?
        .range((sku, 0, "")..)
        .map_err(storage)?
    {
        let (key, value) = entry.map_err(storage)?;
        if key.value().0 != sku {
            break;
        }
        let (_seq, bytes) = value.value();
        events.push(outbox_record(key.value(), bytes)?.envelope);
    }
    Ok(events)
}

/// Up to `limit` undelivered events, oldest first, with their global sequence numbers.
pub(super) fn pending_outbox(
    db: &Database,
    limit: usize,
) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
    let txn = begin(db)?;
    let outbox = table(&txn, OUTBOX)?;
    let mut events = Vec::new();
    for entry in table(&txn, PENDING)?.iter().map_err(storage)?.take(limit) {
        let (seq, key) = entry.map_err(storage)?;
        let (seq, key) = (seq.value(), key.value());
        let value = outbox.get(key).map_err(storage)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "embedded store: pending event {seq} points to missing outbox {key:?}"
            ))
        })?;
        let (_, bytes) = value.value();
        events.push((seq, outbox_record(key, bytes)?.envelope));
    }
    Ok(events)
}

pub(super) fn dead_letters(db: &Database) -> Result<Vec<DeadLetter>, StoreError> {
    let txn = begin(db)?;
    let mut letters = Vec::new();
    for entry in table(&txn, DEAD_LETTERS)?.iter().map_err(storage)? {
        let (id, value) = entry.map_err(storage)?;
        let id = id.value();
        let stored: StoredDeadLetter = decode("dead_letters", id, value.value())?;
        letters.push(stored.with_id(id));
    }
    Ok(letters)
}

/// Walks the whole outbox and its pending index and checks they agree (see [`OutboxCheck`]).
pub(super) fn check_outbox(db: &Database) -> Result<OutboxCheck, StoreError> {
    let txn = begin(db)?;
    let next_seq = table(&txn, META)?
        .get(META_NEXT_SEQ)
        .map_err(storage)?
        .map_or(1, |v| v.value());
    let corrupt = |what: String| StoreError::Corrupt(format!("embedded store: outbox: {what}"));
    let outbox = table(&txn, OUTBOX)?;
    let mut seqs = BTreeSet::new();
    let mut events = 0u64;
    for entry in outbox.iter().map_err(storage)? {
        let (key, value) = entry.map_err(storage)?;
        let (seq, bytes) = value.value();
        let record = outbox_record(key.value(), bytes)?;
        let (sku, version, slot) = key.value();
        if (
            record.sku.as_str(),
            record.version_number,
            record.slot.as_str(),
        ) != (sku, version, slot)
        {
            return Err(corrupt(format!(
                "record under {:?} is {}",
                key.value(),
                record.envelope.id
            )));
        }
        if seq == 0 || seq >= next_seq {
            return Err(corrupt(format!(
                "{:?} has sequence {seq}, next is {next_seq}",
                key.value()
            )));
        }
        if !seqs.insert(seq) {
            return Err(corrupt(format!("sequence {seq} used twice")));
        }
        events += 1;
    }
    let mut pending = 0u64;
    for entry in table(&txn, PENDING)?.iter().map_err(storage)? {
        let (seq, key) = entry.map_err(storage)?;
        let (seq, key) = (seq.value(), key.value());
        let stored_seq = outbox.get(key).map_err(storage)?.map(|v| v.value().0);
        if stored_seq != Some(seq) {
            return Err(corrupt(format!(
                "pending {seq} points to {key:?}, which has sequence {stored_seq:?}"
            )));
        }
        pending += 1;
    }
    Ok(OutboxCheck {
        events,
        pending,
        delivered: events - pending,
        next_seq,
    })
}
