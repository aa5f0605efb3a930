//! A product as a store restores it: its head, then the lines a command needs.

use std::sync::Arc;

use super::{index_u32, KnownLine, LineState, Product};
use crate::domain::{Batch, DomainError, OrderLine};

impl Product {
    /// A product as stored, without its lines: its version, its batches with their totals and the
    /// version its running stock-out episode began at. The lines a command needs are added with
    /// [`Product::restore_line`], [`Product::restore_waiting_line`] and [`Product::restore_no_line`].
    pub fn restore(
        sku: impl AsRef<str>,
        version_number: u64,
        batches: Vec<Batch>,
        out_of_stock_since: Option<u64>,
    ) -> Result<Self, DomainError> {
        let mut product = Self::with_batches(sku, batches)?;
        product.version_number = version_number;
        product.out_of_stock_since = out_of_stock_since;
        product.knows_all_lines = false;
        Ok(product)
    }

    /// Adds a stored line: this order's line is in batch `batchref`. A line the product already knows
    /// is kept as it is (it is as new as the stored one, or newer).
    pub fn restore_line(&mut self, line: &OrderLine, batchref: &str) -> Result<(), DomainError> {
        let index = self
            .batch_index(batchref)
            .ok_or_else(|| DomainError::UnknownBatch(batchref.to_owned()))?;
        self.check_line_sku(line)?;
        self.lines
            .entry(Arc::clone(line.shared_orderid()))
            .or_insert(KnownLine::stored(LineState::Allocated {
                batch: index_u32(index),
                qty: line.qty(),
            }));
        Ok(())
    }

    /// Adds a stored line that waits for stock since version `since`. A line the product already
    /// knows is kept as it is.
    pub fn restore_waiting_line(
        &mut self,
        line: &OrderLine,
        since: u64,
    ) -> Result<(), DomainError> {
        self.check_line_sku(line)?;
        self.lines
            .entry(Arc::clone(line.shared_orderid()))
            .or_insert(KnownLine::stored(LineState::Waiting {
                since,
                qty: line.qty(),
            }));
        Ok(())
    }

    /// Records that the store holds no line of this order for this product.
    pub fn restore_no_line(&mut self, orderid: &str) {
        if !self.lines.contains_key(orderid) {
            self.lines.insert(orderid.into(), KnownLine::ABSENT);
        }
    }

    /// Whether the product knows if this order holds a line (loaded, or every line known).
    pub fn knows_line(&self, orderid: &str) -> bool {
        self.knows_all_lines || self.lines.contains_key(orderid)
    }
}
