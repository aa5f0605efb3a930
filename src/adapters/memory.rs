//! The in-memory store: thread-safe, atomic commits with the version compare-and-set. The reference
//! behaviour for the other stores, and the store of the unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::records::{
    record_writes, restore_product, AllocationRecord, BatchRecord, OutboxRecord, ProductRecord,
    RecordWrite,
};
use crate::domain::{EventEnvelope, Product};
use crate::service::{AllocationView, ProductWrite, Store, StoreError};

#[derive(Debug, Default)]
struct StoredProduct {
    record: Option<ProductRecord>,
    batches: BTreeMap<String, BatchRecord>,
    allocations: BTreeMap<String, AllocationRecord>,
}

#[derive(Debug, Default)]
struct State {
    products: HashMap<String, StoredProduct>,
    /// Batch reference → SKU, across all products (references are globally unique).
    batch_skus: HashMap<String, String>,
    /// Order id → SKU → batch reference: the read model.
    orders: HashMap<String, BTreeMap<String, String>>,
    outbox: BTreeMap<(String, u64, u32), OutboxRecord>,
}

/// A store in process memory. Nothing survives the process.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit (checks run before
        // writes), so the state is still consistent: keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Every condition of the commit, checked before anything is written.
    fn check(&self, writes: &[RecordWrite]) -> Result<(), StoreError> {
        for write in writes {
            match write {
                RecordWrite::Product {
                    record,
                    expected_version,
                } => {
                    let stored = self
                        .products
                        .get(&record.sku)
                        .and_then(|p| p.record.as_ref())
                        .map(|r| r.version_number);
                    if stored != *expected_version {
                        return Err(StoreError::VersionConflict {
                            sku: record.sku.clone(),
                        });
                    }
                }
                RecordWrite::NewBatch(batch) if self.batch_skus.contains_key(&batch.reference) => {
                    return Err(StoreError::DuplicateBatchReference(batch.reference.clone()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, write: RecordWrite) {
        match write {
            RecordWrite::Product { record, .. } => {
                let sku = record.sku.clone();
                self.products.entry(sku).or_default().record = Some(record);
            }
            RecordWrite::NewBatch(batch) | RecordWrite::UpdateBatch(batch) => {
                self.batch_skus
                    .insert(batch.reference.clone(), batch.sku.clone());
                let product = self.products.entry(batch.sku.clone()).or_default();
                product.batches.insert(batch.reference.clone(), batch);
            }
            RecordWrite::PutAllocation(line) => {
                self.orders
                    .entry(line.orderid.clone())
                    .or_default()
                    .insert(line.sku.clone(), line.batchref.clone());
                let product = self.products.entry(line.sku.clone()).or_default();
                product.allocations.insert(line.orderid.clone(), line);
            }
            RecordWrite::DeleteAllocation { sku, orderid } => {
                if let Some(skus) = self.orders.get_mut(&orderid) {
                    skus.remove(&sku);
                    if skus.is_empty() {
                        self.orders.remove(&orderid);
                    }
                }
                if let Some(product) = self.products.get_mut(&sku) {
                    product.allocations.remove(&orderid);
                }
            }
            RecordWrite::Outbox(record) => {
                let key = (record.sku.clone(), record.version_number, record.sequence);
                self.outbox.insert(key, record);
            }
        }
    }
}

impl Store for InMemoryStore {
    async fn load(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        // Yield once, as a networked store would, so concurrent units of work interleave in tests.
        tokio::task::yield_now().await;
        let state = self.state();
        let Some(stored) = state.products.get(sku) else {
            return Ok(None);
        };
        let Some(record) = stored.record.clone() else {
            return Ok(None);
        };
        restore_product(
            record,
            stored.batches.values().cloned(),
            stored.allocations.values().cloned(),
        )
        .map(Some)
    }

    async fn sku_of_batch(&self, reference: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state().batch_skus.get(reference).cloned())
    }

    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        let records: Vec<RecordWrite> = writes.iter().flat_map(record_writes).collect();
        let mut state = self.state();
        state.check(&records)?;
        for record in records {
            state.apply(record);
        }
        Ok(())
    }

    async fn allocations_for_order(
        &self,
        orderid: &str,
    ) -> Result<Vec<AllocationView>, StoreError> {
        let state = self.state();
        Ok(state
            .orders
            .get(orderid)
            .map(|skus| {
                skus.iter()
                    .map(|(sku, batchref)| AllocationView {
                        sku: sku.clone(),
                        batchref: batchref.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn outbox(&self, sku: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        let state = self.state();
        Ok(state
            .outbox
            .range((sku.to_owned(), 0, 0)..=(sku.to_owned(), u64::MAX, u32::MAX))
            .map(|(_, record)| record.envelope.clone())
            .collect())
    }
}
