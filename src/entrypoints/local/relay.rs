//! The outbox relay (the local stand-in for the stream + `publish_events`): reads pending outbox events
//! in commit order and publishes them to the topic; marks an event delivered only once every subscription
//! took it (at least once: a crash before the mark delivers it again after restart).
//!
//! It runs at start-up (events committed before a crash), then on every commit signal, with a periodic
//! tick as a fallback. At shutdown it flushes: it delivers what is pending and waits (bounded) for the
//! deliveries in progress.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::feed::OutboxFeed;
use super::topic::{Outcome, Topic};

/// Tuning of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// Events read per pass.
    pub batch: usize,
    /// Events handed out and not yet taken, at most (beyond that the relay waits).
    pub max_in_flight: usize,
    /// Fallback pass interval, should a commit signal be missed.
    pub tick: Duration,
    /// How long the shutdown flush may take.
    pub flush_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            max_in_flight: 4096,
            tick: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(10),
        }
    }
}

/// What the relay did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub published: u64,
    pub delivered: u64,
    pub released: u64,
    /// Events still in flight when the flush ended (they stay pending).
    pub unfinished: usize,
}

pub struct Relay<F> {
    feed: Arc<F>,
    topic: Topic,
    config: RelayConfig,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    /// Handed to the topic, not yet marked delivered (not to be published twice meanwhile).
    in_flight: HashSet<u64>,
    /// Taken by every subscription, to mark delivered.
    taken: Vec<u64>,
    /// Released during the flush: not published again before the next start.
    skip: HashSet<u64>,
    flushing: bool,
    stats: RelayStats,
}

impl<F: OutboxFeed> Relay<F> {
    pub fn new(feed: Arc<F>, topic: Topic, config: RelayConfig) -> Self {
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        Self {
            feed,
            topic,
            config,
            outcomes_tx,
            outcomes,
            in_flight: HashSet::new(),
            taken: Vec::new(),
            skip: HashSet::new(),
            flushing: false,
            stats: RelayStats::default(),
        }
    }

    /// Relays until `shutdown` becomes `true`, then flushes and returns (dropping the topic, which
    /// closes the subscriptions' queues).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> RelayStats {
        let mut commits = self.feed.subscribe_commits();
        info!("outbox relay started");
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            self.drain_outcomes();
            self.mark_taken().await;
            commits.borrow_and_update(); // seen BEFORE reading, so no commit is missed
            let more = self.publish_pending().await;
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                changed = commits.changed() => if changed.is_err() {
                    // The store is gone: nothing more will be committed.
                    warn!("commit signal closed; relay stops");
                    break;
                },
                Some(outcome) = self.outcomes.recv() => self.record(outcome),
                () = tokio::time::sleep(self.config.tick) => {},
                _ = shutdown.changed() => {},
            }
        }
        self.flush().await
    }

    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Delivered(seq) => self.taken.push(seq),
            Outcome::Released(seq) => {
                self.stats.released += 1;
                self.in_flight.remove(&seq);
                if self.flushing {
                    self.skip.insert(seq);
                }
            }
        }
    }

    fn drain_outcomes(&mut self) {
        while let Ok(outcome) = self.outcomes.try_recv() {
            self.record(outcome);
        }
    }

    async fn mark_taken(&mut self) {
        if self.taken.is_empty() {
            return;
        }
        match self.feed.mark_delivered(&self.taken).await {
            Ok(_) => {
                self.stats.delivered += self.taken.len() as u64;
                for seq in self.taken.drain(..) {
                    self.in_flight.remove(&seq);
                }
            }
            // Kept in flight and marked on the next pass: not published again meanwhile.
            Err(error) => warn!(%error, count = self.taken.len(), "cannot mark events delivered"),
        }
    }

    /// Publishes pending events not already in flight; `true` if a full batch was published (there may
    /// be more).
    async fn publish_pending(&mut self) -> bool {
        if self.in_flight.len() >= self.config.max_in_flight {
            debug!(
                in_flight = self.in_flight.len(),
                "relay at its in-flight limit"
            );
            return false;
        }
        // In-flight events are still pending and come first: read past them.
        let limit = self.in_flight.len() + self.skip.len() + self.config.batch;
        let events = match self.feed.pending_outbox(limit).await {
            Ok(events) => events,
            Err(error) => {
                warn!(%error, "cannot read the outbox; retrying on the next pass");
                return false;
            }
        };
        let mut published = 0;
        for (seq, envelope) in events {
            if !self.skip.contains(&seq) && self.in_flight.insert(seq) {
                debug!(seq, event_id = %envelope.id, event_type = envelope.event.type_name(),
                    "publishing");
                self.topic.publish(seq, envelope, &self.outcomes_tx);
                published += 1;
            }
        }
        self.stats.published += published;
        published as usize >= self.config.batch
    }

    async fn flush(mut self) -> RelayStats {
        let deadline = Instant::now() + self.config.flush_timeout;
        self.flushing = true;
        info!(in_flight = self.in_flight.len(), "outbox relay flushing");
        loop {
            self.drain_outcomes();
            self.mark_taken().await;
            let more = self.publish_pending().await;
            if !more && self.in_flight.is_empty() {
                break;
            }
            if more {
                continue;
            }
            match tokio::time::timeout_at(deadline, self.outcomes.recv()).await {
                Ok(Some(outcome)) => self.record(outcome),
                Ok(None) | Err(_) => break,
            }
        }
        self.drain_outcomes();
        self.mark_taken().await;
        self.stats.unfinished = self.in_flight.len();
        if self.stats.unfinished > 0 {
            warn!(unfinished = self.stats.unfinished,
                "relay flush timed out; unfinished events stay pending and are delivered at next start");
        }
        info!(
            published = self.stats.published,
            delivered = self.stats.delivered,
            released = self.stats.released,
            "outbox relay stopped"
        );
        self.stats
    }
}
