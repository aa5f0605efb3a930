//! `OrderLine`: a customer's request for a quantity of one SKU, within an order.

use std::sync::Arc;

use super::{DomainError, OrderId, Quantity, Sku, MAX_QUANTITY};

/// One line of a customer order. A value object: two lines with the same fields are the same line.
/// Identifiers are shared (`Arc<str>`), so the product's line index and the events it records hold
/// the line's own strings instead of copies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderLine {
    orderid: Arc<str>,
    sku: Arc<str>,
    qty: u32,
}

impl OrderLine {
    /// A line of parsed values (`values.rs`, as a command carries them): no parse again, only the
    /// line's own rule, a quantity of at least 1.
    pub fn new(orderid: OrderId, sku: Sku, qty: Quantity) -> Result<Self, DomainError> {
        if qty.get() == 0 {
            return Err(DomainError::QuantityOutOfRange {
                min: 1,
                max: MAX_QUANTITY,
            });
        }
        Ok(Self {
            orderid: orderid.into(),
            sku: sku.into(),
            qty: qty.get(),
        })
    }

    /// A line of raw values, each parsed (tests, and records read back from a store).
    pub fn parse(
        orderid: impl AsRef<str>,
        sku: impl AsRef<str>,
        qty: u32,
    ) -> Result<Self, DomainError> {
        Self::new(
            OrderId::parse(orderid)?,
            Sku::parse(sku)?,
            Quantity::positive(qty.into())?,
        )
    }

    /// A line rebuilt from the product's own (already validated) data.
    pub(crate) fn restored(orderid: Arc<str>, sku: Arc<str>, qty: u32) -> Self {
        Self { orderid, sku, qty }
    }

    pub fn orderid(&self) -> &str {
        &self.orderid
    }

    pub fn sku(&self) -> &str {
        &self.sku
    }

    pub fn qty(&self) -> u32 {
        self.qty
    }

    pub(crate) fn shared_orderid(&self) -> &Arc<str> {
        &self.orderid
    }
}
