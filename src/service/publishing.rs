//! The publishing ports: where committed outbox events are published (the events topic), and the
//! outbox's publication record (which events are published, which still pending). The stream relay
//! and the republisher (`entrypoints::lambda`) use them; SNS and the DynamoDB table implement them.

use std::future::Future;

use super::StoreError;
use crate::domain::EventEnvelope;

/// An event could not be published; `detail` keeps the whole error chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("publishing event {event_id} failed: {detail}")]
pub struct PublishError {
    pub event_id: String,
    pub detail: String,
}

/// Where outbox events go. Answers the message id.
pub trait EventPublisher: Send + Sync {
    fn publish(
        &self,
        envelope: &EventEnvelope,
    ) -> impl Future<Output = Result<String, PublishError>> + Send;
}

/// One outbox item to publish: its key in the table and its event (or why it cannot be read).
#[derive(Debug)]
pub struct OutboxItem {
    pub pk: String,
    pub sk: String,
    pub envelope: Result<EventEnvelope, StoreError>,
}

/// Where a publisher records that an outbox item was published (the stream relay needs no more).
pub trait PublishedMarks: Send + Sync {
    /// Records that the item with this key was published (an item that no longer exists is left
    /// alone).
    fn mark_published(
        &self,
        pk: &str,
        sk: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The outbox's publication record: the marks, and the items to publish again.
pub trait PublicationRecord: PublishedMarks {
    /// Items still pending that were committed at or before `created_before` (epoch seconds), at
    /// most `max`.
    fn pending(
        &self,
        created_before: i64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<OutboxItem>, StoreError>> + Send;

    /// The SKU's items committed in `from..=to` (epoch seconds), published or not, at most `max`.
    fn recorded(
        &self,
        sku: &str,
        from: i64,
        to: i64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<OutboxItem>, StoreError>> + Send;
}
