//! The outbox feed port: what an in-process relay needs from a store besides its repository (the local
//! server's event flow): pending events in commit order, delivery marks, a commit signal, and the
//! dead letters of its consumers. The embedded store implements it.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::StoreError;
use crate::domain::EventEnvelope;

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

/// The outbox seen by a relay, and the dead letters of its consumers.
pub trait OutboxFeed: Send + Sync + 'static {
    /// Up to `limit` undelivered events in commit order, each with its sequence number (strictly
    /// increasing). Only durable commits are visible.
    fn pending_outbox(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(u64, EventEnvelope)>, StoreError>> + Send;

    /// Removes these events from the pending ones (durably); unknown or already delivered ones are
    /// ignored. Answers how many were pending.
    fn mark_delivered(&self, seqs: &[u64]) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Keeps an event a consumer gave up on after `attempts` attempts (durably); answers its id.
    fn add_dead_letter(
        &self,
        envelope: &EventEnvelope,
        reason: &str,
        attempts: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every dead letter, oldest first.
    fn dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    /// Changes after every commit that added outbox events (the value is the newest sequence
    /// number); call `borrow_and_update()` before reading `pending_outbox` so no commit is missed.
    fn subscribe_commits(&self) -> watch::Receiver<u64>;
}
