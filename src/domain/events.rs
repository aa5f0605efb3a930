//! Events: facts the domain records (past tense), and the envelope they travel in (SNS, SQS, outbox).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Something that happened to a product. Serialized as `{"type": "<Name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A line was allocated to a batch.
    Allocated {
        orderid: Arc<str>,
        sku: Arc<str>,
        qty: u32,
        batchref: Arc<str>,
    },
    /// A line was deallocated (its batch shrank) and must be allocated again.
    AllocationRequired {
        orderid: Arc<str>,
        sku: Arc<str>,
        qty: u32,
    },
    /// A line could not be allocated: no batch of the SKU has enough available. Names the line that
    /// was turned away (absent in events recorded before it was added).
    OutOfStock {
        sku: Arc<str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        orderid: Option<Arc<str>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qty: Option<u32>,
    },
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

    /// The order turned away, if this event is a refusal recorded by a commit that made no new
    /// version: such an event is identified by its order (see [`EventEnvelope::refusal_id`]), not by
    /// its index in the commit.
    pub fn refused_order(&self, new_version: bool) -> Option<&str> {
        match self {
            Event::OutOfStock {
                orderid: Some(orderid),
                ..
            } if !new_version => Some(orderid),
            _ => None,
        }
    }

    pub fn sku(&self) -> &str {
        match self {
            Event::Allocated { sku, .. }
            | Event::AllocationRequired { sku, .. }
            | Event::OutOfStock { sku, .. } => sku,
        }
    }
}

/// An event with its identity, as stored in the outbox and delivered (at least once) to consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Unique, and the same on every redelivery: see [`EventEnvelope::event_id`] and
    /// [`EventEnvelope::refusal_id`].
    pub id: String,
    /// The id of the request or message that caused this event, for tracing across functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

impl EventEnvelope {
    /// `<sku>:<version_number>:<index>`: the `index`-th event of the commit that made `version_number`.
    pub fn event_id(sku: &str, version_number: u64, index: usize) -> String {
        format!("{sku}:{version_number}:{index}")
    }

    /// `<sku>:<version_number>:out-of-stock:<orderid>`: the refusal of this order's line, decided on
    /// `version_number` by a commit that changed nothing (so did not make a new version). The same
    /// refusal on the same state is the same event.
    pub fn refusal_id(sku: &str, version_number: u64, orderid: &str) -> String {
        format!("{sku}:{version_number}:out-of-stock:{orderid}")
    }
}
