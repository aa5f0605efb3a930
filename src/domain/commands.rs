//! Commands: what a caller asks the system to do (imperative). One stable, type-tagged JSON shape each.
//! Their fields are parsed values (`values.rs`): a command that exists is well formed.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{AllocationRequired, BatchRef, DomainError, OrderId, Quantity, Sku};

/// Create a batch of stock for a SKU (the product is created with its first batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBatch {
    #[serde(rename = "ref")]
    pub reference: BatchRef,
    pub sku: Sku,
    pub qty: Quantity,
    #[serde(default)]
    pub eta: Option<NaiveDate>,
}

/// Allocate an order line to the best batch of its SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocate {
    pub orderid: OrderId,
    pub sku: Sku,
    #[serde(deserialize_with = "positive")]
    pub qty: Quantity,
}

/// Allocate again a line that had to leave its batch, or waits for stock (`AllocationRequired`):
/// like [`Allocate`], but a line no batch can take is kept waiting (a back-order), not turned away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reallocate {
    pub orderid: OrderId,
    pub sku: Sku,
    #[serde(deserialize_with = "positive")]
    pub qty: Quantity,
}

/// Set a batch's purchased quantity, deallocating lines if it becomes over-allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatchQuantity {
    #[serde(rename = "ref")]
    pub reference: BatchRef,
    pub qty: Quantity,
}

impl CreateBatch {
    pub fn new(
        reference: impl AsRef<str>,
        sku: impl AsRef<str>,
        qty: u32,
        eta: Option<NaiveDate>,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            reference: BatchRef::parse(reference)?,
            sku: Sku::parse(sku)?,
            qty: Quantity::new(qty.into())?,
            eta,
        })
    }
}

impl Allocate {
    pub fn new(
        orderid: impl AsRef<str>,
        sku: impl AsRef<str>,
        qty: u32,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            orderid: OrderId::parse(orderid)?,
            sku: Sku::parse(sku)?,
            qty: Quantity::positive(qty.into())?,
        })
    }
}

impl Reallocate {
    pub fn new(
        orderid: impl AsRef<str>,
        sku: impl AsRef<str>,
        qty: u32,
    ) -> Result<Self, DomainError> {
        let Allocate { orderid, sku, qty } = Allocate::new(orderid, sku, qty)?;
        Ok(Self { orderid, sku, qty })
    }
}

/// The command an `AllocationRequired` asks for (an error if the event, read from a queue, names an
/// invalid line).
impl TryFrom<&AllocationRequired> for Reallocate {
    type Error = DomainError;

    fn try_from(required: &AllocationRequired) -> Result<Self, DomainError> {
        Self::new(&required.orderid, &required.sku, required.qty)
    }
}

impl ChangeBatchQuantity {
    pub fn new(reference: impl AsRef<str>, qty: u32) -> Result<Self, DomainError> {
        Ok(Self {
            reference: BatchRef::parse(reference)?,
            qty: Quantity::new(qty.into())?,
        })
    }
}

/// A line's quantity, as read from a message: `1..=MAX_QUANTITY`.
fn positive<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
    let qty = u64::deserialize(deserializer)?;
    Quantity::positive(qty).map_err(serde::de::Error::custom)
}
