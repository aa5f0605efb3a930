//! The notifications port: how the purchasing team is told a SKU is out of stock.

use crate::domain::OutOfStock;
use std::future::Future;
use std::pin::Pin;

use chrono::SecondsFormat;

use crate::domain::{Event, EventEnvelope};

/// A boxed future, so notifiers can be shared as `Arc<dyn Notifications>`.
pub type NotifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), NotificationError>> + Send + 'a>>;

/// A notification could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotificationError(pub String);

/// Sends notifications to people. Used when `OutOfStock` is handled in process.
pub trait Notifications: Send + Sync {
    /// Tells that a stock-out episode began (`envelope` holds an `OutOfStock`).
    fn out_of_stock<'a>(&'a self, envelope: &'a EventEnvelope) -> NotifyFuture<'a>;
}

/// The plain text of an out-of-stock notification (email body, mailbox entry): which SKU, since
/// when, the order line turned away, what to do, and the event's id (one email per stock-out
/// episode: later refusals of the episode send none).
pub fn out_of_stock_message(envelope: &EventEnvelope) -> String {
    let sku = envelope.event.sku();
    let since = envelope.occurred_at.map_or_else(
        || "a time not recorded".to_owned(),
        |at| at.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    let turned_away = match &envelope.event {
        Event::OutOfStock(OutOfStock {
            orderid: Some(orderid),
            qty,
            ..
        }) => match qty {
            Some(qty) => format!("order {orderid}, quantity {qty}"),
            None => format!("order {orderid}"),
        },
        _ => "not recorded".to_owned(),
    };
    format!(
        "Out of stock for SKU {sku} since {since}.\n\n\
         Order line turned away: {turned_away}.\n\
         No batch of {sku} had enough stock for it. Please add a batch of {sku} or raise a batch's \
         quantity.\n\n\
         Further lines turned away are not emailed again until stock of {sku} is added or raised; \
         lines that a shrinking batch gave up wait for that stock and are allocated, oldest first, \
         when it arrives.\n\n\
         Event id: {id}\n",
        id = envelope.id,
    )
}

/// Sends nothing: for wirings where `OutOfStock` leaves through the outbox instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNotifications;

impl Notifications for NoNotifications {
    fn out_of_stock<'a>(&'a self, _envelope: &'a EventEnvelope) -> NotifyFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}
