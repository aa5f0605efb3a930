//! One handler per message (the book's `handlers.py`): each loads its product through the unit of
//! work, applies the domain's rule and commits. A handler is a [`Handler`]: what the bus runs in a
//! fresh unit of work, again after each version conflict. Which message reaches which handler, and
//! through which queue, is `messages.rs`.

use std::future::Future;

use crate::domain::{
    Allocate, Batch, ChangeBatchQuantity, CreateBatch, DomainError, Event, EventEnvelope,
    OrderLine, Product, Reallocate, Sku,
};

use super::{Notifications, ProductRepository, ServiceError, StoreError, UnitOfWork};

/// A handler, run in one unit of work, with its typed result.
pub trait Handler: Send + Sync {
    type Output: Send;

    fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send;
}

/// The most waiting lines one arrival of stock offers (each gets an `AllocationRequired` in the same
/// commit); the others wait for the next arrival.
pub const MAX_LINES_OFFERED: usize = 256;

/// `CreateBatch`: adds the batch, creating the product on its first batch, and offers the new stock
/// to the product's waiting lines.
impl Handler for CreateBatch {
    type Output = ();
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<(), ServiceError> {
        let batch = Batch::new(self.reference.clone(), self.sku.clone(), self.qty, self.eta);
        // The same batch again (a retry whose answer was lost) is answered as the first time; another
        // batch under its reference is a conflict naming what differs.
        if let Some(product) = uow.get_by_batchref(&self.reference).await? {
            if let Some(existing) = product.batch(&self.reference) {
                return Ok(existing.check_same_as(&batch)?);
            }
        }
        if uow.get(&self.sku, &[]).await?.is_none() {
            uow.add(Product::new(self.sku.clone()));
        }
        let product = uow
            .get(&self.sku, &[])
            .await?
            .ok_or_else(|| ServiceError::InvalidSku(self.sku.to_string()))?;
        // Created in between the two reads above, by a request just like this one or not.
        if let Some(existing) = product.batch(&self.reference) {
            return Ok(existing.check_same_as(&batch)?);
        }
        product.add_batch(batch)?;
        offer_waiting_lines(&self.sku, uow).await?;
        match uow.commit().await {
            // Another request took the reference between the check and the commit: try again, so the
            // answer compares with the batch it made (the same request answers 201, another 409).
            Err(StoreError::DuplicateBatchReference(_)) => {
                Err(ServiceError::Store(StoreError::VersionConflict {
                    sku: self.sku.to_string(),
                }))
            }
            other => Ok(other?),
        }
    }
}

/// After stock arrived (a new batch, a raised quantity) in the tracked product of `sku`: loads its
/// oldest waiting lines the stock may take and records an `AllocationRequired` for each, so each is
/// allocated in its own transaction, oldest first.
async fn offer_waiting_lines<R: ProductRepository>(
    sku: &str,
    uow: &mut UnitOfWork<R>,
) -> Result<(), ServiceError> {
    let limit = uow
        .max_lines_per_commit()
        .unwrap_or(MAX_LINES_OFFERED)
        .min(MAX_LINES_OFFERED);
    uow.load_waiting_lines(sku, limit).await?;
    if let Some(product) = uow.get(sku, &[]).await? {
        product.offer_waiting_lines();
    }
    Ok(())
}

/// What waits in a product's queue to be allocated: a client's `Allocate` (turned away when no batch
/// can take it) or a `Reallocate` (kept waiting for stock), with the correlation id of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAllocation {
    pub command: AllocationCommand,
    pub correlation_id: Option<String>,
}

/// The two commands that allocate a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationCommand {
    Allocate(Allocate),
    Reallocate(Reallocate),
}

impl From<Allocate> for AllocationCommand {
    fn from(cmd: Allocate) -> Self {
        Self::Allocate(cmd)
    }
}

impl From<Reallocate> for AllocationCommand {
    fn from(cmd: Reallocate) -> Self {
        Self::Reallocate(cmd)
    }
}

impl QueuedAllocation {
    pub fn new(command: impl Into<AllocationCommand>, correlation_id: Option<&str>) -> Self {
        Self {
            command: command.into(),
            correlation_id: correlation_id.map(str::to_owned),
        }
    }

    pub fn sku(&self) -> &Sku {
        match &self.command {
            AllocationCommand::Allocate(cmd) => &cmd.sku,
            AllocationCommand::Reallocate(cmd) => &cmd.sku,
        }
    }

    /// The line the command asks for, of the values it carries (parsed once, at the edge).
    fn line(&self) -> Result<OrderLine, DomainError> {
        let (orderid, sku, qty) = match &self.command {
            AllocationCommand::Allocate(cmd) => (&cmd.orderid, &cmd.sku, cmd.qty),
            AllocationCommand::Reallocate(cmd) => (&cmd.orderid, &cmd.sku, cmd.qty),
        };
        OrderLine::new(orderid.clone(), sku.clone(), qty)
    }
}

/// Allocations of one SKU applied together: `Allocate` and `Reallocate`'s one handler.
pub struct AllocateGroup<'a> {
    pub sku: &'a str,
    pub allocations: &'a [QueuedAllocation],
}

/// `Allocate` and `Reallocate`, the one allocation handler: allocations of one SKU in ONE unit of
/// work (a single allocation is a group of one). One load (the product with each order's line), each
/// allocation in turn on the same product, one commit. Each gets its own answer: the batch's
/// reference, out of stock (for an `Allocate`, reported after the commit: the `OutOfStock` that opens
/// a stock-out episode, nothing at all during one; a `Reallocate` keeps its line waiting), or a
/// domain error that concerns it alone. An `Err` of the whole is a load or commit failure that
/// concerns them all (the bus retries a version conflict).
impl Handler for AllocateGroup<'_> {
    type Output = Vec<Result<String, ServiceError>>;
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<Self::Output, ServiceError> {
        let (sku, allocations) = (self.sku, self.allocations);
        let lines: Vec<Result<OrderLine, ServiceError>> = allocations
            .iter()
            .map(|allocation| {
                if allocation.sku().as_str() != sku {
                    return Err(ServiceError::InvalidSku(allocation.sku().to_string()));
                }
                allocation.line().map_err(ServiceError::from)
            })
            .collect();
        let orderids: Vec<&str> = lines.iter().flatten().map(OrderLine::orderid).collect();
        if uow.get(sku, &orderids).await?.is_none() {
            return Ok(allocations
                .iter()
                .map(|a| Err(ServiceError::InvalidSku(a.sku().to_string())))
                .collect());
        }
        let mut answers = Vec::with_capacity(allocations.len());
        for (allocation, line) in allocations.iter().zip(lines) {
            let line = match line {
                Ok(line) => line,
                Err(error) => {
                    answers.push(Err(error));
                    continue;
                }
            };
            uow.set_correlation_id(allocation.correlation_id.as_deref());
            let product = uow
                .get(sku, &[])
                .await?
                .ok_or_else(|| ServiceError::InvalidSku(sku.to_owned()))?;
            let allocated = match allocation.command {
                AllocationCommand::Allocate(_) => product.allocate(&line),
                AllocationCommand::Reallocate(_) => product.reallocate(&line),
            };
            answers.push(match allocated {
                Ok(Some(reference)) => Ok(reference.to_string()),
                Ok(None) => Err(ServiceError::OutOfStock(sku.to_owned())),
                Err(error) => Err(error.into()),
            });
        }
        uow.commit().await?;
        Ok(answers)
    }
}

/// A quantity change, with the batch's SKU when the caller already knows it (looked up before the
/// change joined the product's queue; a batch never moves to another SKU), or `None` to look the
/// reference up.
pub struct ChangeBatchQuantityOf {
    pub sku: Option<String>,
    pub cmd: ChangeBatchQuantity,
}

/// `ChangeBatchQuantity`: sets the quantity and deallocates what no longer fits, loading only the
/// lines that must go (greatest order id first). `sku` is the batch's SKU when the caller already
/// knows it (a batch never moves to another SKU); `None` looks the reference up. When the store
/// limits the size of a commit, lines are deallocated in chunks, each its own consistent commit that
/// also lowers the quantity as far as it can (so the room it frees is never taken again before the
/// change completes).
impl Handler for ChangeBatchQuantityOf {
    type Output = ();
    async fn handle<R: ProductRepository>(
        &self,
        uow: &mut UnitOfWork<R>,
    ) -> Result<(), ServiceError> {
        let (sku, cmd) = (self.sku.as_deref(), &self.cmd);
        let limit = uow.max_lines_per_commit().unwrap_or(usize::MAX);
        loop {
            let product = match sku {
                Some(sku) => uow
                    .get(sku, &[])
                    .await?
                    .filter(|product| product.batch(&cmd.reference).is_some()),
                None => uow.get_by_batchref(&cmd.reference).await?,
            }
            .ok_or_else(|| ServiceError::UnknownBatch(cmd.reference.to_string()))?;
            let sku = product.sku().to_owned();
            let raised = product
                .batch(&cmd.reference)
                .is_some_and(|batch| cmd.qty.get() > batch.purchased_quantity());
            let excess = product.excess(&cmd.reference, cmd.qty.get())?;
            if excess > 0 {
                uow.load_lines_to_free(&sku, &cmd.reference, excess, limit)
                    .await?;
            }
            let product = uow
                .get(&sku, &[])
                .await?
                .ok_or_else(|| ServiceError::UnknownBatch(cmd.reference.to_string()))?;
            let complete =
                product.change_batch_quantity_bounded(&cmd.reference, cmd.qty.get(), limit)?;
            if raised {
                offer_waiting_lines(&sku, uow).await?;
            }
            uow.commit().await?;
            if complete {
                return Ok(());
            }
        }
    }
}

/// An event handled by its in-process handler, right after the commit that recorded it.
pub struct HandleEvent<'a> {
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
            // `Reallocate`, run here as a group of one rather than through the product's queue: the
            // event may have been raised by the very group that holds the product's turn.
            Event::AllocationRequired(required) => {
                let cmd = Reallocate::try_from(required).map_err(ServiceError::Invalid)?;
                let correlation_id = self.envelope.correlation_id.as_deref();
                let sku = cmd.sku.to_string();
                let group = [QueuedAllocation::new(cmd, correlation_id)];
                let answer = AllocateGroup {
                    sku: &sku,
                    allocations: &group,
                }
                .handle(uow)
                .await?
                .pop();
                answer.map_or(Ok(()), reallocated)
            }
            // `OutOfStock`: tells the purchasing team (the envelope carries its id and time, which
            // the notification names).
            Event::OutOfStock(_) => Ok(self.notifications.out_of_stock(self.envelope).await?),
            // Published for other systems; nothing in this service reacts to it.
            Event::Allocated(_) => Ok(()),
        }
    }
}

/// A reallocation's outcome: allocated, or kept waiting for stock (out of stock), are both done.
pub(super) fn reallocated(answer: Result<String, ServiceError>) -> Result<(), ServiceError> {
    match answer {
        Ok(_) | Err(ServiceError::OutOfStock(_)) => Ok(()),
        Err(error) => Err(error),
    }
}
