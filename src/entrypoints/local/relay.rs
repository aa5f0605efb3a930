//! The outbox relay (local mode's stand-in for the stream and `publish_events`): reads pending outbox
//! events in commit order, hands each to its consumer's queue, and marks it delivered once the consumer
//! took it. At least once: a crash before the mark delivers the event again after restart.
//!
//! It reads at start-up (events committed before a crash), then after every commit signal, with a tick
//! as a fallback. Reads and marks batch themselves: what arrives while one is in progress goes into the
//! next. At shutdown it delivers what is pending and waits (bounded) for the deliveries in progress.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::routes::{Ack, QueuedEvent, Routes};
use crate::service::OutboxFeed;

/// Events handed out and not yet answered, at most: memory stays bounded when a consumer falls behind.
const MAX_IN_FLIGHT: usize = 4096;
/// A read of the outbox at least this often, should a commit signal be missed.
const TICK: Duration = Duration::from_secs(1);
/// Taken events are marked delivered (one store write for all) when the oldest is this old, or a
/// batch is waiting. Measured: marking on every pass instead made 15 times as many mark writes and
/// cut throughput by about a fifth at 16 connections (`docs/local.md`).
const MARK_EVERY: Duration = Duration::from_millis(25);
/// After a commit signal the relay waits this long before reading, so the commits of those
/// milliseconds are read together (one read instead of one per commit).
const READ_PACE: Duration = Duration::from_millis(5);
/// How long the shutdown flush may take.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

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
    routes: Routes,
    /// Events read per pass, at most.
    batch: usize,
    acks_tx: mpsc::UnboundedSender<Ack>,
    acks: mpsc::UnboundedReceiver<Ack>,
    /// Handed out, not yet marked delivered: not published twice meanwhile.
    in_flight: HashSet<u64>,
    /// Taken by their consumer, to mark delivered (one write for all).
    taken: Vec<u64>,
    /// When the oldest of `taken` was taken.
    taken_since: Option<Instant>,
    /// The highest sequence number published: a commit signal at or below it brings nothing new.
    last_published: u64,
    /// Read on the next pass whatever the commit signal says (start-up, tick, a released event).
    must_read: bool,
    /// Shutting down: released events are not published again (they stay pending).
    flushing: bool,
    /// Released while flushing: pending, ahead of the events still to publish.
    left_pending: usize,
    stats: RelayStats,
}

impl<F: OutboxFeed> Relay<F> {
    pub fn new(feed: Arc<F>, routes: Routes, batch: usize) -> Self {
        let (acks_tx, acks) = mpsc::unbounded_channel();
        Self {
            feed,
            routes,
            batch: batch.max(1),
            acks_tx,
            acks,
            in_flight: HashSet::new(),
            taken: Vec::new(),
            taken_since: None,
            last_published: 0,
            must_read: true,
            flushing: false,
            left_pending: 0,
            stats: RelayStats::default(),
        }
    }

    /// Relays until `shutdown` becomes `true`, then flushes and returns (dropping the routes, which
    /// closes the consumers' queues).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> RelayStats {
        let mut commits = self.feed.subscribe_commits();
        info!("outbox relay started");
        while !*shutdown.borrow_and_update() {
            self.drain_acks();
            if self.taken.len() >= self.batch
                || self.taken_since.is_some_and(|t| t.elapsed() >= MARK_EVERY)
            {
                self.mark_taken().await;
            }
            let head = *commits.borrow_and_update(); // seen BEFORE reading, so no commit is missed
            if (self.must_read || head > self.last_published) && self.publish_pending().await {
                tokio::task::yield_now().await; // a full batch: there may be more
                continue;
            }
            let mark_at = self.taken_since.map(|since| since + MARK_EVERY);
            tokio::select! {
                () = sleep_until(mark_at) => {},
                changed = commits.changed() => {
                    if changed.is_err() {
                        warn!("commit signal closed; relay stops"); // the store is gone
                        break;
                    }
                    tokio::time::sleep(READ_PACE).await;
                },
                Some(ack) = self.acks.recv() => self.record(ack),
                () = tokio::time::sleep(TICK) => self.must_read = true,
                stop = shutdown.changed() => if stop.is_err() {
                    break; // the flow's handle is gone without a shutdown
                },
            }
        }
        self.flush().await
    }

    fn record(&mut self, ack: Ack) {
        match ack {
            Ack::Taken(seq) => {
                self.taken_since.get_or_insert_with(Instant::now);
                self.taken.push(seq);
            }
            Ack::Released(seq) => {
                self.stats.released += 1;
                self.in_flight.remove(&seq);
                if self.flushing {
                    self.left_pending += 1;
                } else {
                    self.must_read = true;
                }
            }
        }
    }

    fn drain_acks(&mut self) {
        while let Ok(ack) = self.acks.try_recv() {
            self.record(ack);
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
                self.taken_since = None;
            }
            // Kept in flight and marked on the next pass: not published again meanwhile.
            Err(error) => warn!(%error, count = self.taken.len(), "cannot mark events delivered"),
        }
    }

    /// Publishes pending events not in flight; `true` if a full batch was published.
    async fn publish_pending(&mut self) -> bool {
        self.must_read = false;
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            debug!(
                in_flight = self.in_flight.len(),
                "relay at its in-flight limit"
            );
            return false;
        }
        // In-flight (and, when flushing, released) events are still pending and come first: read past.
        let limit = self.in_flight.len() + self.left_pending + self.batch;
        let events = match self.feed.pending_outbox(limit).await {
            Ok(events) => events,
            Err(error) => {
                warn!(%error, "cannot read the outbox; retrying on the next pass");
                return false;
            }
        };
        let mut published = 0;
        for (seq, envelope) in events {
            let released_at_shutdown = self.flushing && seq <= self.last_published;
            if released_at_shutdown || !self.in_flight.insert(seq) {
                continue;
            }
            self.last_published = self.last_published.max(seq);
            let consumer = self.routes.route(&envelope.event).0;
            debug!(seq, event_id = %envelope.id, event_type = envelope.event.type_name(), consumer,
                "publishing");
            self.routes
                .send(QueuedEvent::new(seq, envelope, self.acks_tx.clone()));
            published += 1;
        }
        self.stats.published += published as u64;
        published >= self.batch
    }

    async fn flush(mut self) -> RelayStats {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        self.flushing = true;
        info!(in_flight = self.in_flight.len(), "outbox relay flushing");
        loop {
            self.drain_acks();
            self.mark_taken().await;
            let more = self.publish_pending().await;
            if more {
                continue;
            }
            if self.in_flight.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(ack)) => self.record(ack),
                Ok(None) | Err(_) => break,
            }
        }
        self.drain_acks();
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
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
