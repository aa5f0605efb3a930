//! The consumers of local mode's events: a delivered event is handled by the bus, as the cloud's
//! queue-triggered functions do (`AllocationRequired` → reallocate; `OutOfStock` → the bus's
//! notifications, the mailbox file); `Allocated` is published for other systems and only logged.

use super::worker::Consumer;
use crate::domain::EventEnvelope;
use crate::service::{MessageBus, ProductRepository};

/// Hands each delivered event to the bus.
pub struct BusHandler<S: ProductRepository>(pub MessageBus<S>);

impl<S: ProductRepository> Consumer for BusHandler<S> {
    async fn consume(&self, envelope: &EventEnvelope) -> Result<(), String> {
        let handled = self.0.handle(envelope, None).await;
        handled.map_err(|error| error.to_string())
    }
}

/// Published for other systems: logging the delivery is all there is to do.
pub struct EventLog;

impl Consumer for EventLog {
    async fn consume(&self, _envelope: &EventEnvelope) -> Result<(), String> {
        Ok(())
    }
}
