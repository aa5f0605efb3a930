//! The local event flow, started and stopped as one: the outbox relay and one worker per consumer.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;

use super::consumers::{BusHandler, EventLog};
use super::relay::{Relay, RelayStats};
use super::routes::{Queue, Routes, EVENT_LOG, MAILBOX, REALLOCATION_QUEUE};
use super::worker::{Consumer, DeliveryPolicy, Worker};
use crate::service::{App, OutboxFeed, ProductRepository};

/// Reallocations run at once, at most, like the queue's function working on a few batches at a time
/// (chosen, not tuned: the product queues serialise each SKU's anyway). The mailbox and the event log
/// take one event at a time, in order.
const REALLOCATIONS_AT_ONCE: usize = 4;

/// How the local event flow runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// Retries and dead-lettering, for every consumer.
    pub delivery: DeliveryPolicy,
    /// Events the relay reads from the outbox per pass, at most.
    pub relay_batch: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            delivery: DeliveryPolicy::default(),
            relay_batch: 256,
        }
    }
}

/// The running event flow.
pub struct EventFlow {
    shutdown: watch::Sender<bool>,
    relay: JoinHandle<RelayStats>,
    workers: Vec<JoinHandle<()>>,
}

impl EventFlow {
    /// Starts the relay (which delivers what is pending at once) and the consumers' workers. The
    /// bus handles the reallocations and sends the emails (its notifications: the mailbox locally).
    pub fn start<S: ProductRepository + OutboxFeed>(app: &App<S>, config: &FlowConfig) -> Self {
        let store = Arc::clone(&app.store);
        let (shutdown, stopping) = watch::channel(false);
        let mut workers = Workers {
            feed: Arc::clone(&store),
            policy: config.delivery,
            stopping: stopping.clone(),
            running: Vec::new(),
        };
        let handler = || BusHandler(app.bus.clone());
        let routes = Routes {
            reallocations: workers.start(REALLOCATION_QUEUE, handler(), REALLOCATIONS_AT_ONCE),
            emails: workers.start(MAILBOX, handler(), 1),
            event_log: workers.start(EVENT_LOG, EventLog, 1),
        };
        let relay = Relay::new(store, routes, config.relay_batch);
        Self {
            shutdown,
            relay: tokio::spawn(relay.run(stopping)),
            workers: workers.running,
        }
    }

    /// Stops retrying, flushes the relay (bounded by `relay::FLUSH_TIMEOUT`), waits for the workers.
    pub async fn shutdown(self) -> RelayStats {
        self.shutdown.send_replace(true);
        let stats = self.relay.await.unwrap_or_else(|error| {
            warn!(%error, "relay task failed");
            RelayStats::default()
        });
        for worker in self.workers {
            let _ = worker.await;
        }
        stats
    }
}

/// Starts the consumers' workers, sharing the dead letters' store, the policy and the shutdown signal.
struct Workers<F> {
    feed: Arc<F>,
    policy: DeliveryPolicy,
    stopping: watch::Receiver<bool>,
    running: Vec<JoinHandle<()>>,
}

impl<F: OutboxFeed> Workers<F> {
    /// Spawns the consumer's worker; answers its queue.
    fn start<C: Consumer>(&mut self, name: &'static str, consumer: C, concurrency: usize) -> Queue {
        let (queue, deliveries) = mpsc::unbounded_channel();
        let worker = Worker {
            name,
            consumer,
            feed: Arc::clone(&self.feed),
            policy: self.policy,
            concurrency,
            stopping: self.stopping.clone(),
        };
        self.running.push(tokio::spawn(worker.run(deliveries)));
        queue
    }
}
