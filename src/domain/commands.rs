//! Commands: what a caller asks the system to do (imperative). One stable, type-tagged JSON shape each.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Create a batch of stock for a SKU (the product is created with its first batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBatch {
    #[serde(rename = "ref")]
    pub reference: String,
    pub sku: String,
    pub qty: u32,
    #[serde(default)]
    pub eta: Option<NaiveDate>,
}

/// Allocate an order line to the best batch of its SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocate {
    pub orderid: String,
    pub sku: String,
    pub qty: u32,
}

/// Set a batch's purchased quantity, deallocating lines if it becomes over-allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatchQuantity {
    #[serde(rename = "ref")]
    pub reference: String,
    pub qty: u32,
}
