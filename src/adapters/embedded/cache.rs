//! A cache of decoded products, keyed by SKU and checked against the stored version on every load.
//!
//! Rebuilding a product from its records (decode every batch and line, then `restore_product`) costs
//! time in proportion to its lines, and was most of the CPU of an allocation. A load still reads the
//! product record from disk (strong consistency: the stored version decides), and when the cache holds
//! the product at that same version it answers a copy of it instead of decoding the records. A version
//! identifies one state of a product (every committed change increments it), so the copy is that
//! state. The cache is filled by loads and by acknowledged commits (the committed product is exactly
//! the state those records describe). Debug builds check every hit against the records on disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::Product;

struct Entry {
    version: u64,
    product: Arc<Product>,
    lines: usize,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    lines: usize,
    clock: u64,
}

/// Decoded products, bounded by their total number of batches and lines.
pub(super) struct ProductCache {
    budget: usize,
    inner: Mutex<Inner>,
}

/// The size of a product in the cache's budget: its batches and lines.
fn size(product: &Product) -> usize {
    product
        .batches()
        .iter()
        .map(|b| 1 + b.allocations().len())
        .sum::<usize>()
        + 1
}

impl ProductCache {
    /// A cache holding at most `budget` batches and lines (0: disabled).
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every update below leaves the map consistent, so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the product of `sku` if the cache holds it at `version`.
    pub(super) fn get(&self, sku: &str, version: u64) -> Option<Product> {
        if self.budget == 0 {
            return None;
        }
        let product = {
            let mut inner = self.inner();
            inner.clock += 1;
            let clock = inner.clock;
            let entry = inner.entries.get_mut(sku)?;
            if entry.version != version {
                return None;
            }
            entry.last_used = clock;
            Arc::clone(&entry.product)
        };
        // Copied outside the lock: a large product does not hold up other loads.
        Some(Product::clone(&product))
    }

    /// Remembers a copy of `product` (without its pending changes and events) as the state of its SKU
    /// at its version, unless the cache already holds a later version or the product is too large.
    pub(super) fn put(&self, product: &Product) {
        let lines = size(product);
        if self.budget == 0 || lines > self.budget / 4 {
            return;
        }
        let sku = product.sku();
        let version = product.version_number();
        let newer = |inner: &Inner| {
            inner
                .entries
                .get(sku)
                .is_some_and(|entry| entry.version >= version)
        };
        if newer(&self.inner()) {
            return;
        }
        let mut copy = product.clone();
        copy.clear_changes();
        copy.take_events();
        let mut inner = self.inner();
        if newer(&inner) {
            return;
        }
        inner.clock += 1;
        let entry = Entry {
            version,
            product: Arc::new(copy),
            lines,
            last_used: inner.clock,
        };
        if let Some(old) = inner.entries.insert(sku.to_owned(), entry) {
            inner.lines -= old.lines;
        }
        inner.lines += lines;
        if inner.lines > self.budget {
            Self::evict(&mut inner, self.budget * 3 / 4);
        }
    }

    /// Drops the least recently used entries until at most `target` lines are held.
    fn evict(inner: &mut Inner, target: usize) {
        let mut by_age: Vec<(u64, String)> = inner
            .entries
            .iter()
            .map(|(sku, entry)| (entry.last_used, sku.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, sku) in by_age {
            if inner.lines <= target {
                break;
            }
            if let Some(old) = inner.entries.remove(&sku) {
                inner.lines -= old.lines;
            }
        }
    }
}

/// Whether two products hold the same state (for the debug check of cache hits).
#[cfg(debug_assertions)]
pub(super) fn same_state(a: &Product, b: &Product) -> bool {
    a.sku() == b.sku() && a.version_number() == b.version_number() && a.batches() == b.batches()
}
