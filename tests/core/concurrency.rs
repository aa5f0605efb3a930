//! Many tasks allocating one SKU at once on the in-memory store, through several buses (as several
//! processes would: each bus's product queue groups its own callers, the buses race on the version):
//! no oversell, conflicts retried.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::support::memory_store::InMemoryStore;
use allocation::domain::{Allocate, CreateBatch};
use allocation::service::{
    Bootstrap, ProductRepository, ProductWrite, RetryPolicy, ServiceError, StoreError,
};

/// The in-memory store with a network-like delay before each commit, so racing units of work load
/// the same version and all but one of them lose.
#[derive(Default)]
struct SlowCommits(InMemoryStore);

impl ProductRepository for SlowCommits {
    crate::delegate_loads!(0);
    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.0.commit(writes).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_on_one_sku_never_oversell_and_conflicts_are_retried() {
    let stock = 40u32;
    let tasks = 64;
    // A unit of work loses a race only when another task's commit landed in between, and each task
    // commits once: with as many attempts as tasks, no task can run out of attempts.
    let store = Arc::new(SlowCommits::default());
    let retry = RetryPolicy {
        max_attempts: tasks,
        budget: std::time::Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    let buses: Vec<_> = (0..8)
        .map(|_| Bootstrap::new(Arc::clone(&store)).retry(retry).build())
        .collect();
    let bus = &buses[0];
    bus.handle(&CreateBatch::new("b1", "HOT", stock, None).unwrap(), None)
        .await
        .unwrap();

    let handles: Vec<_> = (0..tasks)
        .map(|n| {
            let bus = buses[n as usize % buses.len()].clone();
            tokio::spawn(async move {
                bus.handle(
                    &Allocate::new(format!("order-{n}"), "HOT", 1).unwrap(),
                    None,
                )
                .await
            })
        })
        .collect();
    let (mut allocated, mut out_of_stock, mut gave_up) = (0u32, 0u32, 0u32);
    for handle in handles {
        match handle.await.unwrap() {
            Ok(_) => allocated += 1,
            Err(ServiceError::OutOfStock(_)) => out_of_stock += 1,
            // Counted, so a regression shows as a failed assertion below rather than a panic here.
            Err(e) if e.is_version_conflict() => gave_up += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    let mut uow = bus.unit_of_work(None);
    let product = uow.get("HOT", &[]).await.unwrap().unwrap();
    let batch = product.batch("b1").unwrap();
    assert_eq!(
        batch.allocated_quantity(),
        u64::from(allocated),
        "every answered allocation is stored"
    );
    assert!(batch.available_quantity() >= 0, "never oversold");
    assert_eq!(allocated + out_of_stock + gave_up, tasks);
    let retries: u64 = buses
        .iter()
        .map(|bus| bus.stats().conflict_retries.load(Ordering::Relaxed))
        .sum();
    assert!(retries > 0, "racing commits were retried");
    assert_eq!(gave_up, 0, "no task ran out of attempts");
    assert_eq!(allocated, stock);
}
