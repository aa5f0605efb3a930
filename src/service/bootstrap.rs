//! The composition root: the one place a message bus is made, with its store, event wiring,
//! notifications and retry policy. Every binary, the local server, the tests and the benches build
//! their bus here.

use std::sync::Arc;

use super::{
    EventWiring, MessageBus, NoNotifications, Notifications, ProductRepository, RetryPolicy,
};

/// What an entrypoint is handed: the bus, for every command and delivered event, and the store,
/// for what is not a message (the allocations view, the records-read counter; locally the outbox
/// feed and its dead letters). Entrypoints use these two, never the bus's insides.
pub struct App<S: ProductRepository> {
    pub bus: MessageBus<S>,
    pub store: Arc<S>,
}

impl<S: ProductRepository> Clone for App<S> {
    fn clone(&self) -> Self {
        Self {
            bus: self.bus.clone(),
            store: Arc::clone(&self.store),
        }
    }
}

/// A bus under construction. [`Bootstrap::new`] is the deployed wiring; the setters change one part.
pub struct Bootstrap<S: ProductRepository> {
    store: Arc<S>,
    wiring: EventWiring,
    notifications: Arc<dyn Notifications>,
    retry: RetryPolicy,
}

impl<S: ProductRepository> Bootstrap<S> {
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

    /// The bus alone (the book's tests, the benches).
    pub fn build(self) -> MessageBus<S> {
        MessageBus::new(self.store, self.wiring, self.notifications, self.retry)
    }

    /// The bus with its store: what an entrypoint is handed.
    pub fn app(self) -> App<S> {
        let store = Arc::clone(&self.store);
        App {
            bus: self.build(),
            store,
        }
    }
}

/// The app as deployed over this store: `Bootstrap::new(store).app()`.
pub fn deployed_app<S: ProductRepository>(store: Arc<S>) -> App<S> {
    Bootstrap::new(store).app()
}
