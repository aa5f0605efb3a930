//! Property test: random command sequences through the bus never break the allocation invariants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::support::memory_store::InMemoryStore;
use allocation::domain::{Allocate, ChangeBatchQuantity, CreateBatch, Product};
use allocation::service::{Bootstrap, EventWiring, ProductRepository, ProductWrite, StoreError};
use chrono::NaiveDate;
use proptest::prelude::*;

use crate::support::commands::Command;

const SKUS: [&str; 2] = ["LAMP", "TABLE"];

/// The in-memory store, recording every committed (sku, expected version, new version).
#[derive(Default)]
struct RecordingStore {
    inner: InMemoryStore,
    commits: Mutex<Vec<(String, Option<u64>, u64)>>,
}

impl ProductRepository for RecordingStore {
    crate::delegate_loads!(inner);
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
            Command::CreateBatch(CreateBatch::new(reference, sku, qty, eta).unwrap())
        }),
        5 => ((0..30u8).prop_map(|n| format!("order-{n}")), sku, 1..12u32).prop_map(|(orderid, sku, qty)| {
            Command::Allocate(Allocate::new(orderid, sku, qty).unwrap())
        }),
        2 => (reference, 0..40u32).prop_map(|(reference, qty)| {
            Command::ChangeBatchQuantity(ChangeBatchQuantity::new(reference, qty).unwrap())
        }),
    ]
}

/// Every order id the generator uses.
fn all_orders() -> Vec<String> {
    (0..30u8).map(|n| format!("order-{n}")).collect()
}

/// Checks a product loaded with every order's line: no batch over-allocated, each batch's stored
/// total equal to the sum of its lines, no line in two batches (one line per order and product).
fn check_invariants(product: &Product, orders: &[String]) -> Result<(), TestCaseError> {
    let mut sums: HashMap<&str, u64> = HashMap::new();
    for orderid in orders {
        if let Some((batch, qty)) = product.line(orderid) {
            *sums.entry(batch.reference()).or_default() += u64::from(qty);
        }
    }
    for batch in product.batches() {
        prop_assert!(
            batch.available_quantity() >= 0,
            "batch {} over-allocated",
            batch.reference()
        );
        let sum = sums.get(batch.reference()).copied().unwrap_or(0);
        prop_assert_eq!(
            sum,
            batch.allocated_quantity(),
            "running total matches the lines"
        );
        prop_assert!(sum <= u64::from(batch.purchased_quantity()));
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
            let bus = Bootstrap::new(Arc::clone(&store)).wiring(wiring).build();
            for command in &commands {
                // Failures (unknown sku, out of stock, duplicate batch) are fine; broken invariants are not.
                let _ = match command {
                    Command::CreateBatch(cmd) => bus.handle(cmd, None).await,
                    Command::Allocate(cmd) => bus.handle(cmd, None).await.map(|_| ()),
                    Command::ChangeBatchQuantity(cmd) => bus.handle(cmd, None).await,
                };
                let mut uow = bus.unit_of_work(None);
                let orders = all_orders();
                let ids: Vec<&str> = orders.iter().map(String::as_str).collect();
                for sku in SKUS {
                    if let Some(product) = uow.get(sku, &ids).await.unwrap() {
                        check_invariants(product, &orders)?;
                    }
                }
            }
            let commits = store.commits.lock().unwrap();
            let mut last: HashMap<&str, u64> = HashMap::new();
            for (sku, expected, new) in commits.iter() {
                // A commit makes a new version, except one that only records refusals (out of stock).
                prop_assert!(*new >= expected.unwrap_or(0), "versions never go back");
                prop_assert_eq!(expected.unwrap_or(0), last.get(sku.as_str()).copied().unwrap_or(0));
                last.insert(sku, *new);
            }
            Ok(())
        })?;
    }
}
