//! Which handler takes which message, and by which way (the book's `HANDLERS` table).
//!
//! [`Message`] is what callers hand to `MessageBus::handle`, the bus's one entry: each command, and an
//! event delivered from a queue. A command on a product goes through that product's queue
//! (`product_queue`): `Allocate` and `Reallocate` wait there and are applied in groups by the one
//! allocation handler (`handlers::AllocateGroup`; a single allocation is a group of one);
//! `CreateBatch` and `ChangeBatchQuantity` take their turn alone. The handlers themselves, run in a
//! fresh unit of work once the message's turn comes, are `handlers.rs`.

use std::future::Future;

use super::handlers::{reallocated, ChangeBatchQuantityOf, QueuedAllocation};
use super::{MessageBus, ProductRepository, ServiceError};
use crate::domain::{Allocate, ChangeBatchQuantity, CreateBatch, Event, EventEnvelope, Reallocate};

/// A message the bus accepts: `dispatch` says how it reaches its handler.
pub trait Message: Send + Sync {
    type Output: Send;

    /// Runs the message on `bus` (what `MessageBus::handle` does with it).
    fn dispatch<R: ProductRepository>(
        &self,
        bus: &MessageBus<R>,
        correlation_id: Option<&str>,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send;
}

impl Message for CreateBatch {
    type Output = ();
    async fn dispatch<R: ProductRepository>(
        &self,
        bus: &MessageBus<R>,
        correlation_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        bus.run_in_turn(self.sku.to_string(), self.clone(), correlation_id)
            .await
    }
}

impl Message for Allocate {
    /// The reference of the batch the line is allocated to.
    type Output = String;
    async fn dispatch<R: ProductRepository>(
        &self,
        bus: &MessageBus<R>,
        correlation_id: Option<&str>,
    ) -> Result<String, ServiceError> {
        let allocation = QueuedAllocation::new(self.clone(), correlation_id);
        bus.queues().allocate(bus, allocation).await
    }
}

impl Message for Reallocate {
    /// Allocated, or kept waiting for stock: both are done (out of stock is not a failure here).
    type Output = ();
    async fn dispatch<R: ProductRepository>(
        &self,
        bus: &MessageBus<R>,
        correlation_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let allocation = QueuedAllocation::new(self.clone(), correlation_id);
        reallocated(bus.queues().allocate(bus, allocation).await)
    }
}

impl Message for ChangeBatchQuantity {
    type Output = ();
    async fn dispatch<R: ProductRepository>(
        &self,
        bus: &MessageBus<R>,
        correlation_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        match bus.sku_of_batch(&self.reference).await? {
            Some(sku) => {
                let change = ChangeBatchQuantityOf {
                    sku: Some(sku.clone()),
                    cmd: self.clone(),
                };
                bus.run_in_turn(sku, change, correlation_id).await
            }
            // No product holds the batch: nothing to queue behind; the handler answers.
            None => {
                let change = ChangeBatchQuantityOf {
                    sku: None,
                    cmd: self.clone(),
                };
                bus.run(&change, correlation_id).await
            }
        }
    }
}

/// An event delivered from a queue (the `reallocate` and `notify_out_of_stock` functions, local
/// mode's consumers), under its own correlation id. Its handler's failure is returned, so the
/// delivery can be retried.
impl Message for EventEnvelope {
    type Output = ();
    async fn dispatch<R: ProductRepository>(
        &self,
        bus: &MessageBus<R>,
        _correlation_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let correlation_id = self.correlation_id.as_deref();
        match &self.event {
            Event::AllocationRequired(required) => {
                let cmd = Reallocate::try_from(required).map_err(ServiceError::Invalid)?;
                cmd.dispatch(bus, correlation_id).await
            }
            _ => bus.run(&bus.event_handler(self), correlation_id).await,
        }
    }
}
