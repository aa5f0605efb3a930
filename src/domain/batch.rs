//! `Batch`: a quantity of one SKU in stock or on its way, and the order lines allocated to it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use chrono::NaiveDate;

use super::{validate_identifier, DomainError, OrderLine};

/// A batch of stock. Keeps a running total of allocated units so that `available_quantity` and
/// `allocate` never walk the allocated lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    reference: String,
    sku: String,
    eta: Option<NaiveDate>,
    purchased_quantity: u32,
    /// Allocated lines by order id (one product holds one SKU, so the order id identifies the line).
    /// A hash map: allocating costs the same however many lines the batch already holds.
    allocations: HashMap<String, u32>,
    allocated_quantity: u64,
}

impl Batch {
    /// A new, empty batch. `eta` is `None` for stock already in the warehouse.
    pub fn new(
        reference: impl Into<String>,
        sku: impl Into<String>,
        qty: u32,
        eta: Option<NaiveDate>,
    ) -> Result<Self, DomainError> {
        let (reference, sku) = (reference.into(), sku.into());
        validate_identifier("ref", &reference)?;
        validate_identifier("sku", &sku)?;
        Ok(Self {
            reference,
            sku,
            eta,
            purchased_quantity: qty,
            allocations: HashMap::new(),
            allocated_quantity: 0,
        })
    }

    pub fn reference(&self) -> &str {
        &self.reference
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

    pub fn allocated_quantity(&self) -> u64 {
        self.allocated_quantity
    }

    /// Purchased minus allocated. Negative only inside `Product::change_batch_quantity`, never after it.
    pub fn available_quantity(&self) -> i64 {
        i64::from(self.purchased_quantity) - self.allocated_quantity as i64
    }

    /// The order in which batches are preferred: in stock (no ETA) first, then earliest ETA, then reference.
    pub fn preference_key(&self) -> (Option<NaiveDate>, &str) {
        (self.eta, &self.reference)
    }

    pub fn is_allocated(&self, orderid: &str) -> bool {
        self.allocations.contains_key(orderid)
    }

    /// The quantity of this order's line, if this batch holds it.
    pub fn allocated_qty(&self, orderid: &str) -> Option<u32> {
        self.allocations.get(orderid).copied()
    }

    /// Same SKU, not yet holding this order's line, and enough available.
    pub fn can_allocate(&self, line: &OrderLine) -> bool {
        self.sku == line.sku()
            && !self.is_allocated(line.orderid())
            && self.available_quantity() >= i64::from(line.qty())
    }

    /// Same SKU and enough available, whether or not the line is already here.
    pub fn has_room_for(&self, line: &OrderLine) -> bool {
        self.sku == line.sku() && self.available_quantity() >= i64::from(line.qty())
    }

    /// Allocates the line if it fits; returns whether it did. Allocating the same line twice changes nothing.
    pub fn allocate(&mut self, line: &OrderLine) -> bool {
        if !self.has_room_for(line) {
            return false;
        }
        match self.allocations.entry(line.orderid().to_owned()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(line.qty());
                self.allocated_quantity += u64::from(line.qty());
                true
            }
        }
    }

    /// Removes the line of this order, if this batch holds it.
    pub fn deallocate(&mut self, orderid: &str) -> Option<OrderLine> {
        let qty = self.allocations.remove(orderid)?;
        self.allocated_quantity -= u64::from(qty);
        Some(self.line(orderid.to_owned(), qty))
    }

    /// The allocated lines as (order id, quantity), in no particular order.
    pub fn allocations(&self) -> impl ExactSizeIterator<Item = (&str, u32)> {
        self.allocations.iter().map(|(o, q)| (o.as_str(), *q))
    }

    /// The order in which lines are deallocated when the batch shrinks: greatest order id first, so the
    /// outcome is the same in every process. Sorting costs O(n log n) in the batch's lines, paid only by
    /// a quantity change (rare), never by an allocation.
    pub fn deallocation_order(&self) -> Vec<(&str, u32)> {
        let mut lines: Vec<(&str, u32)> = self.allocations().collect();
        lines.sort_unstable_by(|a, b| b.0.cmp(a.0));
        lines
    }

    pub(crate) fn set_purchased_quantity(&mut self, qty: u32) {
        self.purchased_quantity = qty;
    }

    fn line(&self, orderid: String, qty: u32) -> OrderLine {
        OrderLine::restored(orderid, self.sku.clone(), qty)
    }
}
