//! The checks and writes of one group's write transaction: every table opened once, each commit's
//! conditions checked against the state so far, then its records written (used by the writer thread).

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::{
    decode, unavailable, Op, BATCHES, BATCH_LINES, BATCH_REFS, DEAD_LETTERS, LINES, META, OUTBOX,
    PENDING, PRODUCTS, WAITING_LINES,
};
use crate::adapters::records::{AllocationRecord, ProductRecord};
use crate::service::StoreError;

pub(super) fn storage(error: redb::StorageError) -> StoreError {
    unavailable("write", error)
}

/// The tables of one write transaction, opened once per group.
pub(super) struct Tables<'txn> {
    pub(super) products: Table<'txn, &'static str, &'static [u8]>,
    pub(super) batches: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(super) lines: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(super) batch_lines: Table<'txn, (&'static str, &'static str, &'static str), u32>,
    pub(super) waiting_lines: Table<'txn, (&'static str, u64, &'static str), u32>,
    pub(super) batch_refs: Table<'txn, &'static str, &'static str>,
    pub(super) outbox: Table<'txn, (&'static str, u64, &'static str), (u64, &'static [u8])>,
    pub(super) pending: Table<'txn, u64, (&'static str, u64, &'static str)>,
    pub(super) dead_letters: Table<'txn, u64, &'static [u8]>,
    pub(super) meta: Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        let open = |e: redb::TableError| unavailable("open table", e);
        Ok(Self {
            products: txn.open_table(PRODUCTS).map_err(open)?,
            batches: txn.open_table(BATCHES).map_err(open)?,
            lines: txn.open_table(LINES).map_err(open)?,
            batch_lines: txn.open_table(BATCH_LINES).map_err(open)?,
            waiting_lines: txn.open_table(WAITING_LINES).map_err(open)?,
            batch_refs: txn.open_table(BATCH_REFS).map_err(open)?,
            outbox: txn.open_table(OUTBOX).map_err(open)?,
            pending: txn.open_table(PENDING).map_err(open)?,
            dead_letters: txn.open_table(DEAD_LETTERS).map_err(open)?,
            meta: txn.open_table(META).map_err(open)?,
        })
    }

    /// Every condition of one commit, against the state so far (earlier requests of the group
    /// included), before it writes anything: the first failure, in record order, is its answer.
    pub(super) fn check(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut new_references: Vec<&str> = Vec::new();
        for op in ops {
            match op {
                Op::Product {
                    sku,
                    expected_version,
                    ..
                } => self.check_version(sku, *expected_version)?,
                Op::NewBatch { reference, .. } => {
                    let taken = new_references.contains(&reference.as_str())
                        || self
                            .batch_refs
                            .get(reference.as_str())
                            .map_err(storage)?
                            .is_some();
                    if taken {
                        return Err(StoreError::DuplicateBatchReference(reference.clone()));
                    }
                    new_references.push(reference);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The product's stored version must be `expected` (`None`: no product yet).
    fn check_version(&self, sku: &str, expected: Option<u64>) -> Result<(), StoreError> {
        let stored = match self.products.get(sku).map_err(storage)? {
            Some(value) => {
                Some(decode::<ProductRecord>("products", sku, value.value())?.version_number)
            }
            None => None,
        };
        if stored != expected {
            return Err(StoreError::VersionConflict {
                sku: sku.to_owned(),
            });
        }
        Ok(())
    }

    /// Removes a line's entry in `batch_lines` or `waiting_lines`, given its stored record.
    fn forget_line(&mut self, sku: &str, orderid: &str, old: &[u8]) -> Result<(), StoreError> {
        let old: AllocationRecord = decode("lines", (orderid, sku), old)?;
        if let Some(batchref) = &old.batchref {
            self.batch_lines
                .remove((sku, batchref.as_str(), orderid))
                .map_err(storage)?;
        }
        if let Some(since) = old.waiting_since {
            self.waiting_lines
                .remove((sku, since, orderid))
                .map_err(storage)?;
        }
        Ok(())
    }

    /// Writes one (checked) commit; each outbox event gets the next global sequence number.
    pub(super) fn write(&mut self, ops: &[Op], next_seq: &mut u64) -> Result<(), StoreError> {
        for op in ops {
            match op {
                Op::Product { sku, value, .. } => {
                    self.products
                        .insert(sku.as_str(), value.as_slice())
                        .map_err(storage)?;
                }
                Op::NewBatch {
                    sku,
                    reference,
                    value,
                } => {
                    self.batches
                        .insert((sku.as_str(), reference.as_str()), value.as_slice())
                        .map_err(storage)?;
                    self.batch_refs
                        .insert(reference.as_str(), sku.as_str())
                        .map_err(storage)?;
                }
                // Its reference is already in `batch_refs`: writing it again would copy that
                // table's pages in every allocation's commit.
                Op::UpdateBatch {
                    sku,
                    reference,
                    value,
                } => {
                    self.batches
                        .insert((sku.as_str(), reference.as_str()), value.as_slice())
                        .map_err(storage)?;
                }
                Op::PutAllocation {
                    sku,
                    orderid,
                    batchref,
                    waiting_since,
                    qty,
                    value,
                } => {
                    let old = self
                        .lines
                        .insert((orderid.as_str(), sku.as_str()), value.as_slice())
                        .map_err(storage)?
                        .map(|old| old.value().to_vec());
                    if let Some(old) = old {
                        self.forget_line(sku, orderid, &old)?;
                    }
                    match (batchref, waiting_since) {
                        (Some(batchref), _) => {
                            self.batch_lines
                                .insert((sku.as_str(), batchref.as_str(), orderid.as_str()), *qty)
                                .map_err(storage)?;
                        }
                        (None, Some(since)) => {
                            self.waiting_lines
                                .insert((sku.as_str(), *since, orderid.as_str()), *qty)
                                .map_err(storage)?;
                        }
                        (None, None) => {}
                    }
                }
                Op::DeleteAllocation { sku, orderid } => {
                    let old = self
                        .lines
                        .remove((orderid.as_str(), sku.as_str()))
                        .map_err(storage)?
                        .map(|old| old.value().to_vec());
                    if let Some(old) = old {
                        self.forget_line(sku, orderid, &old)?;
                    }
                }
                Op::Outbox {
                    sku,
                    version_number,
                    slot,
                    value,
                } => {
                    let key = (sku.as_str(), *version_number, slot.as_str());
                    let seq = *next_seq;
                    self.outbox
                        .insert(key, (seq, value.as_slice()))
                        .map_err(storage)?;
                    self.pending.insert(seq, key).map_err(storage)?;
                    *next_seq += 1;
                }
            }
        }
        Ok(())
    }

    pub(super) fn mark_delivered(&mut self, seqs: &[u64]) -> Result<u64, StoreError> {
        let mut removed = 0;
        for seq in seqs {
            if self.pending.remove(*seq).map_err(storage)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
