//! What the service-layer tests share: a bus over a chosen store with recording notifications (the
//! book's `bootstrap_test_app`), and the commands they send.

use std::sync::Arc;
use std::time::Duration;

use crate::support::fakes::FakeNotifications;
use crate::support::memory_store::InMemoryStore;
use allocation::domain::{Allocate, CreateBatch, Product};
use allocation::service::{
    Bootstrap, EventWiring, MessageBus, Notifications, ProductRepository, RetryPolicy,
};
use chrono::NaiveDate;

pub struct Fixture<S: ProductRepository> {
    pub store: Arc<S>,
    pub notifications: Arc<FakeNotifications>,
    pub bus: MessageBus<S>,
}

impl<S: ProductRepository> Fixture<S> {
    /// Given a batch (the command succeeds).
    pub async fn add_batch(&self, reference: &str, sku: &str, qty: u32, eta: Option<NaiveDate>) {
        let cmd = create_batch(reference, sku, qty, eta);
        self.bus.handle(&cmd, None).await.unwrap();
    }
}

pub fn bootstrap_with<S: ProductRepository>(
    store: S,
    wiring: EventWiring,
    notifications: FakeNotifications,
) -> Fixture<S> {
    let store = Arc::new(store);
    let notifications = Arc::new(notifications);
    let bus = Bootstrap::new(Arc::clone(&store))
        .wiring(wiring)
        .notifications(Arc::clone(&notifications) as Arc<dyn Notifications>)
        .retry(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            budget: Duration::from_secs(5),
        })
        .build();
    Fixture {
        store,
        notifications,
        bus,
    }
}

/// The book's test bus: every event handled in process.
pub fn bootstrap_test_app() -> Fixture<InMemoryStore> {
    bootstrap_with(
        InMemoryStore::new(),
        EventWiring::in_process(),
        FakeNotifications::default(),
    )
}

pub fn create_batch(reference: &str, sku: &str, qty: u32, eta: Option<NaiveDate>) -> CreateBatch {
    CreateBatch::new(reference, sku, qty, eta).unwrap()
}

pub fn allocate(orderid: &str, sku: &str, qty: u32) -> Allocate {
    Allocate::new(orderid, sku, qty).unwrap()
}

pub async fn product<S: ProductRepository>(fx: &Fixture<S>, sku: &str) -> Product {
    let mut uow = fx.bus.unit_of_work(None);
    uow.get(sku, &[])
        .await
        .unwrap()
        .expect("product exists")
        .clone()
}
