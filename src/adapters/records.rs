//! The stored shape of a product, shared by every store: small records, so a load reads only the
//! product's head and the lines a command needs, and a commit writes only what changed. See
//! `docs/storage.md`.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{Batch, EventEnvelope, LineStatus, OrderLine, Product};
use crate::service::{ProductWrite, StoreError};

/// The product's own record: its SKU, the version every commit checks and increments, and the
/// version its running stock-out episode began at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub sku: String,
    pub version_number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_stock_since: Option<u64>,
}

/// A batch without its lines (lines are [`AllocationRecord`]s), with the total they allocate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub reference: String,
    pub sku: String,
    pub purchased_quantity: u32,
    /// The sum of the quantities of this batch's allocation records, kept in the same commits.
    pub allocated_quantity: u64,
    pub eta: Option<NaiveDate>,
}

/// One order line of the SKU: the batch holding it, or (no batch) the version since which it waits
/// for stock (a back-order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    pub orderid: String,
    pub sku: String,
    pub qty: u32,
    #[serde(default)]
    pub batchref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<u64>,
}

/// One event waiting in (or delivered from) the outbox. Ordered by `(sku, version_number, slot)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub sku: String,
    pub version_number: u64,
    /// The event's place among those of its version: see [`outbox_slot`].
    pub slot: String,
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
    /// Overwrite an existing batch (its quantities changed).
    UpdateBatch(BatchRecord),
    /// Put an order line; `expected` is the line as the product was loaded with it (`None`: no
    /// line), which a store whose loads are not one snapshot checks (`docs/storage.md`).
    PutAllocation {
        line: AllocationRecord,
        expected: Option<AllocationRecord>,
    },
    /// Delete an order line, expected as loaded (see `PutAllocation`).
    DeleteAllocation {
        sku: String,
        orderid: String,
        expected: Option<AllocationRecord>,
    },
    Outbox(OutboxRecord),
}

/// The place of the `index`-th event of a commit in its version's outbox: the index, zero-padded to
/// 6 digits (sorts in commit order).
pub fn outbox_slot(index: usize) -> String {
    format!("{index:06}")
}

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

fn corrupt(sku: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("product {sku}: {what}"))
}

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

/// How many lines a store reads per step when looking for lines to free: small steps, so a shrink
/// that frees k lines reads about k lines (plus at most this many).
pub const LINES_TO_FREE_PAGE: usize = 8;

/// Gathers line records read in pages (a store's index in some order) until it has what it needs.
pub trait LineCollector {
    /// Whether enough lines are taken (read no further).
    fn is_done(&self) -> bool;
    /// How many more records to read at most (a store's page size).
    fn page(&self) -> usize;
    fn take(&mut self, record: AllocationRecord);
}

/// The lines a shrinking batch gives up, gathered from its allocation records read in deallocation
/// order (greatest order id first): enough to free `excess` units, at most `max` lines.
#[derive(Debug)]
pub struct LinesToFree {
    excess: u64,
    max: usize,
    freed: u64,
    lines: Vec<AllocationRecord>,
}

impl LinesToFree {
    pub fn new(excess: u64, max: usize) -> Self {
        Self {
            excess,
            max: max.max(1),
            freed: 0,
            lines: Vec::new(),
        }
    }

    /// The error for a batch whose lines ran out before freeing `excess`: its stored total is more
    /// than its lines hold. Only a snapshot read can say this; see the DynamoDB store.
    pub fn shortfall(&self, product: &Product, reference: &str) -> StoreError {
        corrupt(
            product.sku(),
            format!(
                "batch {reference}: its lines free {} units, its allocated total needs {}",
                self.freed, self.excess
            ),
        )
    }

    /// Adds the lines taken to the product.
    pub fn restore_into(self, product: &mut Product) -> Result<(), StoreError> {
        for record in &self.lines {
            restore_line(product, record)?;
        }
        Ok(())
    }
}

/// The waiting lines a product offers to new stock, gathered from its waiting line records read
/// oldest first: lines while their total fits in the stock available (and the first that does not,
/// so no younger line overtakes it), at most `max` lines.
#[derive(Debug)]
pub struct WaitingLines {
    available: u64,
    max: usize,
    wanted: u64,
    lines: Vec<AllocationRecord>,
}

impl WaitingLines {
    /// For the stock `product` has available now.
    pub fn new(product: &Product, max: usize) -> Self {
        let available = product
            .batches()
            .iter()
            .map(|batch| u64::try_from(batch.available_quantity()).unwrap_or(0))
            .sum();
        Self {
            available,
            max: max.max(1),
            wanted: 0,
            lines: Vec::new(),
        }
    }

    /// Adds the lines taken to the product.
    pub fn restore_into(self, product: &mut Product) -> Result<(), StoreError> {
        for record in &self.lines {
            restore_line(product, record)?;
        }
        Ok(())
    }
}

impl LineCollector for LinesToFree {
    fn is_done(&self) -> bool {
        self.freed >= self.excess || self.lines.len() >= self.max
    }

    fn page(&self) -> usize {
        page(self.max, self.lines.len())
    }

    fn take(&mut self, record: AllocationRecord) {
        if !self.is_done() {
            self.freed += u64::from(record.qty);
            self.lines.push(record);
        }
    }
}

impl LineCollector for WaitingLines {
    fn is_done(&self) -> bool {
        self.available == 0 || self.wanted > self.available || self.lines.len() >= self.max
    }

    fn page(&self) -> usize {
        page(self.max, self.lines.len())
    }

    fn take(&mut self, record: AllocationRecord) {
        if !self.is_done() {
            self.wanted += u64::from(record.qty);
            self.lines.push(record);
        }
    }
}

/// The next page's size: small steps, so a collector reads about as many lines as it keeps.
fn page(max: usize, taken: usize) -> usize {
    max.saturating_sub(taken).min(LINES_TO_FREE_PAGE)
}
