//! Property test: random command sequences through the bus never break the allocation invariants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use allocation::adapters::InMemoryStore;
use allocation::domain::{
    Allocate, ChangeBatchQuantity, Command, CreateBatch, EventEnvelope, Product,
};
use allocation::service::{
    AllocationView, EventWiring, MessageBus, NoNotifications, ProductWrite, RetryPolicy, Store,
    StoreError, StoreUnitOfWorkFactory, UnitOfWork, UnitOfWorkFactory,
};
use chrono::NaiveDate;
use proptest::prelude::*;

const SKUS: [&str; 2] = ["LAMP", "TABLE"];

/// The in-memory store, recording every committed (sku, expected version, new version).
#[derive(Default)]
struct RecordingStore {
    inner: InMemoryStore,
    commits: Mutex<Vec<(String, Option<u64>, u64)>>,
}

impl Store for RecordingStore {
    async fn load(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        self.inner.load(sku).await
    }
    async fn sku_of_batch(&self, reference: &str) -> Result<Option<String>, StoreError> {
        self.inner.sku_of_batch(reference).await
    }
    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        self.inner.commit(writes).await?;
        let mut commits = self.commits.lock().unwrap();
        for w in writes {
            commits.push((
                w.product.sku().to_owned(),
                w.expected_version,
                w.product.version_number(),
            ));
        }
        Ok(())
    }
    async fn allocations_for_order(
        &self,
        orderid: &str,
    ) -> Result<Vec<AllocationView>, StoreError> {
        self.inner.allocations_for_order(orderid).await
    }
    async fn outbox(&self, sku: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        self.inner.outbox(sku).await
    }
}

fn command() -> impl Strategy<Value = Command> {
    let sku = prop::sample::select(SKUS.to_vec()).prop_map(str::to_owned);
    let reference = (0..6u8).prop_map(|n| format!("batch-{n}"));
    let eta =
        prop::option::of((1..60u32).prop_map(|d| {
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(d.into())
        }));
    prop_oneof![
        2 => (reference.clone(), sku.clone(), 0..40u32, eta).prop_map(|(reference, sku, qty, eta)| {
            Command::CreateBatch(CreateBatch { reference, sku, qty, eta })
        }),
        5 => ((0..30u8).prop_map(|n| format!("order-{n}")), sku, 1..12u32).prop_map(|(orderid, sku, qty)| {
            Command::Allocate(Allocate { orderid, sku, qty })
        }),
        2 => (reference, 0..40u32).prop_map(|(reference, qty)| {
            Command::ChangeBatchQuantity(ChangeBatchQuantity { reference, qty })
        }),
    ]
}

fn check_invariants(product: &Product) -> Result<(), TestCaseError> {
    let mut holder: HashMap<&str, &str> = HashMap::new();
    for batch in product.batches() {
        prop_assert!(
            batch.available_quantity() >= 0,
            "batch {} over-allocated",
            batch.reference()
        );
        let sum: u64 = batch.allocations().map(|(_, q)| u64::from(q)).sum();
        prop_assert_eq!(
            sum,
            batch.allocated_quantity(),
            "running total matches the lines"
        );
        prop_assert!(sum <= u64::from(batch.purchased_quantity()));
        for (orderid, _) in batch.allocations() {
            let previous = holder.insert(orderid, batch.reference());
            prop_assert!(previous.is_none(), "line {} in two batches", orderid);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_the_invariants(commands in prop::collection::vec(command(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = Arc::new(RecordingStore::default());
            let wiring = EventWiring::in_process();
            let bus = MessageBus::new(
                StoreUnitOfWorkFactory::new(Arc::clone(&store), wiring),
                wiring,
                Arc::new(NoNotifications),
                RetryPolicy::default(),
            );
            for command in &commands {
                // Failures (unknown sku, out of stock, duplicate batch) are fine; broken invariants are not.
                let _ = bus.handle_command(command, None).await;
                let mut uow = bus.uows().begin(None);
                for sku in SKUS {
                    if let Some(product) = uow.get(sku).await.unwrap() {
                        check_invariants(product)?;
                    }
                }
            }
            let commits = store.commits.lock().unwrap();
            let mut last: HashMap<&str, u64> = HashMap::new();
            for (sku, expected, new) in commits.iter() {
                prop_assert!(*new > expected.unwrap_or(0), "version strictly increases on each commit");
                prop_assert_eq!(expected.unwrap_or(0), last.get(sku.as_str()).copied().unwrap_or(0));
                last.insert(sku, *new);
            }
            Ok(())
        })?;
    }
}
