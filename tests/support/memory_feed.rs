//! `MemoryFeedStore`: the in-memory store with an outbox feed and dead letters, all in memory, for
//! the tests of the local event flow without a file. Not durable.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::support::memory_store::InMemoryStore;
use allocation::domain::EventEnvelope;
use allocation::service::{DeadLetter, OutboxFeed, ProductRepository, ProductWrite, StoreError};
use chrono::Utc;
use tokio::sync::watch;

#[derive(Debug, Default)]
struct FeedState {
    next_seq: u64,
    pending: BTreeMap<u64, EventEnvelope>,
    dead_letters: Vec<DeadLetter>,
    delivered: u64,
}

/// An [`InMemoryStore`] with an outbox feed and dead letters.
#[derive(Debug)]
pub struct MemoryFeedStore {
    inner: InMemoryStore,
    state: Mutex<FeedState>,
    head: watch::Sender<u64>,
}

impl Default for MemoryFeedStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryFeedStore {
    pub fn new() -> Self {
        Self {
            inner: InMemoryStore::new(),
            state: Mutex::new(FeedState {
                next_seq: 1,
                ..FeedState::default()
            }),
            head: watch::channel(0).0,
        }
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many events are still pending.
    pub fn pending_count(&self) -> usize {
        self.state().pending.len()
    }

    /// How many events were marked delivered.
    pub fn delivered_count(&self) -> u64 {
        self.state().delivered
    }
}

impl ProductRepository for MemoryFeedStore {
    crate::delegate_loads!(inner);

    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        self.inner.commit(writes).await?;
        let head = {
            let mut state = self.state();
            for envelope in writes.iter().flat_map(|w| w.outbox.iter()) {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.pending.insert(seq, envelope.clone());
            }
            state.next_seq - 1
        };
        if writes.iter().any(|w| !w.outbox.is_empty()) {
            self.head.send_replace(head);
        }
        Ok(())
    }
}

crate::delegate_views!(MemoryFeedStore, inner);

impl OutboxFeed for MemoryFeedStore {
    async fn pending_outbox(&self, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        Ok(self
            .state()
            .pending
            .iter()
            .take(limit)
            .map(|(seq, envelope)| (*seq, envelope.clone()))
            .collect())
    }

    async fn mark_delivered(&self, seqs: &[u64]) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut removed = 0;
        for seq in seqs {
            if state.pending.remove(seq).is_some() {
                removed += 1;
            }
        }
        state.delivered += removed;
        Ok(removed)
    }

    async fn add_dead_letter(
        &self,
        envelope: &EventEnvelope,
        reason: &str,
        attempts: u32,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let id = state.dead_letters.len() as u64 + 1;
        state.dead_letters.push(DeadLetter {
            id,
            envelope: envelope.clone(),
            reason: reason.to_owned(),
            failed_at: Utc::now(),
            attempts,
        });
        Ok(id)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self.state().dead_letters.clone())
    }

    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}
