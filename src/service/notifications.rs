//! The notifications port: how the purchasing team is told a SKU is out of stock.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, so notifiers can be shared as `Arc<dyn Notifications>`.
pub type NotifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), NotificationError>> + Send + 'a>>;

/// A notification could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification failed: {0}")]
pub struct NotificationError(pub String);

/// Sends notifications to people. Used when `OutOfStock` is handled in process.
pub trait Notifications: Send + Sync {
    fn out_of_stock<'a>(&'a self, sku: &'a str) -> NotifyFuture<'a>;
}

/// The human-readable text of an out-of-stock notification (email body, mailbox entry).
pub fn out_of_stock_message(sku: &str) -> String {
    format!(
        "Out of stock for SKU {sku}.\n\nAn order line for {sku} could not be allocated: no batch has \
         enough stock. Please add or enlarge a batch of {sku}."
    )
}

/// Sends nothing: for wirings where `OutOfStock` leaves through the outbox instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNotifications;

impl Notifications for NoNotifications {
    fn out_of_stock<'a>(&'a self, _sku: &'a str) -> NotifyFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}
