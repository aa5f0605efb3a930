//! The embedded store's outbox feed (the service's `OutboxFeed` port): pending events in commit
//! order, delivery marks, dead letters, the commit signal.
//!
//! A relay loop (at-least-once delivery):
//! ```no_run
//! # use allocation::adapters::embedded::EmbeddedStore;
//! # use allocation::service::OutboxFeed;
//! # async fn deliver(_: &allocation::domain::EventEnvelope) {}
//! # async fn relay(store: &EmbeddedStore) -> Result<(), allocation::service::StoreError> {
//! let mut commits = store.subscribe_commits();
//! loop {
//!     commits.borrow_and_update(); // mark "seen" BEFORE reading, so no commit is missed
//!     let batch = store.pending_outbox(100).await?;
//!     if batch.is_empty() {
//!         if commits.changed().await.is_err() {
//!             return Ok(()); // the store is gone
//!         }
//!         continue;
//!     }
//!     for (_, envelope) in &batch {
//!         deliver(envelope).await;
//!     }
//!     let seqs: Vec<u64> = batch.iter().map(|(seq, _)| *seq).collect();
//!     store.mark_delivered(&seqs).await?;
//! }
//! # }
//! ```
//! A crash between delivery and `mark_delivered` delivers those events again after restart: consumers
//! are idempotent (every event has a stable id).

use chrono::Utc;
use tokio::sync::watch;

use super::tables::{encode, OutboxCheck, StoredDeadLetter};
use super::writer::Request;
use super::{read, EmbeddedStore};
use crate::domain::EventEnvelope;
use crate::service::{DeadLetter, OutboxFeed, StoreError};

impl OutboxFeed for EmbeddedStore {
    /// Up to `limit` undelivered outbox events, in commit order, each with its global sequence number
    /// (strictly increasing across all SKUs). Only durable commits are visible.
    async fn pending_outbox(&self, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        self.read(move |db| read::pending_outbox(db, limit)).await
    }

    /// Marks these events delivered: they leave the pending index (the outbox keeps them). Unknown or
    /// already delivered sequence numbers are ignored. Answers how many were pending. Durable on return.
    async fn mark_delivered(&self, seqs: &[u64]) -> Result<u64, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let seqs = seqs.to_vec();
        self.request(|pending| Request::MarkDelivered { seqs, pending })
            .await
    }

    /// Stores an event a consumer gave up on after `attempts` attempts; `failed_at` is now. Answers the
    /// dead letter's id. Durable on return.
    async fn add_dead_letter(
        &self,
        envelope: &EventEnvelope,
        reason: &str,
        attempts: u32,
    ) -> Result<u64, StoreError> {
        let value = encode(
            "dead letter",
            &StoredDeadLetter {
                envelope: envelope.clone(),
                reason: reason.to_owned(),
                failed_at: Utc::now(),
                attempts,
            },
        )?;
        self.request(|id| Request::DeadLetter { value, id }).await
    }

    /// Every dead letter, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(read::dead_letters).await
    }

    /// A signal for relays: its value is the sequence number of the newest durable outbox event (0:
    /// none since the store opened), updated after every group commit that added events.
    /// `changed().await` wakes on the next one; call `borrow_and_update()` before reading
    /// `pending_outbox` so that a commit landing in between is not missed.
    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.shared.outbox_head.subscribe()
    }
}

impl EmbeddedStore {
    /// Walks the outbox and its pending index and checks they agree: every event has a unique sequence
    /// number below the next one, and every pending entry points to its event. `Corrupt` if not.
    pub async fn check_outbox(&self) -> Result<OutboxCheck, StoreError> {
        self.read(read::check_outbox).await
    }
}
