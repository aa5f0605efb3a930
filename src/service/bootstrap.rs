//! The composition root: the one place a message bus is made, with its store, event wiring,
//! notifications and retry policy. Every binary, the local server, the tests and the benches build
//! their bus here.

use std::sync::Arc;

use super::{
    EventWiring, MessageBus, NoNotifications, Notifications, RetryPolicy, Store,
    StoreUnitOfWorkFactory,
};

/// The bus over a store, as every entrypoint uses it.
pub type Bus<S> = MessageBus<StoreUnitOfWorkFactory<S>>;

/// A bus under construction. [`Bootstrap::new`] is the deployed wiring; the setters change one part.
pub struct Bootstrap<S: Store> {
    store: Arc<S>,
    wiring: EventWiring,
    notifications: Arc<dyn Notifications>,
    retry: RetryPolicy,
}

impl<S: Store> Bootstrap<S> {
    /// As deployed (the Lambda functions and the local server): every event leaves through the
    /// outbox, no notification is sent in process, the default retry policy.
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            wiring: EventWiring::outbox(),
            notifications: Arc::new(NoNotifications),
            retry: RetryPolicy::default(),
        }
    }

    /// Where each event type is handled (the book's tests: `EventWiring::in_process()`).
    pub fn wiring(mut self, wiring: EventWiring) -> Self {
        self.wiring = wiring;
        self
    }

    /// Who tells the purchasing team when an `OutOfStock` is handled by this bus.
    pub fn notifications(mut self, notifications: Arc<dyn Notifications>) -> Self {
        self.notifications = notifications;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn build(self) -> Bus<S> {
        MessageBus::new(
            StoreUnitOfWorkFactory::new(self.store, self.wiring),
            self.notifications,
            self.retry,
        )
    }
}

/// A bus as deployed over this store: `Bootstrap::new(store).build()`.
pub fn outbox_bus<S: Store>(store: Arc<S>) -> Bus<S> {
    Bootstrap::new(store).build()
}
