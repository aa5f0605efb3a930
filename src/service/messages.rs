//! Which handler takes which message (the book's `HANDLERS` table), and how the bus runs it.
//!
//! [`Message`] is what callers hand to `MessageBus::handle`, the bus's one entry: each command, and an
//! event delivered from a queue. A command on a product goes through that product's queue
//! (`product_queue`): `Allocate` and `Reallocate` wait there and are applied in groups by the one
//! allocation handler (`handlers::allocate`; a single allocation is a group of one); `CreateBatch`
//! and `ChangeBatchQuantity` take their turn alone. [`Handler`] is the other half: the handler a
//! message runs in a fresh unit of work once its turn comes (the bus retries it on version conflicts).

use std::future::Future;

use super::handlers::{self, QueuedAllocation};
use super::{MessageBus, Notifications, ProductRepository, ServiceError, UnitOfWork};
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

/// A handler run in one unit of work, with its typed result.
pub(super) trait Handler: Send + Sync {
    type Output: Send;

    fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
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

impl Handler for CreateBatch {
    type Output = ();
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<(), ServiceError> {
        handlers::add_batch(self, uow).await
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
                let message = ChangeBatchQuantityOf {
                    sku: sku.clone(),
                    cmd: self.clone(),
                };
                bus.run_in_turn(sku, message, correlation_id).await
            }
            // No product holds the batch: nothing to queue behind; the handler answers.
            None => bus.run(self, correlation_id).await,
        }
    }
}

impl Handler for ChangeBatchQuantity {
    type Output = ();
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<(), ServiceError> {
        handlers::change_batch_quantity(None, self, uow).await
    }
}

/// A quantity change whose batch's SKU is already known (looked up before it joined the queue).
pub(super) struct ChangeBatchQuantityOf {
    pub sku: String,
    pub cmd: ChangeBatchQuantity,
}

impl Handler for ChangeBatchQuantityOf {
    type Output = ();
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<(), ServiceError> {
        handlers::change_batch_quantity(Some(&self.sku), &self.cmd, uow).await
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

/// Allocations of one SKU applied together: the one allocation handler.
pub(super) struct AllocateGroup<'a> {
    pub sku: &'a str,
    pub allocations: &'a [QueuedAllocation],
}

impl Handler for AllocateGroup<'_> {
    type Output = Vec<Result<String, ServiceError>>;
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<Self::Output, ServiceError> {
        handlers::allocate(self.sku, self.allocations, uow).await
    }
}

/// An event handled by its in-process handler, right after the commit that recorded it.
pub(super) struct HandleEvent<'a> {
    pub envelope: &'a EventEnvelope,
    pub notifications: &'a dyn Notifications,
}

impl Handler for HandleEvent<'_> {
    type Output = ();
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<(), ServiceError> {
        match &self.envelope.event {
            // Handled here, not through the product's queue: the event may have been raised by the
            // very group that holds the product's turn.
            Event::AllocationRequired(required) => {
                let cmd = Reallocate::try_from(required).map_err(ServiceError::Invalid)?;
                let correlation_id = self.envelope.correlation_id.as_deref();
                let sku = cmd.sku.to_string();
                let group = [QueuedAllocation::new(cmd, correlation_id)];
                let answer = handlers::allocate(&sku, &group, uow).await?.pop();
                answer.map_or(Ok(()), reallocated)
            }
            Event::OutOfStock(_) => {
                handlers::send_out_of_stock_notification(self.envelope, self.notifications).await
            }
            // Published for other systems; nothing in this service reacts to it.
            Event::Allocated(_) => Ok(()),
        }
    }
}

/// A reallocation's outcome: allocated, or kept waiting for stock (out of stock), are both done.
fn reallocated(answer: Result<String, ServiceError>) -> Result<(), ServiceError> {
    match answer {
        Ok(_) | Err(ServiceError::OutOfStock(_)) => Ok(()),
        Err(error) => Err(error),
    }
}
