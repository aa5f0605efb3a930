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

/// An identifier in ASCII, exactly: every non-ASCII character as its `\u{...}` escape, so two that
/// print alike (`LAMP`, `LАMP` with a Cyrillic A) read differently. For subject lines.
pub fn escaped(identifier: &str) -> String {
    identifier
        .chars()
        .map(|c| match c.is_ascii() {
            true => c.to_string(),
            false => c.escape_unicode().to_string(),
        })
        .collect()
}

/// An identifier as a reader must see it: as is when it is ASCII, else followed by its escaped form
/// (`ЛАМПА (as stored: \u{41b}...)`), so what was stored is exact in the text.
pub fn as_stored(identifier: &str) -> String {
    match identifier.is_ascii() {
        true => identifier.to_owned(),
        false => format!("{identifier} (as stored: {})", escaped(identifier)),
    }
}

/// The plain text of an out-of-stock notification (email body, mailbox entry): which SKU, since
/// when, the order line turned away, what to do, and the event's id (one email per stock-out
/// episode: later refusals of the episode send none). The SKU and order id are shown as stored
/// ([`as_stored`]).
pub fn out_of_stock_message(envelope: &EventEnvelope) -> String {
    let sku = envelope.event.sku();
    let stored_sku = as_stored(sku);
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
            Some(qty) => format!("order {}, quantity {qty}", as_stored(orderid)),
            None => format!("order {}", as_stored(orderid)),
        },
        _ => "not recorded".to_owned(),
    };
    format!(
        "Out of stock for SKU {stored_sku} since {since}.\n\n\
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn identifiers_that_print_alike_read_differently_in_the_email() {
        assert_eq!(as_stored("LAMP"), "LAMP");
        // A Cyrillic A: prints as LAMP.
        assert_eq!(
            as_stored("L\u{410}MP"),
            "L\u{410}MP (as stored: L\\u{410}MP)"
        );
        assert_eq!(escaped("L\u{410}MP"), "L\\u{410}MP");
        let envelope = EventEnvelope {
            id: "L\u{410}MP:2:0".into(),
            correlation_id: None,
            occurred_at: None,
            event: Event::OutOfStock(OutOfStock {
                sku: Arc::from("L\u{410}MP"),
                orderid: Some(Arc::from("order-1")),
                qty: Some(3),
            }),
        };
        let text = out_of_stock_message(&envelope);
        assert!(
            text.starts_with("Out of stock for SKU L\u{410}MP (as stored: L\\u{410}MP) since"),
            "{text}"
        );
    }
}
