//! One handler per message: load the product through the unit of work, apply the domain rule, commit.

use crate::domain::{Allocate, Batch, ChangeBatchQuantity, CreateBatch, Event, OrderLine, Product};

use super::{Notifications, ServiceError, UnitOfWork};

/// `CreateBatch`: adds the batch, creating the product on its first batch.
pub async fn add_batch<U: UnitOfWork>(cmd: &CreateBatch, uow: &mut U) -> Result<(), ServiceError> {
    let batch = Batch::new(&cmd.reference, &cmd.sku, cmd.qty, cmd.eta)?;
    if uow.get_by_batchref(&cmd.reference).await?.is_some() {
        return Err(ServiceError::DuplicateBatch(cmd.reference.clone()));
    }
    if uow.get(&cmd.sku).await?.is_none() {
        uow.add(Product::new(&cmd.sku)?);
    }
    let product = uow
        .get(&cmd.sku)
        .await?
        .ok_or_else(|| ServiceError::InvalidSku(cmd.sku.clone()))?;
    product.add_batch(batch)?;
    uow.commit().await?;
    Ok(())
}

/// `Allocate`: answers the reference of the batch holding the line. Out of stock is committed (the
/// `OutOfStock` event must be recorded) and then reported as an error.
pub async fn allocate<U: UnitOfWork>(cmd: &Allocate, uow: &mut U) -> Result<String, ServiceError> {
    let line = OrderLine::new(&cmd.orderid, &cmd.sku, cmd.qty)?;
    let product = uow
        .get(&cmd.sku)
        .await?
        .ok_or_else(|| ServiceError::InvalidSku(cmd.sku.clone()))?;
    let batchref = product.allocate(&line)?;
    uow.commit().await?;
    batchref.ok_or_else(|| ServiceError::OutOfStock(cmd.sku.clone()))
}

/// `ChangeBatchQuantity`: sets the quantity and deallocates what no longer fits. When the store limits
/// the size of a commit, lines are deallocated in chunks, each its own consistent commit, and the
/// quantity is set by the last one.
pub async fn change_batch_quantity<U: UnitOfWork>(
    cmd: &ChangeBatchQuantity,
    uow: &mut U,
) -> Result<(), ServiceError> {
    let limit = uow.max_lines_per_commit().unwrap_or(usize::MAX);
    loop {
        let product = uow
            .get_by_batchref(&cmd.reference)
            .await?
            .ok_or_else(|| ServiceError::UnknownBatch(cmd.reference.clone()))?;
        let complete = product.change_batch_quantity_bounded(&cmd.reference, cmd.qty, limit)?;
        uow.commit().await?;
        if complete {
            return Ok(());
        }
    }
}

/// `AllocationRequired`: allocates the line again in its own transaction. Out of stock is not a
/// failure here: the `OutOfStock` event is recorded and the message is done.
pub async fn reallocate<U: UnitOfWork>(event: &Event, uow: &mut U) -> Result<(), ServiceError> {
    let Event::AllocationRequired { orderid, sku, qty } = event else {
        return Ok(());
    };
    let cmd = Allocate {
        orderid: orderid.clone(),
        sku: sku.clone(),
        qty: *qty,
    };
    match allocate(&cmd, uow).await {
        Ok(_) | Err(ServiceError::OutOfStock(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// `OutOfStock`, when handled in process: tells the purchasing team.
pub async fn send_out_of_stock_notification(
    event: &Event,
    notifications: &dyn Notifications,
) -> Result<(), ServiceError> {
    if let Event::OutOfStock { sku } = event {
        notifications.out_of_stock(sku).await?;
    }
    Ok(())
}
