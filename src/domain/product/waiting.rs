//! Waiting lines (back-orders) offered to new stock, oldest first.

use crate::domain::AllocationRequired;
use std::sync::Arc;

use super::{LineState, Product};
use crate::domain::{Batch, Event};

impl Product {
    /// Offers the known waiting lines to the stock there is now: oldest first, each line that the
    /// batches' available quantities can still take (counting the lines offered before it) gets an
    /// `AllocationRequired`, and the offer stops at the first line that does not fit, so no younger
    /// line overtakes it. The lines stay waiting until their reallocation allocates them, each in its
    /// own transaction. Returns how many lines were offered.
    pub fn offer_waiting_lines(&mut self) -> usize {
        let mut waiting: Vec<(u64, &Arc<str>, u32)> = self
            .lines
            .iter()
            .filter_map(|(orderid, known)| match known.state {
                LineState::Waiting { since, qty } => Some((since, orderid, qty)),
                _ => None,
            })
            .collect();
        waiting.sort_unstable();
        let mut spare: Vec<i64> = self.batches.iter().map(Batch::available_quantity).collect();
        let mut offered = Vec::new();
        for (_, orderid, qty) in waiting {
            let qty_wanted = i64::from(qty);
            let Some(room) = spare.iter_mut().find(|room| **room >= qty_wanted) else {
                break;
            };
            *room -= qty_wanted;
            offered.push(Event::AllocationRequired(AllocationRequired {
                orderid: Arc::clone(orderid),
                sku: Arc::clone(&self.sku),
                qty,
            }));
        }
        let count = offered.len();
        if count > 0 {
            // The events need a version of their own only if nothing else changed (offered with
            // the stock that arrived, they share its version).
            if self.changes.is_empty() {
                self.version_number += 1;
            }
            self.events.extend(offered);
        }
        count
    }
}
