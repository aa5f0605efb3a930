//! One handler per message: load the product through the unit of work, apply the domain rule, commit.

use crate::domain::AllocationRequired;
use crate::domain::{
    Allocate, Batch, ChangeBatchQuantity, CreateBatch, Event, EventEnvelope, OrderLine, Product,
};

use super::{Notifications, ServiceError, StoreError, UnitOfWork};

/// The most waiting lines one arrival of stock offers (each gets an `AllocationRequired` in the same
/// commit); the others wait for the next arrival.
pub const MAX_LINES_OFFERED: usize = 256;

/// `CreateBatch`: adds the batch, creating the product on its first batch, and offers the new stock
/// to the product's waiting lines.
pub async fn add_batch<U: UnitOfWork>(cmd: &CreateBatch, uow: &mut U) -> Result<(), ServiceError> {
    let batch = Batch::new(&cmd.reference, &cmd.sku, cmd.qty.get(), cmd.eta)?;
    // The same batch again (a retry whose answer was lost) is answered as the first time; another
    // batch under its reference is a conflict naming what differs.
    if let Some(product) = uow.get_by_batchref(&cmd.reference).await? {
        if let Some(existing) = product.batch(&cmd.reference) {
            return Ok(existing.check_same_as(&batch)?);
        }
    }
    if uow.get(&cmd.sku, &[]).await?.is_none() {
        uow.add(Product::new(&cmd.sku)?);
    }
    let product = uow
        .get(&cmd.sku, &[])
        .await?
        .ok_or_else(|| ServiceError::InvalidSku(cmd.sku.to_string()))?;
    // Created in between the two reads above, by a request just like this one or not.
    if let Some(existing) = product.batch(&cmd.reference) {
        return Ok(existing.check_same_as(&batch)?);
    }
    product.add_batch(batch)?;
    offer_waiting_lines(&cmd.sku, uow).await?;
    match uow.commit().await {
        // Another request took the reference between the check and the commit: try again, so the
        // answer compares with the batch it made (the same request answers 201, another 409).
        Err(StoreError::DuplicateBatchReference(_)) => {
            Err(ServiceError::Store(StoreError::VersionConflict {
                sku: cmd.sku.to_string(),
            }))
        }
        other => Ok(other?),
    }
}

/// After stock arrived (a new batch, a raised quantity) in the tracked product of `sku`: loads its
/// oldest waiting lines the stock may take and records an `AllocationRequired` for each, so each is
/// allocated in its own transaction, oldest first.
async fn offer_waiting_lines<U: UnitOfWork>(sku: &str, uow: &mut U) -> Result<(), ServiceError> {
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

/// `Allocate`: answers the reference of the batch holding the line. The product is loaded with this
/// order's line only. Out of stock is reported as an error after its commit (the `OutOfStock` that
/// opens a stock-out episode; nothing at all during one).
pub async fn allocate<U: UnitOfWork>(cmd: &Allocate, uow: &mut U) -> Result<String, ServiceError> {
    allocate_line(cmd, false, uow).await
}

/// Allocates `cmd`'s line; a `reallocation` that finds no stock keeps the line waiting (a
/// back-order) where a requested allocation turns it away.
async fn allocate_line<U: UnitOfWork>(
    cmd: &Allocate,
    reallocation: bool,
    uow: &mut U,
) -> Result<String, ServiceError> {
    let line = OrderLine::new(&cmd.orderid, &cmd.sku, cmd.qty.get())?;
    let product = uow
        .get(&cmd.sku, &[line.orderid()])
        .await?
        .ok_or_else(|| ServiceError::InvalidSku(cmd.sku.to_string()))?;
    let batchref = if reallocation {
        product.reallocate(&line)?
    } else {
        product.allocate(&line)?
    };
    uow.commit().await?;
    batchref
        .map(|reference| reference.to_string())
        .ok_or_else(|| ServiceError::OutOfStock(cmd.sku.to_string()))
}

/// One of several allocations of the same SKU applied together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedAllocation {
    pub cmd: Allocate,
    /// The correlation id of the events this allocation records.
    pub correlation_id: Option<String>,
    /// An `AllocationRequired` (the line is kept waiting when no batch can take it), not a client's
    /// request (turned away).
    pub reallocation: bool,
}

/// Allocations of one SKU in ONE unit of work: one load (the product with every order's line), each
/// allocation in turn on the same product, one commit. Each gets its own answer (the batch, out of
/// stock, or a domain error that concerns it alone); an `Err` of the whole is a load or commit failure
/// that concerns them all (the bus retries a version conflict).
pub async fn allocate_together<U: UnitOfWork>(
    sku: &str,
    allocations: &[QueuedAllocation],
    uow: &mut U,
) -> Result<Vec<Result<String, ServiceError>>, ServiceError> {
    let lines: Vec<Result<OrderLine, ServiceError>> = allocations
        .iter()
        .map(|a| {
            if a.cmd.sku != sku {
                return Err(ServiceError::InvalidSku(a.cmd.sku.to_string()));
            }
            OrderLine::new(&a.cmd.orderid, &a.cmd.sku, a.cmd.qty.get()).map_err(ServiceError::from)
        })
        .collect();
    let orderids: Vec<&str> = lines.iter().flatten().map(OrderLine::orderid).collect();
    if uow.get(sku, &orderids).await?.is_none() {
        return Ok(allocations
            .iter()
            .map(|a| Err(ServiceError::InvalidSku(a.cmd.sku.to_string())))
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
        let allocated = if allocation.reallocation {
            product.reallocate(&line)
        } else {
            product.allocate(&line)
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

/// `ChangeBatchQuantity`: sets the quantity and deallocates what no longer fits, loading only the
/// lines that must go (greatest order id first). When the store limits the size of a commit, lines
/// are deallocated in chunks, each its own consistent commit that also lowers the quantity as far as
/// it can (so the room it frees is never taken again before the change completes).
pub async fn change_batch_quantity<U: UnitOfWork>(
    cmd: &ChangeBatchQuantity,
    uow: &mut U,
) -> Result<(), ServiceError> {
    change_batch_quantity_of(None, cmd, uow).await
}

/// `ChangeBatchQuantity` when the caller already knows the batch's SKU (`Some`): no lookup of the
/// reference (a batch never moves to another SKU). `None` looks it up.
pub async fn change_batch_quantity_of<U: UnitOfWork>(
    sku: Option<&str>,
    cmd: &ChangeBatchQuantity,
    uow: &mut U,
) -> Result<(), ServiceError> {
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

/// The line an `AllocationRequired` event asks to allocate again (an error if the event, read from a
/// queue, names an invalid one).
pub fn reallocation(event: &Event) -> Option<Result<Allocate, ServiceError>> {
    match event {
        Event::AllocationRequired(required) => Some(line_to_reallocate(required)),
        _ => None,
    }
}

/// The allocation an `AllocationRequired` asks for.
fn line_to_reallocate(required: &AllocationRequired) -> Result<Allocate, ServiceError> {
    let allocate = Allocate::new(&required.orderid, &required.sku, required.qty);
    allocate.map_err(ServiceError::Invalid)
}

/// `AllocationRequired`: allocates the line again in its own transaction. Out of stock is not a
/// failure here: the line waits for stock (a back-order) and the message is done. Idempotent by the
/// line's state: a line already allocated answers its batch and writes nothing.
pub async fn reallocate<U: UnitOfWork>(
    required: &AllocationRequired,
    uow: &mut U,
) -> Result<(), ServiceError> {
    match allocate_line(&line_to_reallocate(required)?, true, uow).await {
        Ok(_) | Err(ServiceError::OutOfStock(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// `OutOfStock`, when handled in process: tells the purchasing team (the envelope carries its id
/// and time, which the notification names).
pub async fn send_out_of_stock_notification(
    envelope: &EventEnvelope,
    notifications: &dyn Notifications,
) -> Result<(), ServiceError> {
    notifications.out_of_stock(envelope).await?;
    Ok(())
}
