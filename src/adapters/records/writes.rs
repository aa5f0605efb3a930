//! A commit as record writes: the product record, each touched batch and line, the outbox events.

use super::{outbox_slot, AllocationRecord, BatchRecord, OutboxRecord, ProductRecord, RecordWrite};
use crate::domain::{Batch, LineStatus};
use crate::service::ProductWrite;

/// The record writes of one product's commit: the product record, each touched batch and line (its
/// current state, or a delete when it is gone), and the outbox events.
pub fn record_writes(write: &ProductWrite<'_>) -> Vec<RecordWrite> {
    let product = write.product;
    let sku = product.sku();
    let mut writes = Vec::with_capacity(
        2 + write.changes.changed_batches.len() + write.changes.lines.len() + write.outbox.len(),
    );
    writes.push(RecordWrite::Product {
        record: ProductRecord {
            sku: sku.to_owned(),
            version_number: product.version_number(),
            out_of_stock_since: product.out_of_stock_since(),
        },
        expected_version: write.expected_version,
    });
    for reference in &write.changes.new_batches {
        if let Some(batch) = product.batch(reference) {
            writes.push(RecordWrite::NewBatch(batch_record(batch)));
        }
    }
    for reference in &write.changes.changed_batches {
        if let Some(batch) = product.batch(reference) {
            writes.push(RecordWrite::UpdateBatch(batch_record(batch)));
        }
    }
    for orderid in &write.changes.lines {
        let expected = product
            .stored_line_status(orderid)
            .map(|status| allocation_record(sku, orderid, status));
        writes.push(match product.line_status(orderid) {
            Some(status) => RecordWrite::PutAllocation {
                line: allocation_record(sku, orderid, status),
                expected,
            },
            None => RecordWrite::DeleteAllocation {
                sku: sku.to_owned(),
                orderid: orderid.to_string(),
                expected,
            },
        });
    }
    for (index, envelope) in write.outbox.iter().enumerate() {
        writes.push(RecordWrite::Outbox(OutboxRecord {
            sku: sku.to_owned(),
            version_number: product.version_number(),
            slot: outbox_slot(index),
            envelope: envelope.clone(),
        }));
    }
    writes
}

fn allocation_record(
    sku: &str,
    orderid: &str,
    (status, qty): (LineStatus<'_>, u32),
) -> AllocationRecord {
    AllocationRecord {
        orderid: orderid.to_owned(),
        sku: sku.to_owned(),
        qty,
        batchref: match status {
            LineStatus::Allocated(batch) => Some(batch.reference().to_owned()),
            LineStatus::Waiting { .. } => None,
        },
        waiting_since: match status {
            LineStatus::Allocated(_) => None,
            LineStatus::Waiting { since } => Some(since),
        },
    }
}

/// A batch's record.
pub fn batch_record(batch: &Batch) -> BatchRecord {
    BatchRecord {
        reference: batch.reference().to_owned(),
        sku: batch.sku().to_owned(),
        purchased_quantity: batch.purchased_quantity(),
        allocated_quantity: batch.allocated_quantity(),
        eta: batch.eta(),
    }
}
