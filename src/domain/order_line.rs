//! `OrderLine`: a customer's request for a quantity of one SKU, within an order.

use super::{validate_identifier, DomainError};

/// One line of a customer order. A value object: two lines with the same fields are the same line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderLine {
    orderid: String,
    sku: String,
    qty: u32,
}

impl OrderLine {
    /// A validated line: non-empty identifiers and a quantity above zero.
    pub fn new(
        orderid: impl Into<String>,
        sku: impl Into<String>,
        qty: u32,
    ) -> Result<Self, DomainError> {
        let (orderid, sku) = (orderid.into(), sku.into());
        validate_identifier("orderid", &orderid)?;
        validate_identifier("sku", &sku)?;
        if qty == 0 {
            return Err(DomainError::NonPositiveQuantity);
        }
        Ok(Self { orderid, sku, qty })
    }

    /// A line rebuilt from a batch's own (already validated) data.
    pub(crate) fn restored(orderid: String, sku: String, qty: u32) -> Self {
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
}
