//! Bootstrap: the message bus as the deployed entrypoints wire it (every event through the outbox).

use std::sync::Arc;

use super::{
    EventWiring, MessageBus, NoNotifications, Notifications, RetryPolicy, Store,
    StoreUnitOfWorkFactory,
};

/// The bus over a store, as every entrypoint uses it.
pub type Bus<S> = MessageBus<StoreUnitOfWorkFactory<S>>;

/// A bus whose events all leave through the outbox (the Lambda functions and the local server).
pub fn outbox_bus<S: Store>(store: Arc<S>) -> Bus<S> {
    notifying_outbox_bus(store, Arc::new(NoNotifications))
}

/// An outbox bus that also handles delivered `OutOfStock` events with these notifications (the
/// `notify_out_of_stock` function).
pub fn notifying_outbox_bus<S: Store>(
    store: Arc<S>,
    notifications: Arc<dyn Notifications>,
) -> Bus<S> {
    let wiring = EventWiring::outbox();
    MessageBus::new(
        StoreUnitOfWorkFactory::new(store, wiring),
        wiring,
        notifications,
        RetryPolicy::default(),
    )
}
