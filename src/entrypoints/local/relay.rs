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

use super::topic::{Outcome, Topic};
use crate::service::OutboxFeed;

/// Tuning of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// Events read per pass.
    pub batch: usize,
    /// Events handed out and not yet taken, at most (beyond that the relay waits).
    pub max_in_flight: usize,
    /// Fallback pass interval, should a commit signal be missed.
    pub tick: Duration,
    /// Least time between two reads of the outbox: commits arriving meanwhile are read together.
    pub pass_interval: Duration,
    /// Delivered events are marked (one store write) when this old, or when `batch` are waiting: the
    /// marks then share one write. A crash before the mark only means a redelivery.
    pub mark_interval: Duration,
    /// How long the shutdown flush may take.
    pub flush_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            max_in_flight: 4096,
            tick: Duration::from_secs(1),
            pass_interval: Duration::from_millis(5),
            mark_interval: Duration::from_millis(25),
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
    /// When the oldest of `taken` was taken.
    taken_since: Option<Instant>,
    /// The highest sequence number published so far: a commit signal at or below it brings nothing new.
    last_published: u64,
    /// Read the outbox on the next pass whatever the signal says (start-up, tick, released events).
    must_read: bool,
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
            taken_since: None,
            last_published: 0,
            must_read: true,
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
            if self.mark_due() {
                self.mark_taken().await;
            }
            let head = *commits.borrow_and_update(); // seen BEFORE reading, so no commit is missed
            let mut more = false;
            if self.must_read || head > self.last_published {
                self.must_read = false;
                more = self.publish_pending().await;
            }
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            let mark_at = self
                .taken_since
                .map(|since| since + self.config.mark_interval);
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() {
                        // The store is gone: nothing more will be committed.
                        warn!("commit signal closed; relay stops");
                        break;
                    }
                    // Let the commits of the next few milliseconds join this pass.
                    tokio::time::sleep(self.config.pass_interval).await;
                },
                Some(outcome) = self.outcomes.recv() => self.record(outcome),
                () = sleep_until_or_never(mark_at) => {},
                () = tokio::time::sleep(self.config.tick) => self.must_read = true,
                _ = shutdown.changed() => {},
            }
        }
        self.flush().await
    }

    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Delivered(seq) => {
                self.taken_since.get_or_insert_with(Instant::now);
                self.taken.push(seq);
            }
            Outcome::Released(seq) => {
                self.stats.released += 1;
                self.in_flight.remove(&seq);
                self.must_read = true;
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

    fn mark_due(&self) -> bool {
        self.taken.len() >= self.config.batch
            || self
                .taken_since
                .is_some_and(|since| since.elapsed() >= self.config.mark_interval)
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
                self.taken_since = None;
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
                self.last_published = self.last_published.max(seq);
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

/// Sleeps until `at`, or forever if there is nothing to wait for.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
