//! The stored shape of a product, shared by every store: small records, so a commit writes only what
//! changed. See `docs/storage.md`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{Batch, EventEnvelope, OrderLine, Product};
use crate::service::{ProductWrite, StoreError};

/// The product's own record: its SKU and the version every commit checks and increments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub sku: String,
    pub version_number: u64,
}

/// A batch without its lines (lines are [`AllocationRecord`]s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub reference: String,
    pub sku: String,
    pub purchased_quantity: u32,
    pub eta: Option<NaiveDate>,
}

/// One allocated order line: which batch of the SKU holds the order's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    pub orderid: String,
    pub sku: String,
    pub qty: u32,
    pub batchref: String,
}

/// One event waiting in (or delivered from) the outbox. Ordered by `(sku, version_number, sequence)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub sku: String,
    pub version_number: u64,
    pub sequence: u32,
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
    /// Overwrite an existing batch (its quantity changed).
    UpdateBatch(BatchRecord),
    PutAllocation(AllocationRecord),
    DeleteAllocation {
        sku: String,
        orderid: String,
    },
    Outbox(OutboxRecord),
}

/// The record writes of one product's commit: the product record, each touched batch and line (its
/// current state, or a delete when it is gone), and the outbox events.
pub fn record_writes(write: &ProductWrite<'_>) -> Vec<RecordWrite> {
    let product = write.product;
    let sku = product.sku();
    let mut writes = vec![RecordWrite::Product {
        record: ProductRecord {
            sku: sku.to_owned(),
            version_number: product.version_number(),
        },
        expected_version: write.expected_version,
    }];
    for reference in &write.changes.new_batches {
        if let Some(batch) = product.batch(reference) {
            writes.push(RecordWrite::NewBatch(batch_record(batch)));
        }
    }
    for reference in &write.changes.changed_batches {
        if write.changes.new_batches.contains(reference) {
            continue;
        }
        if let Some(batch) = product.batch(reference) {
            writes.push(RecordWrite::UpdateBatch(batch_record(batch)));
        }
    }
    for orderid in &write.changes.lines {
        let allocated = product.allocation_of(orderid).and_then(|batch| {
            let qty = batch.allocated_qty(orderid)?;
            Some(AllocationRecord {
                orderid: orderid.clone(),
                sku: sku.to_owned(),
                qty,
                batchref: batch.reference().to_owned(),
            })
        });
        writes.push(match allocated {
            Some(record) => RecordWrite::PutAllocation(record),
            None => RecordWrite::DeleteAllocation {
                sku: sku.to_owned(),
                orderid: orderid.clone(),
            },
        });
    }
    for (sequence, envelope) in write.outbox.iter().enumerate() {
        writes.push(RecordWrite::Outbox(OutboxRecord {
            sku: sku.to_owned(),
            version_number: product.version_number(),
            sequence: u32::try_from(sequence).unwrap_or(u32::MAX),
            envelope: envelope.clone(),
        }));
    }
    writes
}

fn batch_record(batch: &Batch) -> BatchRecord {
    BatchRecord {
        reference: batch.reference().to_owned(),
        sku: batch.sku().to_owned(),
        purchased_quantity: batch.purchased_quantity(),
        eta: batch.eta(),
    }
}

/// Rebuilds a product from its records; records that do not make a valid product are `Corrupt`.
pub fn restore_product(
    product: ProductRecord,
    batches: impl IntoIterator<Item = BatchRecord>,
    allocations: impl IntoIterator<Item = AllocationRecord>,
) -> Result<Product, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("product {}: {what}", product.sku));
    let mut restored: Vec<Batch> = Vec::new();
    for record in batches {
        let batch = Batch::new(
            record.reference,
            record.sku,
            record.purchased_quantity,
            record.eta,
        )
        .map_err(|e| corrupt(e.to_string()))?;
        restored.push(batch);
    }
    for record in allocations {
        let batch = restored
            .iter_mut()
            .find(|b| b.reference() == record.batchref)
            .ok_or_else(|| {
                corrupt(format!(
                    "line {} in unknown batch {}",
                    record.orderid, record.batchref
                ))
            })?;
        let line = OrderLine::new(record.orderid, record.sku, record.qty)
            .map_err(|e| corrupt(e.to_string()))?;
        if !batch.allocate(&line) {
            return Err(corrupt(format!(
                "line {} does not fit batch {}",
                line.orderid(),
                batch.reference()
            )));
        }
    }
    Product::restore(product.sku.clone(), product.version_number, restored)
        .map_err(|e| corrupt(e.to_string()))
}
