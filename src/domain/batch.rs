//! `Batch`: a quantity of one SKU in stock or on its way, and how much of it is allocated.

use std::sync::Arc;

use chrono::NaiveDate;

use super::{BatchRef, DomainError, OrderLine, Quantity, Sku};

/// A batch of stock. It keeps the running total of the units allocated to it, not the lines
/// themselves: which batch holds which order's line is the product's knowledge (`Product`), so a
/// batch costs the same to load and to allocate from whatever its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    reference: Arc<str>,
    sku: Arc<str>,
    eta: Option<NaiveDate>,
    purchased_quantity: u32,
    allocated_quantity: u64,
}

impl Batch {
    /// A new, empty batch of parsed values (as `CreateBatch` carries them). `eta` is `None` for
    /// stock already in the warehouse.
    pub fn new(reference: BatchRef, sku: Sku, qty: Quantity, eta: Option<NaiveDate>) -> Self {
        Self {
            reference: reference.into(),
            sku: sku.into(),
            eta,
            purchased_quantity: qty.get(),
            allocated_quantity: 0,
        }
    }

    /// A new, empty batch of raw values, each parsed (tests).
    pub fn parse(
        reference: impl AsRef<str>,
        sku: impl AsRef<str>,
        qty: u32,
        eta: Option<NaiveDate>,
    ) -> Result<Self, DomainError> {
        Self::restore(reference, sku, qty, eta, 0)
    }

    /// A batch as stored: its quantities, with `allocated_quantity` the total of its lines.
    pub fn restore(
        reference: impl AsRef<str>,
        sku: impl AsRef<str>,
        purchased_quantity: u32,
        eta: Option<NaiveDate>,
        allocated_quantity: u64,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            reference: BatchRef::parse(reference)?.into(),
            sku: Sku::parse(sku)?.into(),
            eta,
            purchased_quantity: Quantity::new(purchased_quantity.into())?.get(),
            allocated_quantity,
        })
    }

    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Whether `requested` (a batch being added under this one's reference) is this batch: the same
    /// SKU, purchased quantity and ETA; else `BatchDiffers`, naming each difference.
    pub fn check_same_as(&self, requested: &Batch) -> Result<(), DomainError> {
        let eta = |eta: Option<NaiveDate>| eta.map_or("none".to_owned(), |d| d.to_string());
        let mut differences = Vec::new();
        if self.sku != requested.sku {
            differences.push(format!("sku {}, not {}", self.sku, requested.sku));
        }
        if self.purchased_quantity != requested.purchased_quantity {
            differences.push(format!(
                "qty {}, not {}",
                self.purchased_quantity, requested.purchased_quantity
            ));
        }
        if self.eta != requested.eta {
            differences.push(format!("eta {}, not {}", eta(self.eta), eta(requested.eta)));
        }
        match differences.is_empty() {
            true => Ok(()),
            false => Err(DomainError::BatchDiffers {
                reference: self.reference.to_string(),
                differences: differences.join("; "),
            }),
        }
    }

    pub fn sku(&self) -> &str {
        &self.sku
    }

    pub fn eta(&self) -> Option<NaiveDate> {
        self.eta
    }

    pub fn purchased_quantity(&self) -> u32 {
        self.purchased_quantity
    }

    /// The units allocated to this batch (the sum of its lines' quantities).
    pub fn allocated_quantity(&self) -> u64 {
        self.allocated_quantity
    }

    /// Purchased minus allocated. Negative only inside `Product::change_batch_quantity`, never after it.
    pub fn available_quantity(&self) -> i64 {
        i64::from(self.purchased_quantity)
            - i64::try_from(self.allocated_quantity).unwrap_or(i64::MAX)
    }

    /// The order in which batches are preferred: in stock (no ETA) first, then earliest ETA, then reference.
    pub fn preference_key(&self) -> (Option<NaiveDate>, &str) {
        (self.eta, &self.reference)
    }

    /// Same SKU and enough available. Whether the order already holds a line is the product's rule.
    pub fn can_allocate(&self, line: &OrderLine) -> bool {
        *self.sku == *line.sku() && self.available_quantity() >= i64::from(line.qty())
    }

    /// Takes the line's units if it fits; returns whether it did.
    pub fn allocate(&mut self, line: &OrderLine) -> bool {
        if !self.can_allocate(line) {
            return false;
        }
        self.allocated_quantity += u64::from(line.qty());
        true
    }

    /// Gives back the units of a line this batch held.
    pub fn deallocate(&mut self, line: &OrderLine) {
        self.allocated_quantity = self
            .allocated_quantity
            .saturating_sub(u64::from(line.qty()));
    }

    pub(crate) fn shared_reference(&self) -> &Arc<str> {
        &self.reference
    }

    pub(crate) fn shared_sku(&self) -> &Arc<str> {
        &self.sku
    }

    pub(crate) fn set_purchased_quantity(&mut self, qty: u32) {
        self.purchased_quantity = qty;
    }
}
