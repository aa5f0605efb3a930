//! Gathering lines from records read in pages: the lines a shrinking batch gives up, and the oldest
//! waiting lines new stock may take, each reading about as many records as it returns.

use super::{corrupt, restore_line, AllocationRecord};
use crate::domain::Product;
use crate::service::StoreError;

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
