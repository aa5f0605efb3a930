//! The in-memory store: thread-safe, atomic commits with the version compare-and-set. The reference
//! behaviour for the other stores (the contract suite runs on it first), and the store of the tests
//! through the bus (the book's fake repository). Test code: no binary uses it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use allocation::adapters::records::{
    record_writes, restore_lines, restore_product, AllocationRecord, BatchRecord, LineCollector,
    LinesToFree, OutboxRecord, ProductRecord, RecordWrite, WaitingLines,
};
use allocation::domain::{EventEnvelope, Product};
use allocation::service::{
    AllocationView, AllocationsView, OutboxAudit, ProductRepository, ProductWrite, RecordsRead,
    StoreError,
};

#[derive(Debug, Default)]
struct StoredProduct {
    record: Option<ProductRecord>,
    batches: BTreeMap<String, BatchRecord>,
    allocations: BTreeMap<String, AllocationRecord>,
    /// (batch reference, order id) of every allocated line: a batch's lines in order id order.
    by_batch: BTreeSet<(String, String)>,
    /// (waiting since, order id) of every waiting line: oldest first.
    waiting: BTreeSet<(u64, String)>,
}

#[derive(Debug, Default)]
struct State {
    products: HashMap<String, StoredProduct>,
    /// Batch reference → SKU, across all products (references are globally unique).
    batch_skus: HashMap<String, String>,
    /// Order id → SKU → batch reference (`None`: waiting): the read model.
    orders: HashMap<String, BTreeMap<String, Option<String>>>,
    outbox: BTreeMap<(String, u64, String), OutboxRecord>,
}

/// A store in process memory. Nothing survives the process.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
    records_read: AtomicU64,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn count(&self, records: usize) {
        self.records_read
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit (checks run before
        // writes), so the state is still consistent: keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StoredProduct {
    /// The stored lines of these orders (those that exist).
    fn lines(&self, orderids: &[&str]) -> Vec<AllocationRecord> {
        orderids
            .iter()
            .filter_map(|orderid| self.allocations.get(*orderid).cloned())
            .collect()
    }

    /// Removes a line record from the indexes.
    fn unindex(&mut self, old: &AllocationRecord) {
        if let Some(batchref) = &old.batchref {
            self.by_batch
                .remove(&(batchref.clone(), old.orderid.clone()));
        }
        if let Some(since) = old.waiting_since {
            self.waiting.remove(&(since, old.orderid.clone()));
        }
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
                // Every read of this store is a snapshot, so a line whose product version matched
                // is as the product was loaded with it; anything else is a bug in what the product
                // says it loaded (the DynamoDB store conditions each line write on it).
                RecordWrite::PutAllocation {
                    line: AllocationRecord { sku, orderid, .. },
                    expected,
                }
                | RecordWrite::DeleteAllocation {
                    sku,
                    orderid,
                    expected,
                } => {
                    let stored = self
                        .products
                        .get(sku)
                        .and_then(|p| p.allocations.get(orderid));
                    if stored != expected.as_ref() {
                        return Err(StoreError::Corrupt(format!(
                            "line {orderid} of {sku} is {stored:?}, the commit expected {expected:?}"
                        )));
                    }
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
            RecordWrite::PutAllocation { line, .. } => {
                self.orders
                    .entry(line.orderid.clone())
                    .or_default()
                    .insert(line.sku.clone(), line.batchref.clone());
                let product = self.products.entry(line.sku.clone()).or_default();
                if let Some(old) = product.allocations.remove(&line.orderid) {
                    product.unindex(&old);
                }
                match (&line.batchref, line.waiting_since) {
                    (Some(batchref), _) => {
                        product
                            .by_batch
                            .insert((batchref.clone(), line.orderid.clone()));
                    }
                    (None, Some(since)) => {
                        product.waiting.insert((since, line.orderid.clone()));
                    }
                    (None, None) => {}
                }
                product.allocations.insert(line.orderid.clone(), line);
            }
            RecordWrite::DeleteAllocation { sku, orderid, .. } => {
                if let Some(skus) = self.orders.get_mut(&orderid) {
                    skus.remove(&sku);
                    if skus.is_empty() {
                        self.orders.remove(&orderid);
                    }
                }
                if let Some(product) = self.products.get_mut(&sku) {
                    if let Some(old) = product.allocations.remove(&orderid) {
                        product.unindex(&old);
                    }
                }
            }
            RecordWrite::Outbox(record) => {
                let key = (
                    record.sku.clone(),
                    record.version_number,
                    record.slot.clone(),
                );
                self.outbox.insert(key, record);
            }
        }
    }
}

impl ProductRepository for InMemoryStore {
    async fn load(&self, sku: &str, orderids: &[&str]) -> Result<Option<Product>, StoreError> {
        // Yield once, as a networked store would, so concurrent units of work interleave in tests.
        tokio::task::yield_now().await;
        let state = self.state();
        let Some(stored) = state.products.get(sku) else {
            return Ok(None);
        };
        let Some(record) = stored.record.clone() else {
            return Ok(None);
        };
        let mut product = restore_product(record, stored.batches.values().cloned())?;
        let found = stored.lines(orderids);
        self.count(1 + stored.batches.len() + found.len());
        restore_lines(&mut product, orderids, found)?;
        Ok(Some(product))
    }

    async fn load_lines(&self, product: &mut Product, orderids: &[&str]) -> Result<(), StoreError> {
        let state = self.state();
        let found = state
            .products
            .get(product.sku())
            .map(|stored| stored.lines(orderids))
            .unwrap_or_default();
        self.count(found.len());
        restore_lines(product, orderids, found)
    }

    async fn load_lines_to_free(
        &self,
        product: &mut Product,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let mut taken = LinesToFree::new(excess, max_lines);
        {
            let state = self.state();
            if let Some(stored) = state.products.get(product.sku()) {
                // References hold no control characters: `<reference>\0` sorts after every
                // order id of this batch and before any other reference.
                let lines = stored
                    .by_batch
                    .range(
                        (reference.to_owned(), String::new())
                            ..(format!("{reference}\0"), String::new()),
                    )
                    .rev();
                for (_, orderid) in lines {
                    if taken.is_done() {
                        break;
                    }
                    if let Some(line) = stored.allocations.get(orderid) {
                        self.count(1);
                        taken.take(line.clone());
                    }
                }
            }
        }
        if !taken.is_done() {
            return Err(taken.shortfall(product, reference));
        }
        taken.restore_into(product)
    }

    async fn load_waiting_lines(
        &self,
        product: &mut Product,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let mut taken = WaitingLines::new(product, max_lines);
        {
            let state = self.state();
            if let Some(stored) = state.products.get(product.sku()) {
                for (_, orderid) in &stored.waiting {
                    if taken.is_done() {
                        break;
                    }
                    if let Some(line) = stored.allocations.get(orderid) {
                        self.count(1);
                        taken.take(line.clone());
                    }
                }
            }
        }
        taken.restore_into(product)
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
}

impl AllocationsView for InMemoryStore {
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
}

impl RecordsRead for InMemoryStore {
    fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }
}

impl OutboxAudit for InMemoryStore {
    async fn outbox(&self, sku: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        let state = self.state();
        Ok(state
            .outbox
            .range((sku.to_owned(), 0, String::new())..)
            .take_while(|((record_sku, _, _), _)| record_sku == sku)
            .map(|(_, record)| record.envelope.clone())
            .collect())
    }
}
