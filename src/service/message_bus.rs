//! The message bus (book ch. 9): handle a message, then the events its commits recorded, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::handlers::{self, QueuedAllocation};
use super::messages::{AllocateTogether, ChangeBatchQuantityOf, HandleEvent, Message};
use super::product_queue::{Exclusive, ProductQueues};
use super::{Delivery, Notifications, RetryPolicy, ServiceError};
use super::{UnitOfWork, UnitOfWorkFactory};
use crate::domain::{Allocate, ChangeBatchQuantity, CreateBatch, EventEnvelope};

/// The most allocations one group holds when the store does not limit commits (bounds a group's
/// latency and its commit).
const MAX_GROUP: usize = 256;

/// Counters of the bus's work: the functions' metrics (`lambda::metrics`), logs and tests.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Attempts repeated after a version conflict or throttling.
    pub conflict_retries: AtomicU64,
    /// In-process event handlers that failed (logged, not propagated).
    pub failed_event_handlers: AtomicU64,
    /// Groups of allocations applied together (one unit of work, one commit each).
    pub allocation_groups: AtomicU64,
    /// Allocations applied in those groups.
    pub grouped_allocations: AtomicU64,
    /// Allocations answered with a batch (new or already allocated lines).
    pub allocations: AtomicU64,
    /// Allocations answered out of stock.
    pub out_of_stock: AtomicU64,
}

struct Inner<F: UnitOfWorkFactory> {
    uows: F,
    notifications: Arc<dyn Notifications>,
    retry: RetryPolicy,
    stats: BusStats,
    queues: ProductQueues,
}

/// Dispatches commands and events to their handlers, each in a fresh unit of work. Cheap to clone
/// (clones share everything).
pub struct MessageBus<F: UnitOfWorkFactory> {
    inner: Arc<Inner<F>>,
}

impl<F: UnitOfWorkFactory> Clone for MessageBus<F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F: UnitOfWorkFactory> MessageBus<F> {
    /// A bus over these units of work, handling in process the events their wiring keeps in process
    /// (build one with `service::Bootstrap`).
    pub(crate) fn new(uows: F, notifications: Arc<dyn Notifications>, retry: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                uows,
                notifications,
                retry,
                stats: BusStats::default(),
                queues: ProductQueues::default(),
            }),
        }
    }

    pub fn uows(&self) -> &F {
        &self.inner.uows
    }

    pub fn stats(&self) -> &BusStats {
        &self.inner.stats
    }

    /// How the bus retries version conflicts and throttling (and for how long at most).
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    pub(crate) fn queues(&self) -> &ProductQueues {
        &self.inner.queues
    }

    /// Handles a command, retrying version conflicts, then the events it raised. A command's failure is
    /// returned (after the events it committed, if any, are handled); event handler failures are logged.
    pub async fn handle<C: Message>(
        &self,
        command: &C,
        correlation_id: Option<&str>,
    ) -> Result<C::Output, ServiceError> {
        let (result, events) = self.with_retries(command, correlation_id).await;
        self.handle_events(events).await;
        result
    }

    /// Allocates through the product's queue: allocations of the same SKU that arrive while one group
    /// is being applied wait, then are applied together (one load, one commit), so they never race
    /// each other in this process. Answers like `handle(&Allocate)`.
    pub async fn allocate(
        &self,
        cmd: &Allocate,
        correlation_id: Option<&str>,
    ) -> Result<String, ServiceError> {
        self.enqueue_allocation(cmd, correlation_id, false).await
    }

    /// Queues an allocation (`reallocation`: of a line that must be allocated again, kept waiting
    /// when no batch can take it).
    async fn enqueue_allocation(
        &self,
        cmd: &Allocate,
        correlation_id: Option<&str>,
        reallocation: bool,
    ) -> Result<String, ServiceError> {
        let allocation = QueuedAllocation {
            cmd: cmd.clone(),
            correlation_id: correlation_id.map(str::to_owned),
            reallocation,
        };
        self.queues().allocate(self, allocation).await
    }

    /// Creates a batch through its product's queue (alone, after the commands waiting there).
    pub async fn add_batch(
        &self,
        cmd: &CreateBatch,
        correlation_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        self.handle_queued(cmd.sku.to_string(), cmd.clone(), correlation_id)
            .await
    }

    /// Changes a batch's quantity through its product's queue (alone, after the commands waiting
    /// there). An unknown batch answers as `handle` does.
    pub async fn change_batch_quantity(
        &self,
        cmd: &ChangeBatchQuantity,
        correlation_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let sku = self
            .inner
            .uows
            .begin(None)
            .sku_of_batch(&cmd.reference)
            .await?;
        match sku {
            Some(sku) => {
                let message = ChangeBatchQuantityOf {
                    sku: sku.clone(),
                    cmd: cmd.clone(),
                };
                self.handle_queued(sku, message, correlation_id).await
            }
            None => self.handle(cmd, correlation_id).await,
        }
    }

    /// Runs a command alone in the queue of product `sku`, like `handle`.
    async fn handle_queued<C>(
        &self,
        sku: String,
        cmd: C,
        correlation_id: Option<&str>,
    ) -> Result<C::Output, ServiceError>
    where
        C: Message + 'static,
        C::Output: 'static,
    {
        let (answer, answered) = oneshot::channel();
        let bus = self.clone();
        let correlation_id = correlation_id.map(str::to_owned);
        let run: Exclusive = Box::new(move || {
            Box::pin(async move {
                let result = bus.handle(&cmd, correlation_id.as_deref()).await;
                // The caller may have stopped waiting; the command stands all the same.
                let _ = answer.send(result);
            })
        });
        self.queues().exclusive(self, sku, run, answered).await
    }

    /// Applies allocations of one SKU together, retrying version conflicts, then handles the events
    /// they raised. One answer per allocation, in order.
    pub async fn allocate_together(
        &self,
        sku: &str,
        allocations: &[QueuedAllocation],
    ) -> Vec<Result<String, ServiceError>> {
        let stats = &self.inner.stats;
        stats.allocation_groups.fetch_add(1, Ordering::Relaxed);
        stats
            .grouped_allocations
            .fetch_add(allocations.len() as u64, Ordering::Relaxed);
        let message = AllocateTogether { sku, allocations };
        let (result, events) = self.with_retries(&message, None).await;
        self.handle_events(events).await;
        let answers = match result {
            Ok(answers) => answers,
            Err(error) => allocations.iter().map(|_| Err(error.clone())).collect(),
        };
        for answer in &answers {
            match answer {
                Ok(_) => stats.allocations.fetch_add(1, Ordering::Relaxed),
                Err(ServiceError::OutOfStock(_)) => {
                    stats.out_of_stock.fetch_add(1, Ordering::Relaxed)
                }
                Err(_) => 0,
            };
        }
        answers
    }

    /// The most allocations one group may hold. Each moves one line and may change one batch, so
    /// half of what the store allows in one commit (see `Store::max_lines_per_commit`).
    pub(crate) fn max_group(&self) -> usize {
        self.inner
            .uows
            .max_lines_per_commit()
            .map_or(MAX_GROUP, |lines| lines / 2)
            .clamp(1, MAX_GROUP)
    }

    /// Handles an event delivered from outside (a queue): its handler's failure is returned so the
    /// delivery can be retried; the events it raises in turn are handled as usual. A reallocation
    /// goes through its product's queue, like any allocation.
    pub async fn handle_delivered_event(
        &self,
        envelope: &EventEnvelope,
    ) -> Result<(), ServiceError> {
        let correlation_id = envelope.correlation_id.as_deref();
        if let Some(cmd) = handlers::reallocation(&envelope.event) {
            return match self.enqueue_allocation(&cmd?, correlation_id, true).await {
                Ok(_) | Err(ServiceError::OutOfStock(_)) => Ok(()),
                Err(error) => Err(error),
            };
        }
        let (result, events) = self
            .with_retries(&self.event_handler(envelope), correlation_id)
            .await;
        self.handle_events(events).await;
        result
    }

    fn event_handler<'a>(&'a self, envelope: &'a EventEnvelope) -> HandleEvent<'a> {
        HandleEvent {
            envelope,
            notifications: &*self.inner.notifications,
        }
    }

    /// Runs the in-process handlers of these events and of the events they raise, breadth first.
    async fn handle_events(&self, events: Vec<EventEnvelope>) {
        let mut queue: VecDeque<EventEnvelope> = events.into();
        while let Some(envelope) = queue.pop_front() {
            if self.inner.uows.wiring().delivery(&envelope.event) == Delivery::Outbox {
                continue;
            }
            debug!(event_id = %envelope.id, event_type = envelope.event.type_name(), "handling event");
            let (result, more) = self
                .with_retries(
                    &self.event_handler(&envelope),
                    envelope.correlation_id.as_deref(),
                )
                .await;
            if let Err(error) = result {
                self.inner
                    .stats
                    .failed_event_handlers
                    .fetch_add(1, Ordering::Relaxed);
                error!(event_id = %envelope.id, event_type = envelope.event.type_name(), %error,
                    "event handler failed");
            }
            queue.extend(more);
        }
    }

    /// Runs `message` in a fresh unit of work, again with a new one after each version conflict or
    /// throttling (jittered backoff, bounded in attempts and in time: `RetryPolicy::budget`). Returns
    /// the outcome and the events committed by every attempt: an attempt may commit some steps (a
    /// chunked quantity change) before a later step conflicts.
    async fn with_retries<M: Message>(
        &self,
        message: &M,
        correlation_id: Option<&str>,
    ) -> (Result<M::Output, ServiceError>, Vec<EventEnvelope>) {
        let retry = &self.inner.retry;
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut committed = Vec::new();
        let mut attempt = 1;
        loop {
            let attempt_started = Instant::now();
            let mut uow = self.inner.uows.begin(correlation_id);
            let result = message.handle(&mut uow).await;
            committed.extend(uow.collect_new_events());
            slowest = slowest.max(attempt_started.elapsed());
            match result {
                Err(error) if error.is_retryable() && attempt < retry.max_attempts => {
                    let wait = retry.backoff(attempt);
                    if !retry.fits(started.elapsed(), wait, slowest) {
                        warn!(attempt, spent = ?started.elapsed(), %error,
                            "giving up: another attempt would not end within the time budget");
                        return (Err(error), committed);
                    }
                    self.inner
                        .stats
                        .conflict_retries
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(attempt, ?wait, %error, "retrying on fresh state");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return (result, committed),
            }
        }
    }
}
