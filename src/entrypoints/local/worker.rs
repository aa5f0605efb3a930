//! A consumer's worker (local mode's stand-in for an SQS queue and its Lambda trigger): runs the
//! consumer on each delivery, retries a failure with exponential backoff, and after `max_attempts`
//! failures keeps the event as a dead letter. Then it takes the delivery; at shutdown, an event
//! waiting for a retry is released instead (it stays pending).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::routes::QueuedEvent;
use crate::domain::EventEnvelope;
use crate::service::{exponential_backoff, OutboxFeed};

/// What a consumer does with an event. Must be idempotent: delivery is at least once.
pub trait Consumer: Send + Sync + 'static {
    fn consume(&self, envelope: &EventEnvelope) -> impl Future<Output = Result<(), String>> + Send;
}

/// Retries of a failing delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts before the event goes to the dead letters (SQS `maxReceiveCount`).
    pub max_attempts: u32,
    /// Wait after the first failure; doubles after each one, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl DeliveryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        exponential_backoff(self.base_delay, self.max_delay, attempt)
    }
}

/// Runs one consumer's deliveries, up to `concurrency` at a time (1 keeps them in order).
pub struct Worker<C, F> {
    pub name: &'static str,
    pub consumer: C,
    /// Where the dead letters go.
    pub feed: Arc<F>,
    pub policy: DeliveryPolicy,
    pub concurrency: usize,
    /// Becomes `true` at shutdown: no more waiting to retry.
    pub stopping: watch::Receiver<bool>,
}

/// How a run of attempts ended.
enum Tried<T> {
    /// Succeeded with `T` at this attempt.
    Done(T, u32),
    GaveUp {
        attempts: u32,
        reason: String,
    },
    Stopped,
}

impl<C: Consumer, F: OutboxFeed> Worker<C, F> {
    /// Serves the queue until it closes, then waits for the deliveries in progress.
    pub async fn run(self, mut queue: mpsc::UnboundedReceiver<QueuedEvent>) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.concurrency.max(1)));
        let mut running = JoinSet::new();
        while let Some(delivery) = queue.recv().await {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let this = Arc::clone(&this);
            running.spawn(async move {
                this.deliver(delivery).await;
                drop(permit);
            });
            while running.try_join_next().is_some() {} // the set does not grow with the history
        }
        while running.join_next().await.is_some() {}
    }

    async fn deliver(&self, delivery: QueuedEvent) {
        let (name, seq, envelope) = (self.name, delivery.seq, &delivery.envelope);
        let (event_id, event_type) = (&envelope.id, envelope.event.type_name());
        let correlation_id = envelope.correlation_id.as_deref().unwrap_or("-");
        let consume = || self.consumer.consume(envelope);
        let failed = "delivery failed, will retry";
        let (attempts, reason) = match self
            .attempt(event_id, failed, consume, self.policy.max_attempts)
            .await
        {
            Tried::Done((), attempt) => {
                info!(consumer = name, seq, %event_id, event_type, correlation_id, attempt,
                    "event delivered");
                return delivery.take();
            }
            Tried::GaveUp { attempts, reason } => (attempts, format!("{name}: {reason}")),
            Tried::Stopped => return self.release(delivery),
        };
        // The event is not delivered again while its dead letter cannot be written (a full disk):
        // only the write is retried, until it succeeds or the server stops.
        let write = || async {
            let written = self.feed.add_dead_letter(envelope, &reason, attempts).await;
            written.map_err(|e| e.to_string())
        };
        let failed = "cannot store the dead letter; retrying the write";
        match self.attempt(event_id, failed, write, u32::MAX).await {
            Tried::Done(dead_letter_id, _) => {
                error!(consumer = name, seq, %event_id, event_type, correlation_id, attempts,
                    dead_letter_id, %reason, "event moved to the dead letters");
                delivery.take();
            }
            Tried::GaveUp { .. } | Tried::Stopped => self.release(delivery),
        }
    }

    /// Runs `op` until it succeeds, fails `limit` times, or shutdown begins during a backoff.
    async fn attempt<T, Fut>(
        &self,
        event_id: &str,
        failed: &str,
        mut op: impl FnMut() -> Fut,
        limit: u32,
    ) -> Tried<T>
    where
        Fut: Future<Output = Result<T, String>>,
    {
        let mut attempt = 1;
        loop {
            let reason = match op().await {
                Ok(value) => return Tried::Done(value, attempt),
                Err(reason) if attempt >= limit => {
                    return Tried::GaveUp {
                        attempts: attempt,
                        reason,
                    }
                }
                Err(reason) => reason,
            };
            let wait = self.policy.backoff(attempt);
            warn!(consumer = self.name, event_id, attempt, ?wait, %reason, "{failed}");
            let mut stopping = self.stopping.clone();
            if *stopping.borrow_and_update() {
                return Tried::Stopped;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => attempt += 1,
                _ = stopping.wait_for(|stop| *stop) => return Tried::Stopped,
            }
        }
    }

    fn release(&self, delivery: QueuedEvent) {
        info!(consumer = self.name, seq = delivery.seq, event_id = %delivery.envelope.id,
            "shutting down: event left pending, delivered again at next start");
        delivery.release();
    }
}
