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
    hits: u64,
    misses: u64,
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
            let hit = match inner.entries.get_mut(sku) {
                Some(entry) if entry.version == version => {
                    entry.last_used = clock;
                    Some(Arc::clone(&entry.product))
                }
                _ => None,
            };
            match hit {
                Some(product) => {
                    inner.hits += 1;
                    product
                }
                None => {
                    inner.misses += 1;
                    return None;
                }
            }
        };
        // Copied outside the lock: a large product does not hold up other loads.
        Some(Product::clone(&product))
    }

    /// Loads answered from the cache, and loads that decoded the records.
    pub(super) fn hits_and_misses(&self) -> (u64, u64) {
        let inner = self.inner();
        (inner.hits, inner.misses)
    }

    /// Remembers a copy of `product` (without its pending changes and events) as the state of its SKU
    /// at its version, unless the cache already holds a later version or the product is too large.
    pub(super) fn put(&self, product: &Product) {
        let lines = size(product);
        if self.budget == 0 || lines > self.budget / 2 {
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
            Self::evict(&mut inner, self.budget);
        }
    }

    /// Drops entries until at most `target` lines are held: each time the least recently used of a
    /// few sampled at random (approximate LRU). Unlike strict LRU, this keeps a useful share of hits
    /// when requests cycle through more products than the cache holds (strict LRU then evicts exactly
    /// the product that is needed next).
    fn evict(inner: &mut Inner, target: usize) {
        const SAMPLES: usize = 5;
        while inner.lines > target && !inner.entries.is_empty() {
            let start = fastrand::usize(..inner.entries.len());
            let victim = inner
                .entries
                .iter()
                .cycle()
                .skip(start)
                .take(SAMPLES.min(inner.entries.len()))
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(sku, _)| sku.clone());
            let Some(victim) = victim else { break };
            if let Some(old) = inner.entries.remove(&victim) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Batch, OrderLine};

    fn product(sku: &str, version: u64, lines: usize) -> Product {
        let batch = Batch::new(format!("{sku}-b"), sku, 1_000_000, None).unwrap();
        let mut product = Product::restore(sku, 0, vec![batch]).unwrap();
        for n in 0..lines {
            product
                .allocate(&OrderLine::new(format!("o{n}"), sku, 1).unwrap())
                .unwrap();
        }
        // The version as stored, whatever the allocations above counted.
        Product::restore(sku, version, product.batches().to_vec()).unwrap()
    }

    #[test]
    fn a_hit_needs_the_stored_version() {
        let cache = ProductCache::new(1_000);
        cache.put(&product("A", 3, 2));
        assert!(cache.get("A", 3).is_some());
        assert!(
            cache.get("A", 4).is_none(),
            "a newer stored version is a miss"
        );
        assert!(cache.get("B", 3).is_none());
        // An older version never replaces a newer one.
        cache.put(&product("A", 2, 1));
        assert_eq!(cache.get("A", 3).unwrap().version_number(), 3);
        cache.put(&product("A", 4, 3));
        let hit = cache.get("A", 4).unwrap();
        assert!(same_state(&hit, &product("A", 4, 3)));
        assert_eq!(cache.hits_and_misses(), (3, 2));
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let cache = ProductCache::new(100);
        for n in 0..50 {
            cache.put(&product(&format!("S{n}"), 1, 8)); // 10 lines each
            assert!(cache.inner().lines <= 100);
        }
        assert!(cache.inner().entries.len() >= 9);
        // A product larger than half the budget is not cached.
        cache.put(&product("BIG", 1, 60));
        assert!(cache.get("BIG", 1).is_none());
    }

    #[test]
    fn a_disabled_cache_holds_nothing() {
        let cache = ProductCache::new(0);
        cache.put(&product("A", 1, 1));
        assert!(cache.get("A", 1).is_none());
    }
}
