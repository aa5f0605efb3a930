//! Changing a batch's quantity: deallocating what no longer fits, in bounded steps.

use crate::domain::AllocationRequired;
use std::sync::Arc;

use super::{index_u32, mark_changed, LineState, Product};
use crate::domain::{DomainError, Event, OrderLine};

impl Product {
    /// Sets the batch's purchased quantity, then deallocates lines until it is not over-allocated,
    /// recording `AllocationRequired` for each deallocated line. Every line of the batch that must
    /// go has to be known (see [`Product::change_batch_quantity_bounded`]).
    pub fn change_batch_quantity(&mut self, reference: &str, qty: u32) -> Result<(), DomainError> {
        match self.change_batch_quantity_bounded(reference, qty, usize::MAX)? {
            true => Ok(()),
            false => Err(DomainError::LinesNotLoaded(reference.to_owned())),
        }
    }

    /// How many units the batch must give up to fit `qty`: its allocated total above `qty`.
    pub fn excess(&self, reference: &str, qty: u32) -> Result<u64, DomainError> {
        let batch = self
            .batch(reference)
            .ok_or_else(|| DomainError::UnknownBatch(reference.to_owned()))?;
        Ok(batch.allocated_quantity().saturating_sub(u64::from(qty)))
    }

    /// One step of a quantity change that fits in one bounded commit: deallocates at most
    /// `max_deallocations` of the batch's known lines, in deallocation order (greatest order id
    /// first, the same in every process), until the batch fits `qty`.
    ///
    /// The purchased quantity becomes `max(qty, allocated after this step)` at once, so the room a
    /// step frees is never handed to another line before the change completes. Returns whether the
    /// change is complete (the quantity is `qty`); if not, load the next lines and call again after
    /// the commit. Fails with `LinesNotLoaded` when no known line can be freed but the batch is still
    /// over `qty` (the caller did not load the lines that must go).
    pub fn change_batch_quantity_bounded(
        &mut self,
        reference: &str,
        qty: u32,
        max_deallocations: usize,
    ) -> Result<bool, DomainError> {
        let index = self
            .batch_index(reference)
            .ok_or_else(|| DomainError::UnknownBatch(reference.to_owned()))?;
        let excess = self.batches[index]
            .allocated_quantity()
            .saturating_sub(u64::from(qty));
        let to_free = self.lines_to_free(index, excess, max_deallocations.max(1));
        if excess > 0 && to_free.is_empty() {
            return Err(DomainError::LinesNotLoaded(reference.to_owned()));
        }
        let before = self.batches[index].purchased_quantity();
        let freed_any = !to_free.is_empty();
        let new_version = self.version_number + 1;
        for orderid in to_free {
            self.deallocate(index, orderid, new_version);
        }
        let batch = &mut self.batches[index];
        let allocated = u32::try_from(batch.allocated_quantity()).unwrap_or(u32::MAX);
        let purchased = qty.max(allocated);
        if purchased != before {
            batch.set_purchased_quantity(purchased);
            mark_changed(&mut self.batch_states, &mut self.changes, batch, index);
        }
        if purchased > before {
            self.out_of_stock_since = None;
        }
        if freed_any || purchased != before {
            self.version_number = new_version;
        }
        Ok(purchased == qty)
    }

    /// The known lines of batch `index`, in deallocation order, that free at least `excess` units
    /// (at most `max` of them).
    fn lines_to_free(&self, index: usize, excess: u64, max: usize) -> Vec<Arc<str>> {
        if excess == 0 {
            return Vec::new();
        }
        let index = index_u32(index);
        let mut held: Vec<(&Arc<str>, u32)> = self
            .lines
            .iter()
            .filter_map(|(orderid, known)| match known.state {
                LineState::Allocated { batch, qty } if batch == index => Some((orderid, qty)),
                _ => None,
            })
            .collect();
        held.sort_unstable_by(|a, b| b.0.cmp(a.0));
        let mut freed = 0u64;
        let mut chosen = Vec::new();
        for (orderid, qty) in held {
            if freed >= excess || chosen.len() >= max {
                break;
            }
            freed += u64::from(qty);
            chosen.push(Arc::clone(orderid));
        }
        chosen
    }

    /// Takes the line out of batch `index`; it waits for stock from `new_version` on, and its
    /// `AllocationRequired` asks for it to be allocated again.
    fn deallocate(&mut self, index: usize, orderid: Arc<str>, new_version: u64) {
        let Some(known) = self.lines.get_mut(&orderid) else {
            return;
        };
        let LineState::Allocated { qty, .. } = known.state else {
            return;
        };
        known.state = LineState::Waiting {
            since: new_version,
            qty,
        };
        if !known.changed {
            known.changed = true;
            self.changes.lines.push(Arc::clone(&orderid));
        }
        let batch = &mut self.batches[index];
        let line = OrderLine::restored(orderid, Arc::clone(batch.shared_sku()), qty);
        batch.deallocate(&line);
        mark_changed(&mut self.batch_states, &mut self.changes, batch, index);
        self.events
            .push(Event::AllocationRequired(AllocationRequired {
                orderid: Arc::clone(line.shared_orderid()),
                sku: Arc::clone(&self.sku),
                qty,
            }));
    }
}
