//! `OrderLine`: a customer's request for a quantity of one SKU, within an order.

use std::sync::Arc;

use super::{DomainError, OrderId, Quantity, Sku};

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
    /// A line of parsed values (`values.rs`): valid identifiers and a quantity of at least 1.
    pub fn new(
        orderid: impl AsRef<str>,
        sku: impl AsRef<str>,
        qty: u32,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            orderid: OrderId::parse(orderid)?.into(),
            sku: Sku::parse(sku)?.into(),
            qty: Quantity::positive(qty.into())?.get(),
        })
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
