//! Events: facts the domain records (past tense), and the envelope they travel in (SNS, SQS, outbox).

use serde::{Deserialize, Serialize};

/// Something that happened to a product. Serialized as `{"type": "<Name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A line was allocated to a batch.
    Allocated {
        orderid: String,
        sku: String,
        qty: u32,
        batchref: String,
    },
    /// A line was deallocated (its batch shrank) and must be allocated again.
    AllocationRequired {
        orderid: String,
        sku: String,
        qty: u32,
    },
    /// A line could not be allocated: no batch of the SKU has enough available.
    OutOfStock { sku: String },
}

impl Event {
    /// The event's type name, as in its JSON tag (and in the SNS `event_type` attribute).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Allocated { .. } => "Allocated",
            Event::AllocationRequired { .. } => "AllocationRequired",
            Event::OutOfStock { .. } => "OutOfStock",
        }
    }

    pub fn sku(&self) -> &str {
        match self {
            Event::Allocated { sku, .. }
            | Event::AllocationRequired { sku, .. }
            | Event::OutOfStock { sku } => sku,
        }
    }
}

/// An event with its identity, as stored in the outbox and delivered (at least once) to consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// `<sku>:<version_number>:<index>`: unique, and the same on every redelivery.
    pub id: String,
    /// The id of the request or message that caused this event, for tracing across functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

impl EventEnvelope {
    /// The id of the `index`-th event committed with `version_number` of `sku`.
    pub fn event_id(sku: &str, version_number: u64, index: usize) -> String {
        format!("{sku}:{version_number}:{index}")
    }
}
