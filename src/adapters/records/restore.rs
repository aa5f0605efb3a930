//! Records back into a product: its head (product and batch records), then the lines a command needs.

use super::{corrupt, AllocationRecord, BatchRecord, ProductRecord};
use crate::domain::{Batch, OrderLine, Product};
use crate::service::StoreError;

/// Rebuilds a product's head (its record and batches with their totals); records that do not make a
/// valid product are `Corrupt`.
pub fn restore_product(
    product: ProductRecord,
    batches: impl IntoIterator<Item = BatchRecord>,
) -> Result<Product, StoreError> {
    let mut restored: Vec<Batch> = Vec::new();
    for record in batches {
        let batch = Batch::restore(
            record.reference,
            record.sku,
            record.purchased_quantity,
            record.eta,
            record.allocated_quantity,
        )
        .map_err(|e| corrupt(&product.sku, e))?;
        restored.push(batch);
    }
    Product::restore(
        &product.sku,
        product.version_number,
        restored,
        product.out_of_stock_since,
    )
    .map_err(|e| corrupt(&product.sku, e))
}

/// The line of an allocation record, checked against its product.
fn record_line(product: &Product, record: &AllocationRecord) -> Result<OrderLine, StoreError> {
    if record.sku != product.sku() {
        return Err(corrupt(
            product.sku(),
            format!("line {} is of sku {}", record.orderid, record.sku),
        ));
    }
    OrderLine::parse(&record.orderid, &record.sku, record.qty)
        .map_err(|e| corrupt(product.sku(), e))
}

/// Adds the lines loaded for a command: for each order asked for, its line (a record found) or the
/// knowledge that it has none. A line in a batch the product does not hold was written after the
/// product was read: the state moved, so this is a `VersionConflict` (retry on fresh state).
pub fn restore_lines(
    product: &mut Product,
    orderids: &[&str],
    found: impl IntoIterator<Item = AllocationRecord>,
) -> Result<(), StoreError> {
    for record in found {
        restore_line(product, &record)?;
    }
    for orderid in orderids {
        product.restore_no_line(orderid);
    }
    Ok(())
}

/// Adds one stored line, allocated or waiting (see [`restore_lines`]).
pub fn restore_line(product: &mut Product, record: &AllocationRecord) -> Result<(), StoreError> {
    let line = record_line(product, record)?;
    match (&record.batchref, record.waiting_since) {
        (Some(batchref), _) => {
            product
                .restore_line(&line, batchref)
                .map_err(|_| StoreError::VersionConflict {
                    sku: product.sku().to_owned(),
                })
        }
        (None, Some(since)) => product
            .restore_waiting_line(&line, since)
            .map_err(|e| corrupt(product.sku(), e)),
        (None, None) => Err(corrupt(
            product.sku(),
            format!(
                "line {} has neither a batch nor a waiting time",
                record.orderid
            ),
        )),
    }
}
