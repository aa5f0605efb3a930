//! `Product`: the aggregate (one SKU and its batches), the consistency boundary of every change.
//!
//! A product is loaded without its history: its batches carry their allocated totals, and the
//! product knows only the order lines the command at hand needs (the order being allocated, or the
//! lines a shrinking batch gives up). See `docs/storage.md`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::{validate_identifier, Batch, Changes, DomainError, Event, OrderLine};

/// What the product knows of one order's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KnownLine {
    /// Index in `Product::batches` of the batch holding it; `None`: the order has no line here.
    batch: Option<u32>,
    qty: u32,
    /// Already listed in `Changes::lines`.
    changed: bool,
}

/// Whether a batch is listed in `Changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    Unchanged,
    Changed,
    New,
}

/// One SKU with its batches. Every change to stock or lines increments `version_number`; a store
/// commits a product only if its stored version is still the one that was loaded.
#[derive(Debug, Clone)]
pub struct Product {
    sku: Arc<str>,
    /// Sorted by `Batch::preference_key`, so allocation takes the first batch that fits.
    batches: Vec<Batch>,
    /// Parallel to `batches`.
    batch_states: Vec<BatchState>,
    version_number: u64,
    /// The lines this product knows: loaded for the command at hand, or changed since.
    lines: HashMap<Arc<str>, KnownLine, RandomState>,
    /// True when every line is in `lines` (a new product); else an order missing from `lines` was
    /// not loaded, and allocating it is refused rather than guessed.
    knows_all_lines: bool,
    events: Vec<Event>,
    changes: Changes,
}

impl Product {
    /// A new product with no batches, at version 0.
    pub fn new(sku: impl AsRef<str>) -> Result<Self, DomainError> {
        let sku = sku.as_ref();
        validate_identifier("sku", sku)?;
        Ok(Self {
            sku: sku.into(),
            batches: Vec::new(),
            batch_states: Vec::new(),
            version_number: 0,
            lines: HashMap::default(),
            knows_all_lines: true,
            events: Vec::new(),
            changes: Changes::default(),
        })
    }

    /// A product at version 0 with these (empty) batches and no lines: every line is known.
    pub fn with_batches(sku: impl AsRef<str>, batches: Vec<Batch>) -> Result<Self, DomainError> {
        let mut product = Self::new(sku)?;
        for batch in batches {
            product.insert_batch(batch)?;
        }
        Ok(product)
    }

    /// A product as stored, without its lines: its version and its batches with their totals. The
    /// lines a command needs are added with [`Product::restore_line`] and
    /// [`Product::restore_no_line`].
    pub fn restore(
        sku: impl AsRef<str>,
        version_number: u64,
        batches: Vec<Batch>,
    ) -> Result<Self, DomainError> {
        let mut product = Self::with_batches(sku, batches)?;
        product.version_number = version_number;
        product.knows_all_lines = false;
        Ok(product)
    }

    /// Adds a stored line: this order's line is in batch `batchref`. A line the product already knows
    /// is kept as it is (it is as new as the stored one, or newer).
    pub fn restore_line(&mut self, line: &OrderLine, batchref: &str) -> Result<(), DomainError> {
        let index = self
            .batch_index(batchref)
            .ok_or_else(|| DomainError::UnknownBatch(batchref.to_owned()))?;
        if *line.sku() != *self.sku {
            return Err(DomainError::LineSkuMismatch {
                line_sku: line.sku().to_owned(),
                product_sku: self.sku.to_string(),
            });
        }
        self.lines
            .entry(Arc::clone(line.shared_orderid()))
            .or_insert(KnownLine {
                batch: Some(index_u32(index)),
                qty: line.qty(),
                changed: false,
            });
        Ok(())
    }

    /// Records that the store holds no line of this order for this product.
    pub fn restore_no_line(&mut self, orderid: &str) {
        if !self.lines.contains_key(orderid) {
            self.lines.insert(
                orderid.into(),
                KnownLine {
                    batch: None,
                    qty: 0,
                    changed: false,
                },
            );
        }
    }

    /// Whether the product knows if this order holds a line (loaded, or every line known).
    pub fn knows_line(&self, orderid: &str) -> bool {
        self.knows_all_lines || self.lines.contains_key(orderid)
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
        self.batch_index(reference).map(|i| &self.batches[i])
    }

    /// The batch holding this order's line, if the product knows one.
    pub fn allocation_of(&self, orderid: &str) -> Option<&Batch> {
        self.line(orderid).map(|(batch, _)| batch)
    }

    /// This order's line, if the product knows one: its batch and quantity.
    pub fn line(&self, orderid: &str) -> Option<(&Batch, u32)> {
        let known = self.lines.get(orderid)?;
        let batch = self.batches.get(usize::try_from(known.batch?).ok()?)?;
        Some((batch, known.qty))
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
        for orderid in std::mem::take(&mut self.changes.lines) {
            if let Some(known) = self.lines.get_mut(&orderid) {
                known.changed = false;
            }
        }
        self.batch_states.fill(BatchState::Unchanged);
        self.changes = Changes::default();
    }

    /// Adds a new batch. References are unique within the product (the store makes them globally unique).
    pub fn add_batch(&mut self, batch: Batch) -> Result<(), DomainError> {
        let reference = Arc::clone(batch.shared_reference());
        let at = self.insert_batch(batch)?;
        self.batch_states[at] = BatchState::New;
        self.changes.new_batches.push(reference);
        self.version_number += 1;
        Ok(())
    }

    /// Allocates the line to the preferred batch that can take it and returns that batch's reference.
    ///
    /// Idempotent: a line already allocated answers its batch and changes nothing. When no batch can
    /// take the line, nothing changes (not even the version: concurrent allocations stay valid) but
    /// an `OutOfStock` event, and `None` is returned.
    pub fn allocate(&mut self, line: &OrderLine) -> Result<Option<Arc<str>>, DomainError> {
        if *line.sku() != *self.sku {
            return Err(DomainError::LineSkuMismatch {
                line_sku: line.sku().to_owned(),
                product_sku: self.sku.to_string(),
            });
        }
        // One probe of the line index serves both the idempotency check and the insert.
        let known = match self.lines.entry(Arc::clone(line.shared_orderid())) {
            Entry::Occupied(slot) => {
                if let Some(index) = slot.get().batch {
                    return Ok(Some(Arc::clone(
                        self.batches[index as usize].shared_reference(),
                    )));
                }
                slot.into_mut()
            }
            Entry::Vacant(_) if !self.knows_all_lines => {
                return Err(DomainError::LineNotLoaded(line.orderid().to_owned()));
            }
            Entry::Vacant(slot) => slot.insert(KnownLine {
                batch: None,
                qty: 0,
                changed: false,
            }),
        };
        let Some(index) = self.batches.iter().position(|b| b.can_allocate(line)) else {
            self.events.push(Event::OutOfStock {
                sku: Arc::clone(&self.sku),
                orderid: Some(Arc::clone(line.shared_orderid())),
                qty: Some(line.qty()),
            });
            return Ok(None);
        };
        let batch = &mut self.batches[index];
        batch.allocate(line);
        let reference = Arc::clone(batch.shared_reference());
        known.batch = Some(index_u32(index));
        known.qty = line.qty();
        if !known.changed {
            known.changed = true;
            self.changes.lines.push(Arc::clone(line.shared_orderid()));
        }
        mark_changed(&mut self.batch_states, &mut self.changes, batch, index);
        self.events.push(Event::Allocated {
            orderid: Arc::clone(line.shared_orderid()),
            sku: Arc::clone(&self.sku),
            qty: line.qty(),
            batchref: Arc::clone(&reference),
        });
        self.version_number += 1;
        Ok(Some(reference))
    }

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
        for orderid in to_free {
            self.deallocate(index, orderid);
        }
        let batch = &mut self.batches[index];
        let allocated = u32::try_from(batch.allocated_quantity()).unwrap_or(u32::MAX);
        let purchased = qty.max(allocated);
        if purchased != before {
            batch.set_purchased_quantity(purchased);
            mark_changed(&mut self.batch_states, &mut self.changes, batch, index);
        }
        if freed_any || purchased != before {
            self.version_number += 1;
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
            .filter(|(_, known)| known.batch == Some(index))
            .map(|(orderid, known)| (orderid, known.qty))
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

    fn deallocate(&mut self, index: usize, orderid: Arc<str>) {
        let Some(known) = self.lines.get_mut(&orderid) else {
            return;
        };
        let qty = known.qty;
        known.batch = None;
        if !known.changed {
            known.changed = true;
            self.changes.lines.push(Arc::clone(&orderid));
        }
        let batch = &mut self.batches[index];
        let line = OrderLine::restored(orderid, Arc::clone(batch.shared_sku()), qty);
        batch.deallocate(&line);
        mark_changed(&mut self.batch_states, &mut self.changes, batch, index);
        self.events.push(Event::AllocationRequired {
            orderid: Arc::clone(line.shared_orderid()),
            sku: Arc::clone(&self.sku),
            qty,
        });
    }

    fn batch_index(&self, reference: &str) -> Option<usize> {
        self.batches.iter().position(|b| b.reference() == reference)
    }

    /// Inserts the batch in preference order and returns its index.
    fn insert_batch(&mut self, batch: Batch) -> Result<usize, DomainError> {
        if *batch.sku() != *self.sku {
            return Err(DomainError::SkuMismatch {
                reference: batch.reference().to_owned(),
                batch_sku: batch.sku().to_owned(),
                product_sku: self.sku.to_string(),
            });
        }
        if self.batch(batch.reference()).is_some() {
            return Err(DomainError::DuplicateBatch(batch.reference().to_owned()));
        }
        let at = self
            .batches
            .partition_point(|b| b.preference_key() < batch.preference_key());
        self.batches.insert(at, batch);
        self.batch_states.insert(at, BatchState::Unchanged);
        let shifted = index_u32(at);
        for known in self.lines.values_mut() {
            if let Some(index) = known.batch.as_mut().filter(|i| **i >= shifted) {
                *index += 1;
            }
        }
        Ok(at)
    }
}

/// Lists the batch in `changes.changed_batches` the first time it changes (never a new batch).
fn mark_changed(states: &mut [BatchState], changes: &mut Changes, batch: &Batch, index: usize) {
    if states[index] == BatchState::Unchanged {
        states[index] = BatchState::Changed;
        changes
            .changed_batches
            .push(Arc::clone(batch.shared_reference()));
    }
}

/// Batch indices fit in `u32`: a product never holds 4 billion batches (one store item each).
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}
