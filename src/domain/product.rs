//! `Product`: the aggregate (one SKU and all its batches), the consistency boundary of every change.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::{validate_identifier, Batch, Changes, DomainError, Event, OrderLine};

/// One SKU with its batches. Every change that must be committed increments `version_number`; a
/// store commits a product only if its stored version is still the one that was loaded.
#[derive(Debug, Clone)]
pub struct Product {
    sku: String,
    /// Kept sorted by `Batch::preference_key`, so allocation takes the first batch that fits.
    batches: Vec<Batch>,
    version_number: u64,
    /// Which batch holds each order's line (the product's answer to "is this order allocated?").
    allocated_to: HashMap<String, String>,
    events: Vec<Event>,
    changes: Changes,
}

impl Product {
    /// A new product with no batches, at version 0.
    pub fn new(sku: impl Into<String>) -> Result<Self, DomainError> {
        let sku = sku.into();
        validate_identifier("sku", &sku)?;
        Ok(Self {
            sku,
            batches: Vec::new(),
            version_number: 0,
            allocated_to: HashMap::new(),
            events: Vec::new(),
            changes: Changes::default(),
        })
    }

    /// A product rebuilt from stored state: no pending events, no pending changes.
    pub fn restore(
        sku: impl Into<String>,
        version_number: u64,
        batches: Vec<Batch>,
    ) -> Result<Self, DomainError> {
        let mut product = Self::new(sku)?;
        product.version_number = version_number;
        for batch in batches {
            product.insert_batch(batch)?;
        }
        Ok(product)
    }

    pub fn sku(&self) -> &str {
        &self.sku
    }

    pub fn version_number(&self) -> u64 {
        self.version_number
    }

    /// Batches in allocation-preference order.
    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    pub fn batch(&self, reference: &str) -> Option<&Batch> {
        self.batches.iter().find(|b| b.reference() == reference)
    }

    /// The batch holding this order's line, if any.
    pub fn allocation_of(&self, orderid: &str) -> Option<&Batch> {
        let reference = self.allocated_to.get(orderid)?;
        self.batch(reference)
    }

    /// Events recorded since they were last taken.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// What changed since the last commit.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Called by the unit of work once the changes are durably committed.
    pub fn clear_changes(&mut self) {
        self.changes = Changes::default();
    }

    /// Adds a new batch. References are unique within the product (the store makes them globally unique).
    pub fn add_batch(&mut self, batch: Batch) -> Result<(), DomainError> {
        let reference = batch.reference().to_owned();
        self.insert_batch(batch)?;
        self.changes.new_batches.insert(reference);
        self.version_number += 1;
        Ok(())
    }

    /// Allocates the line to the preferred batch that can take it and returns that batch's reference.
    ///
    /// Idempotent: a line already allocated answers its batch and changes nothing. When no batch can
    /// take the line, nothing is allocated, `OutOfStock` is recorded and `None` is returned.
    pub fn allocate(&mut self, line: &OrderLine) -> Result<Option<String>, DomainError> {
        if line.sku() != self.sku {
            return Err(DomainError::LineSkuMismatch {
                line_sku: line.sku().to_owned(),
                product_sku: self.sku.clone(),
            });
        }
        // One probe of the (possibly large) line index serves both the idempotency check and the insert.
        let slot = match self.allocated_to.entry(line.orderid().to_owned()) {
            Entry::Occupied(existing) => return Ok(Some(existing.get().clone())),
            Entry::Vacant(slot) => slot,
        };
        // The line is in no batch (checked above), so room is all a batch needs.
        let Some(batch) = self.batches.iter_mut().find(|b| b.has_room_for(line)) else {
            self.events.push(Event::OutOfStock {
                sku: self.sku.clone(),
            });
            // The event must be committed (outbox) on the state it was decided on.
            self.version_number += 1;
            return Ok(None);
        };
        batch.allocate(line);
        let reference = batch.reference().to_owned();
        slot.insert(reference.clone());
        self.changes.lines.insert(line.orderid().to_owned());
        self.events.push(Event::Allocated {
            orderid: line.orderid().to_owned(),
            sku: self.sku.clone(),
            qty: line.qty(),
            batchref: reference.clone(),
        });
        self.version_number += 1;
        Ok(Some(reference))
    }

    /// Sets the batch's purchased quantity, then deallocates lines until it is not over-allocated,
    /// recording `AllocationRequired` for each deallocated line.
    pub fn change_batch_quantity(&mut self, reference: &str, qty: u32) -> Result<(), DomainError> {
        self.change_batch_quantity_bounded(reference, qty, usize::MAX)
            .map(|_complete| ())
    }

    /// Like [`Product::change_batch_quantity`], but deallocates at most `max_deallocations` lines in
    /// this step, so that each step fits in one bounded commit.
    ///
    /// If more lines must go, it deallocates `max_deallocations` of them and leaves the quantity
    /// unchanged (an under-allocated batch is consistent), returning `false`: call again after the
    /// commit. When everything fits, it sets the quantity and returns `true`.
    pub fn change_batch_quantity_bounded(
        &mut self,
        reference: &str,
        qty: u32,
        max_deallocations: usize,
    ) -> Result<bool, DomainError> {
        let max_deallocations = max_deallocations.max(1);
        let index = self
            .batches
            .iter()
            .position(|b| b.reference() == reference)
            .ok_or_else(|| DomainError::UnknownBatch(reference.to_owned()))?;
        let batch = &self.batches[index];
        let excess = batch.allocated_quantity().saturating_sub(u64::from(qty));
        let to_free = lines_to_free(batch, excess);
        if to_free.is_empty() && batch.purchased_quantity() == qty {
            return Ok(true);
        }
        let complete = to_free.len() <= max_deallocations;
        for orderid in to_free.into_iter().take(max_deallocations) {
            self.deallocate_from(index, &orderid);
        }
        if complete {
            self.batches[index].set_purchased_quantity(qty);
            self.changes.changed_batches.insert(reference.to_owned());
        }
        self.version_number += 1;
        Ok(complete)
    }

    fn deallocate_from(&mut self, index: usize, orderid: &str) {
        if let Some(line) = self.batches[index].deallocate(orderid) {
            self.allocated_to.remove(line.orderid());
            self.changes.lines.insert(line.orderid().to_owned());
            self.events.push(Event::AllocationRequired {
                orderid: line.orderid().to_owned(),
                sku: line.sku().to_owned(),
                qty: line.qty(),
            });
        }
    }

    fn insert_batch(&mut self, batch: Batch) -> Result<(), DomainError> {
        if batch.sku() != self.sku {
            return Err(DomainError::SkuMismatch {
                reference: batch.reference().to_owned(),
                batch_sku: batch.sku().to_owned(),
                product_sku: self.sku.clone(),
            });
        }
        if self.batch(batch.reference()).is_some() {
            return Err(DomainError::DuplicateBatch(batch.reference().to_owned()));
        }
        for (orderid, _) in batch.allocations() {
            if self.allocated_to.contains_key(orderid) {
                return Err(DomainError::LineAllocatedTwice(orderid.to_owned()));
            }
        }
        for (orderid, _) in batch.allocations() {
            self.allocated_to
                .insert(orderid.to_owned(), batch.reference().to_owned());
        }
        let at = self
            .batches
            .partition_point(|b| b.preference_key() < batch.preference_key());
        self.batches.insert(at, batch);
        Ok(())
    }
}

/// The order ids to deallocate, in `Batch::deallocation_order`, to free at least `excess` units.
fn lines_to_free(batch: &Batch, excess: u64) -> Vec<String> {
    let mut freed = 0u64;
    let mut lines = Vec::new();
    for (orderid, qty) in batch.deallocation_order() {
        if freed >= excess {
            break;
        }
        freed += u64::from(qty);
        lines.push(orderid.to_owned());
    }
    lines
}
