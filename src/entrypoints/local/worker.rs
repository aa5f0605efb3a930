//! A subscription's worker (the local stand-in for an SQS queue and its Lambda trigger): takes each
//! delivery, runs its consumer, retries failures with exponential backoff, and after `max_attempts`
//! failures moves the event to the dead-letter store. Only then is the delivery taken.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::topic::QueuedEvent;
use crate::domain::EventEnvelope;
use crate::service::OutboxFeed;

/// What a subscription does with an event. Must be idempotent: delivery is at least once.
pub trait Consumer: Send + Sync + 'static {
    fn consume(&self, envelope: &EventEnvelope) -> impl Future<Output = Result<(), String>> + Send;
}

/// Retries of a failing delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts before the event goes to the dead-letter store (SQS `maxReceiveCount`).
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
    /// The wait after failed attempt number `attempt` (1-based): `base_delay * 2^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }
}

/// Runs one subscription's deliveries, up to `concurrency` at a time (1 keeps them in order).
pub struct Worker<C, F> {
    pub subscription: &'static str,
    pub consumer: Arc<C>,
    pub feed: Arc<F>,
    pub policy: DeliveryPolicy,
    pub concurrency: usize,
    /// Becomes `true` at shutdown: no more waiting to retry (the event stays pending instead).
    pub stopping: watch::Receiver<bool>,
}

impl<F> Worker<(), F> {
    /// The same worker with its consumer.
    pub fn with_consumer<C>(self, consumer: C) -> Worker<C, F> {
        Worker {
            subscription: self.subscription,
            consumer: Arc::new(consumer),
            feed: self.feed,
            policy: self.policy,
            concurrency: self.concurrency,
            stopping: self.stopping,
        }
    }
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
            // Reap finished tasks so the set does not grow with the queue's history.
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }

    async fn deliver(&self, delivery: QueuedEvent) {
        let QueuedEvent { seq, envelope, ack } = delivery;
        let event_type = envelope.event.type_name();
        let correlation_id = envelope.correlation_id.as_deref().unwrap_or("-");
        let mut attempt = 1;
        let reason = loop {
            match self.consumer.consume(&envelope).await {
                Ok(()) => {
                    info!(subscription = self.subscription, seq, event_id = %envelope.id, event_type,
                        correlation_id, attempt, "event delivered");
                    ack.take();
                    return;
                }
                Err(reason) if attempt >= self.policy.max_attempts => break reason,
                Err(reason) => {
                    let wait = self.policy.backoff(attempt);
                    warn!(subscription = self.subscription, seq, event_id = %envelope.id, event_type,
                        correlation_id, attempt, ?wait, %reason, "delivery failed, will retry");
                    if !self.sleep_unless_stopping(wait).await {
                        info!(subscription = self.subscription, seq, event_id = %envelope.id,
                            "shutting down: event left pending, delivered again at next start");
                        return; // dropping `ack` releases the event
                    }
                    attempt += 1;
                }
            }
        };
        let reason = format!("{}: {reason}", self.subscription);
        // The event is not delivered again while its dead letter cannot be written (a full disk):
        // only the write is retried, with backoff, until it succeeds or the server stops (the event
        // then stays pending and is delivered again at the next start).
        let mut write = 1;
        loop {
            match self.feed.add_dead_letter(&envelope, &reason, attempt).await {
                Ok(id) => {
                    error!(subscription = self.subscription, seq, event_id = %envelope.id, event_type,
                        correlation_id, attempts = attempt, dead_letter_id = id, %reason,
                        "event moved to the dead-letter store");
                    ack.take();
                    return;
                }
                Err(store_error) => {
                    let wait = self.policy.backoff(write);
                    error!(subscription = self.subscription, seq, event_id = %envelope.id, %reason,
                        %store_error, ?wait, "cannot store the dead letter; retrying the write");
                    if !self.sleep_unless_stopping(wait).await {
                        info!(subscription = self.subscription, seq, event_id = %envelope.id,
                            "shutting down: event left pending, delivered again at next start");
                        return;
                    }
                    write += 1;
                }
            }
        }
    }

    /// Sleeps `wait`; `false` if shutdown began first.
    async fn sleep_unless_stopping(&self, wait: Duration) -> bool {
        let mut stopping = self.stopping.clone();
        if *stopping.borrow_and_update() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::domain::AllocationRequired;
    use crate::domain::Event;
    use crate::entrypoints::local::topic::{Outcome, Subscription, Topic};
    use crate::entrypoints::local::MemoryFeedStore;

    /// Fails the first `failures` attempts of every event.
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
    }

    impl Consumer for Flaky {
        async fn consume(&self, _: &EventEnvelope) -> Result<(), String> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if call <= self.failures {
                Err(format!("failure {call}"))
            } else {
                Ok(())
            }
        }
    }

    fn envelope() -> EventEnvelope {
        EventEnvelope {
            id: "LAMP:2:0".into(),
            correlation_id: Some("req-1".into()),
            occurred_at: None,
            event: Event::AllocationRequired(AllocationRequired {
                orderid: "o1".into(),
                sku: "LAMP".into(),
                qty: 1,
            }),
        }
    }

    /// A feed whose first `failures` dead-letter writes fail (a full disk).
    struct DeadLettersFailing {
        inner: MemoryFeedStore,
        failures: u32,
        writes: AtomicU32,
    }

    impl OutboxFeed for DeadLettersFailing {
        async fn pending_outbox(
            &self,
            limit: usize,
        ) -> Result<Vec<(u64, EventEnvelope)>, crate::service::StoreError> {
            self.inner.pending_outbox(limit).await
        }

        async fn mark_delivered(&self, seqs: &[u64]) -> Result<u64, crate::service::StoreError> {
            self.inner.mark_delivered(seqs).await
        }

        async fn add_dead_letter(
            &self,
            envelope: &EventEnvelope,
            reason: &str,
            attempts: u32,
        ) -> Result<u64, crate::service::StoreError> {
            let write = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
            if write <= self.failures {
                return Err(crate::service::StoreError::Unavailable(
                    "No space left on device".into(),
                ));
            }
            self.inner.add_dead_letter(envelope, reason, attempts).await
        }

        async fn dead_letters(
            &self,
        ) -> Result<Vec<crate::service::DeadLetter>, crate::service::StoreError> {
            self.inner.dead_letters().await
        }

        fn subscribe_commits(&self) -> watch::Receiver<u64> {
            self.inner.subscribe_commits()
        }
    }

    struct Setup<F = MemoryFeedStore> {
        topic: Topic,
        outcomes: mpsc::UnboundedReceiver<Outcome>,
        outcomes_tx: mpsc::UnboundedSender<Outcome>,
        feed: Arc<F>,
        consumer: Arc<Flaky>,
        stop: watch::Sender<bool>,
        worker: tokio::task::JoinHandle<()>,
    }

    fn setup(failures: u32, max_attempts: u32) -> Setup {
        setup_with(MemoryFeedStore::new(), failures, max_attempts)
    }

    fn setup_with<F: OutboxFeed>(feed: F, failures: u32, max_attempts: u32) -> Setup<F> {
        let feed = Arc::new(feed);
        let consumer = Arc::new(Flaky {
            failures,
            calls: AtomicU32::new(0),
        });
        let (stop, stopping) = watch::channel(false);
        let (queue, queue_rx) = mpsc::unbounded_channel();
        let worker = Worker {
            subscription: "reallocation-queue",
            consumer: Arc::clone(&consumer),
            feed: Arc::clone(&feed),
            policy: DeliveryPolicy {
                max_attempts,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(4),
            },
            concurrency: 2,
            stopping,
        };
        let mut topic = Topic::new();
        topic.subscribe(Subscription {
            name: "reallocation-queue",
            event_types: &["AllocationRequired"],
            queue,
        });
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        Setup {
            topic,
            outcomes,
            outcomes_tx,
            feed,
            consumer,
            stop,
            worker: tokio::spawn(worker.run(queue_rx)),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = DeliveryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let waits: Vec<u128> = (1..=5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
    }

    #[tokio::test]
    async fn a_delivery_that_fails_then_succeeds_is_delivered_once_taken() {
        let mut s = setup(3, 5);
        s.topic.publish(1, envelope(), &s.outcomes_tx);
        assert_eq!(s.outcomes.recv().await, Some(Outcome::Delivered(1)));
        assert_eq!(s.consumer.calls.load(Ordering::SeqCst), 4);
        assert!(s.feed.dead_letters().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_delivery_failing_max_attempts_times_goes_to_the_dead_letters() {
        let mut s = setup(u32::MAX, 5);
        s.topic.publish(1, envelope(), &s.outcomes_tx);
        assert_eq!(s.outcomes.recv().await, Some(Outcome::Delivered(1)));
        assert_eq!(s.consumer.calls.load(Ordering::SeqCst), 5);
        let letters = s.feed.dead_letters().await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].envelope, envelope());
        assert_eq!(letters[0].attempts, 5);
        assert_eq!(letters[0].reason, "reallocation-queue: failure 5");
    }

    #[tokio::test]
    async fn an_event_whose_dead_letter_cannot_be_written_is_not_delivered_again() {
        let feed = DeadLettersFailing {
            inner: MemoryFeedStore::new(),
            failures: 3,
            writes: AtomicU32::new(0),
        };
        let mut s = setup_with(feed, u32::MAX, 5);
        s.topic.publish(1, envelope(), &s.outcomes_tx);
        assert_eq!(s.outcomes.recv().await, Some(Outcome::Delivered(1)));
        assert_eq!(
            s.consumer.calls.load(Ordering::SeqCst),
            5,
            "delivered max_attempts times, not once more per failed dead-letter write"
        );
        assert_eq!(
            s.feed.writes.load(Ordering::SeqCst),
            4,
            "3 failed writes, then 1"
        );
        assert_eq!(s.feed.dead_letters().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn shutdown_during_backoff_releases_the_event() {
        let mut s = setup(u32::MAX, 5);
        s.stop.send_replace(true);
        s.topic.publish(1, envelope(), &s.outcomes_tx);
        assert_eq!(s.outcomes.recv().await, Some(Outcome::Released(1)));
        assert_eq!(s.consumer.calls.load(Ordering::SeqCst), 1);
        assert!(s.feed.dead_letters().await.unwrap().is_empty());
        drop(s.topic);
        s.worker.await.unwrap();
    }
}
