//! Which handler takes which message (the book's `HANDLERS` table): each command, and each event
//! handled in process, is a `Message` the bus runs in a fresh unit of work, with retries.

use super::handlers::{self, QueuedAllocation};
use super::{Notifications, ServiceError, UnitOfWork};
use crate::domain::{Allocate, ChangeBatchQuantity, CreateBatch, Event, EventEnvelope};

/// A message the bus can handle in a unit of work, with its typed result.
pub trait Message: Send + Sync {
    type Output: Send;

    fn handle<U: UnitOfWork>(
        &self,
        uow: &mut U,
    ) -> impl std::future::Future<Output = Result<Self::Output, ServiceError>> + Send;
}

impl Message for CreateBatch {
    type Output = ();
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<(), ServiceError> {
        handlers::add_batch(self, uow).await
    }
}

impl Message for Allocate {
    /// The reference of the batch the line is allocated to.
    type Output = String;
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<String, ServiceError> {
        handlers::allocate(self, uow).await
    }
}

impl Message for ChangeBatchQuantity {
    type Output = ();
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<(), ServiceError> {
        handlers::change_batch_quantity(self, uow).await
    }
}

/// A quantity change whose batch's SKU is already known (the product's queue looked it up).
pub(super) struct ChangeBatchQuantityOf {
    pub sku: String,
    pub cmd: ChangeBatchQuantity,
}

impl Message for ChangeBatchQuantityOf {
    type Output = ();
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<(), ServiceError> {
        handlers::change_batch_quantity_of(Some(&self.sku), &self.cmd, uow).await
    }
}

/// Allocations of one SKU applied together (see [`handlers::allocate_together`]).
pub(crate) struct AllocateTogether<'a> {
    pub sku: &'a str,
    pub allocations: &'a [QueuedAllocation],
}

impl Message for AllocateTogether<'_> {
    type Output = Vec<Result<String, ServiceError>>;
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<Self::Output, ServiceError> {
        handlers::allocate_together(self.sku, self.allocations, uow).await
    }
}

/// An event handled by its in-process handler (as a message, so it gets the same retries).
pub(super) struct HandleEvent<'a> {
    pub envelope: &'a EventEnvelope,
    pub notifications: &'a dyn Notifications,
}

impl Message for HandleEvent<'_> {
    type Output = ();
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<(), ServiceError> {
        match &self.envelope.event {
            Event::AllocationRequired(required) => handlers::reallocate(required, uow).await,
            Event::OutOfStock(_) => {
                handlers::send_out_of_stock_notification(self.envelope, self.notifications).await
            }
            // Published for other systems; nothing in this service reacts to it.
            Event::Allocated(_) => Ok(()),
        }
    }
}
