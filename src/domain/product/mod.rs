//! `Product`: the aggregate (one SKU and its batches), the consistency boundary of every change.
//!
//! A product is loaded without its history: its batches carry their allocated totals, and the
//! product knows only the order lines the command at hand needs (the order being allocated, or the
//! lines a shrinking batch gives up). See `docs/storage.md`.

mod restore;
mod shrink;
mod waiting;

use crate::domain::{Allocated, OutOfStock};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::{Batch, Changes, DomainError, Event, OrderLine, Sku};

/// Where an order's line of this product is, in the product's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// The order has no line here.
    Absent,
    /// In the batch at this index of `Product::batches`.
    Allocated { batch: u32, qty: u32 },
    /// Waiting for stock (a back-order) since the product's version `since`.
    Waiting { since: u64, qty: u32 },
}

/// What the product knows of one order's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KnownLine {
    /// Where the line is now.
    state: LineState,
    /// Where the store held it when it was loaded (or last committed): a store whose reads are not
    /// one snapshot writes each line on condition that it is still this (`docs/storage.md`).
    stored: LineState,
    /// Already listed in `Changes::lines`.
    changed: bool,
}

impl KnownLine {
    const ABSENT: KnownLine = KnownLine::stored(LineState::Absent);

    /// A line as the store holds it.
    const fn stored(state: LineState) -> KnownLine {
        KnownLine {
            state,
            stored: state,
            changed: false,
        }
    }
}

/// Where an order's line of this product is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStatus<'a> {
    /// In this batch.
    Allocated(&'a Batch),
    /// Waiting for stock since the product's version `since` (a back-order).
    Waiting { since: u64 },
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
///
/// A line that a shrinking batch gives up and no batch can take waits for stock (a back-order):
/// waiting lines are offered again, oldest first, when stock arrives. A stock-out episode runs from
/// the first line turned away until stock is added or raised; only its first refusal records
/// `OutOfStock`, so the purchasing team hears of it once.
#[derive(Debug, Clone)]
pub struct Product {
    sku: Arc<str>,
    /// Sorted by `Batch::preference_key`, so allocation takes the first batch that fits.
    batches: Vec<Batch>,
    /// Parallel to `batches`.
    batch_states: Vec<BatchState>,
    version_number: u64,
    /// The version at which the current stock-out episode began, if one is running.
    out_of_stock_since: Option<u64>,
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
    pub fn new(sku: Sku) -> Self {
        Self {
            sku: sku.into(),
            batches: Vec::new(),
            batch_states: Vec::new(),
            version_number: 0,
            out_of_stock_since: None,
            lines: HashMap::default(),
            knows_all_lines: true,
            events: Vec::new(),
            changes: Changes::default(),
        }
    }

    /// A new product of a raw SKU, parsed (tests).
    pub fn parse(sku: impl AsRef<str>) -> Result<Self, DomainError> {
        Ok(Self::new(Sku::parse(sku)?))
    }

    /// A product at version 0 with these (empty) batches and no lines: every line is known.
    pub fn with_batches(sku: impl AsRef<str>, batches: Vec<Batch>) -> Result<Self, DomainError> {
        let mut product = Self::parse(sku)?;
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

    /// The version at which the running stock-out episode began (its first refusal), if one runs.
    pub fn out_of_stock_since(&self) -> Option<u64> {
        self.out_of_stock_since
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

    /// This order's allocated line, if the product knows one: its batch and quantity.
    pub fn line(&self, orderid: &str) -> Option<(&Batch, u32)> {
        match self.line_status(orderid)? {
            (LineStatus::Allocated(batch), qty) => Some((batch, qty)),
            (LineStatus::Waiting { .. }, _) => None,
        }
    }

    /// This order's line, allocated or waiting, if the product knows one: where it is and its quantity.
    pub fn line_status(&self, orderid: &str) -> Option<(LineStatus<'_>, u32)> {
        self.status_of(self.lines.get(orderid)?.state)
    }

    /// This order's line as the store held it when the product was loaded or last committed (`None`:
    /// no line, or one the product does not know).
    pub fn stored_line_status(&self, orderid: &str) -> Option<(LineStatus<'_>, u32)> {
        self.status_of(self.lines.get(orderid)?.stored)
    }

    fn status_of(&self, state: LineState) -> Option<(LineStatus<'_>, u32)> {
        match state {
            LineState::Allocated { batch, qty } => {
                let batch = self.batches.get(usize::try_from(batch).ok()?)?;
                Some((LineStatus::Allocated(batch), qty))
            }
            LineState::Waiting { since, qty } => Some((LineStatus::Waiting { since }, qty)),
            LineState::Absent => None,
        }
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
                known.stored = known.state;
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
        self.out_of_stock_since = None;
        self.version_number += 1;
        Ok(())
    }

    /// Allocates the line to the preferred batch that can take it and returns that batch's reference.
    ///
    /// Idempotent: a line already allocated answers its batch and changes nothing. A waiting line is
    /// allocated if it now fits. An order whose line has another quantity is `OrderLineDiffers`. When no batch can take the line, the line is turned away: nothing
    /// is stored of it (a waiting line stays waiting) and `None` is returned; the first refusal of a
    /// stock-out episode opens it and records `OutOfStock`, later ones change nothing at all.
    pub fn allocate(&mut self, line: &OrderLine) -> Result<Option<Arc<str>>, DomainError> {
        self.allocate_line(line, false)
    }

    /// Allocates a line that must be allocated again (`AllocationRequired`): like
    /// [`Product::allocate`], but a line no batch can take is kept as a waiting line (a back-order)
    /// instead of being turned away, so it is offered again when stock arrives.
    pub fn reallocate(&mut self, line: &OrderLine) -> Result<Option<Arc<str>>, DomainError> {
        self.allocate_line(line, true)
    }

    fn allocate_line(
        &mut self,
        line: &OrderLine,
        keep_waiting: bool,
    ) -> Result<Option<Arc<str>>, DomainError> {
        self.check_line_sku(line)?;
        let new_version = self.version_number + 1;
        // One probe of the line index serves both the idempotency check and the insert.
        let known = match self.lines.entry(Arc::clone(line.shared_orderid())) {
            Entry::Occupied(slot) => match slot.get().state {
                LineState::Allocated { qty, .. } | LineState::Waiting { qty, .. }
                    if qty != line.qty() =>
                {
                    return Err(DomainError::OrderLineDiffers {
                        orderid: line.orderid().to_owned(),
                        sku: self.sku.to_string(),
                        qty,
                        requested: line.qty(),
                    });
                }
                LineState::Allocated { batch, .. } => {
                    return Ok(Some(Arc::clone(
                        self.batches[batch as usize].shared_reference(),
                    )));
                }
                LineState::Waiting { .. } | LineState::Absent => slot.into_mut(),
            },
            Entry::Vacant(_) if !self.knows_all_lines => {
                return Err(DomainError::LineNotLoaded(line.orderid().to_owned()));
            }
            Entry::Vacant(slot) => slot.insert(KnownLine::ABSENT),
        };
        let Some(index) = self.batches.iter().position(|b| b.can_allocate(line)) else {
            let mut changed = false;
            if keep_waiting && known.state == LineState::Absent {
                known.state = LineState::Waiting {
                    since: new_version,
                    qty: line.qty(),
                };
                if !known.changed {
                    known.changed = true;
                    self.changes.lines.push(Arc::clone(line.shared_orderid()));
                }
                changed = true;
            }
            if self.out_of_stock_since.is_none() {
                self.out_of_stock_since = Some(new_version);
                self.events.push(Event::OutOfStock(OutOfStock {
                    sku: Arc::clone(&self.sku),
                    orderid: Some(Arc::clone(line.shared_orderid())),
                    qty: Some(line.qty()),
                }));
                changed = true;
            }
            if changed {
                self.version_number = new_version;
            }
            return Ok(None);
        };
        let batch = &mut self.batches[index];
        batch.allocate(line);
        let reference = Arc::clone(batch.shared_reference());
        known.state = LineState::Allocated {
            batch: index_u32(index),
            qty: line.qty(),
        };
        if !known.changed {
            known.changed = true;
            self.changes.lines.push(Arc::clone(line.shared_orderid()));
        }
        mark_changed(&mut self.batch_states, &mut self.changes, batch, index);
        self.events.push(Event::Allocated(Allocated {
            orderid: Arc::clone(line.shared_orderid()),
            sku: Arc::clone(&self.sku),
            qty: line.qty(),
            batchref: Arc::clone(&reference),
        }));
        self.version_number = new_version;
        Ok(Some(reference))
    }

    /// A line, allocated or restored, must be of this product's SKU.
    fn check_line_sku(&self, line: &OrderLine) -> Result<(), DomainError> {
        if *line.sku() != *self.sku {
            return Err(DomainError::LineSkuMismatch {
                line_sku: line.sku().to_owned(),
                product_sku: self.sku.to_string(),
            });
        }
        Ok(())
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
            for state in [&mut known.state, &mut known.stored] {
                if let LineState::Allocated { batch, .. } = state {
                    if *batch >= shifted {
                        *batch += 1;
                    }
                }
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
