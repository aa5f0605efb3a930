//! Bootstrap: the message bus as the deployed entrypoints wire it (every event through the outbox).

use std::sync::Arc;

use super::{EventWiring, MessageBus, NoNotifications, RetryPolicy, Store, StoreUnitOfWorkFactory};

/// The bus over a store, as every entrypoint uses it.
pub type Bus<S> = MessageBus<StoreUnitOfWorkFactory<S>>;

/// A bus whose events all leave through the outbox (the Lambda functions and the local server).
pub fn outbox_bus<S: Store>(store: Arc<S>) -> Bus<S> {
    let wiring = EventWiring::outbox();
    MessageBus::new(
        StoreUnitOfWorkFactory::new(store, wiring),
        wiring,
        Arc::new(NoNotifications),
        RetryPolicy::default(),
    )
}
