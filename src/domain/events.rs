//! Events: facts the domain records (past tense), and the envelope they travel in (SNS, SQS, outbox).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Something that happened to a product. Serialized as `{"type": "<Name>", ...fields}`. Each kind
/// is its own type, so a handler takes exactly the event it handles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    Allocated(Allocated),
    AllocationRequired(AllocationRequired),
    OutOfStock(OutOfStock),
}

/// A line was allocated to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocated {
    pub orderid: Arc<str>,
    pub sku: Arc<str>,
    pub qty: u32,
    pub batchref: Arc<str>,
}

/// A line was deallocated (its batch shrank, or it waits for stock) and must be allocated again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRequired {
    pub orderid: Arc<str>,
    pub sku: Arc<str>,
    pub qty: u32,
}

/// A stock-out episode began: a line could not be allocated, no batch of the SKU having enough
/// available. Names the line turned away (absent in events recorded before it was added). Later
/// refusals of the same episode record nothing; it ends when stock is added or raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfStock {
    pub sku: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orderid: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<u32>,
}

impl Event {
    /// The event's type name, as in its JSON tag (and in the SNS `event_type` attribute).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Allocated(_) => "Allocated",
            Event::AllocationRequired(_) => "AllocationRequired",
            Event::OutOfStock(_) => "OutOfStock",
        }
    }

    pub fn sku(&self) -> &str {
        match self {
            Event::Allocated(Allocated { sku, .. })
            | Event::AllocationRequired(AllocationRequired { sku, .. })
            | Event::OutOfStock(OutOfStock { sku, .. }) => sku,
        }
    }
}

/// An event with its identity, as stored in the outbox and delivered (at least once) to consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Unique, and the same on every redelivery: see [`EventEnvelope::event_id`].
    pub id: String,
    /// The id of the request or message that caused this event, for tracing across functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// When the commit that recorded it was made (absent in events recorded before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub event: Event,
}

impl EventEnvelope {
    /// `<sku>:<version_number>:<index>`: the `index`-th event of the commit that made `version_number`.
    pub fn event_id(sku: &str, version_number: u64, index: usize) -> String {
        format!("{sku}:{version_number}:{index}")
    }
}
