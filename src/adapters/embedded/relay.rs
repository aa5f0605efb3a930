//! Outbox relay support: pending events in commit order, delivery marks, dead letters, commit signal.
//!
//! A relay loop (at-least-once delivery):
//! ```no_run
//! # use allocation::adapters::embedded::EmbeddedStore;
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

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::tables::encode;
use super::writer::Request;
use super::{read, EmbeddedStore};
use crate::domain::EventEnvelope;
use crate::service::StoreError;

/// An event a consumer gave up on, kept for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Assigned when added; increasing, so dead letters list in the order they failed.
    pub id: u64,
    pub envelope: EventEnvelope,
    /// Why the last attempt failed.
    pub reason: String,
    /// When it was given up on (serialized as RFC 3339).
    pub failed_at: DateTime<Utc>,
    /// How many times delivery or handling was attempted.
    pub attempts: u32,
}

/// A dead letter as stored (its id is the key).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredDeadLetter {
    envelope: EventEnvelope,
    reason: String,
    failed_at: DateTime<Utc>,
    attempts: u32,
}

impl StoredDeadLetter {
    pub(super) fn with_id(self, id: u64) -> DeadLetter {
        DeadLetter {
            id,
            envelope: self.envelope,
            reason: self.reason,
            failed_at: self.failed_at,
            attempts: self.attempts,
        }
    }
}

/// The result of [`EmbeddedStore::check_outbox`]: every event is either pending or delivered, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxCheck {
    /// Events in the outbox (they are kept after delivery).
    pub events: u64,
    /// Events not yet marked delivered.
    pub pending: u64,
    /// `events - pending`.
    pub delivered: u64,
    /// The sequence number the next event will get.
    pub next_seq: u64,
}

impl EmbeddedStore {
    /// Up to `limit` undelivered outbox events, in commit order, each with its global sequence number
    /// (strictly increasing across all SKUs). Only durable commits are visible.
    pub async fn pending_outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        self.read(move |db| read::pending_outbox(db, limit)).await
    }

    /// Marks these events delivered: they leave the pending index (the outbox keeps them). Unknown or
    /// already delivered sequence numbers are ignored. Answers how many were pending. Durable on return.
    pub async fn mark_delivered(&self, seqs: &[u64]) -> Result<u64, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let seqs = seqs.to_vec();
        self.request(|reply| Request::MarkDelivered { seqs, reply })
            .await
    }

    /// Stores an event a consumer gave up on after `attempts` attempts; `failed_at` is now. Answers the
    /// dead letter's id. Durable on return.
    pub async fn add_dead_letter(
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
        self.request(|reply| Request::DeadLetter { value, reply })
            .await
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(read::dead_letters).await
    }

    /// A signal for relays: its value is the sequence number of the newest durable outbox event (0:
    /// none since the store opened), updated after every group commit that added events.
    /// `changed().await` wakes on the next one; call `borrow_and_update()` before reading
    /// `pending_outbox` so that a commit landing in between is not missed.
    pub fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.shared.outbox_head.subscribe()
    }

    /// Walks the outbox and its pending index and checks they agree: every event has a unique sequence
    /// number below the next one, and every pending entry points to its event. `Corrupt` if not.
    pub async fn check_outbox(&self) -> Result<OutboxCheck, StoreError> {
        self.read(read::check_outbox).await
    }
}
