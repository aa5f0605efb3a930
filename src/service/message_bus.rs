//! The message bus (book ch. 9): handle a message, then the events its commits recorded, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::handlers::QueuedAllocation;
use super::handlers::{AllocateGroup, HandleEvent, Handler};
use super::messages::Message;
use super::product_queue::{ProductQueues, RunAlone};
use super::UnitOfWork;
use super::{Delivery, EventWiring, Notifications, ProductRepository, RetryPolicy, ServiceError};
use crate::domain::EventEnvelope;

/// The most allocations one group holds (bounds a group's latency and its commit); fewer where the
/// store limits the size of a commit (`MessageBus::max_group`).
const MAX_ALLOCATIONS_PER_GROUP: usize = 256;

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

struct Inner<R: ProductRepository> {
    products: Arc<R>,
    wiring: EventWiring,
    notifications: Arc<dyn Notifications>,
    retry: RetryPolicy,
    stats: BusStats,
    queues: ProductQueues,
}

/// Dispatches commands and events to their handlers, each in a fresh unit of work. Cheap to clone
/// (clones share everything).
pub struct MessageBus<R: ProductRepository> {
    inner: Arc<Inner<R>>,
}

/// A bus that does not keep it alive (a product queue's drain task holds one).
pub(crate) struct WeakBus<R: ProductRepository> {
    inner: std::sync::Weak<Inner<R>>,
}

impl<R: ProductRepository> Clone for WeakBus<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<R: ProductRepository> WeakBus<R> {
    pub(crate) fn upgrade(&self) -> Option<MessageBus<R>> {
        self.inner.upgrade().map(|inner| MessageBus { inner })
    }
}

impl<R: ProductRepository> Clone for MessageBus<R> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<R: ProductRepository> MessageBus<R> {
    /// A bus over these products, handling in process the events the wiring keeps in process and
    /// writing the others to the outbox (build one with `service::Bootstrap`).
    pub(crate) fn new(
        products: Arc<R>,
        wiring: EventWiring,
        notifications: Arc<dyn Notifications>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                products,
                wiring,
                notifications,
                retry,
                stats: BusStats::default(),
                queues: ProductQueues::default(),
            }),
        }
    }

    pub(crate) fn downgrade(&self) -> WeakBus<R> {
        WeakBus {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// A fresh unit of work over the bus's products, as each handler gets (the book's tests read
    /// state through one).
    pub fn unit_of_work(&self, correlation_id: Option<&str>) -> UnitOfWork<R> {
        UnitOfWork::new(
            Arc::clone(&self.inner.products),
            self.inner.wiring,
            correlation_id,
        )
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

    /// Handles a message: the bus's one entry. A command on a product takes its turn in the product's
    /// queue (allocations there are applied in groups: `service::product_queue`), runs in a fresh unit
    /// of work, again after each version conflict, then the events it raised are handled in process
    /// or left in the outbox (the wiring decides). An event delivered from a queue runs its handler
    /// the same way (see `messages`). A message's failure is returned after the events it committed,
    /// if any, are handled; the failures of in-process event handlers are logged.
    pub async fn handle<M: Message>(
        &self,
        message: &M,
        correlation_id: Option<&str>,
    ) -> Result<M::Output, ServiceError> {
        message.dispatch(self, correlation_id).await
    }

    /// Runs a handler now (no queue), retrying version conflicts, then the events it raised.
    pub(super) async fn run<H: Handler>(
        &self,
        handler: &H,
        correlation_id: Option<&str>,
    ) -> Result<H::Output, ServiceError> {
        let (result, events) = self.with_retries(handler, correlation_id).await;
        self.handle_events(events).await;
        result
    }

    /// Runs a handler alone in the queue of product `sku`, after the commands waiting there.
    pub(super) async fn run_in_turn<H>(
        &self,
        sku: String,
        handler: H,
        correlation_id: Option<&str>,
    ) -> Result<H::Output, ServiceError>
    where
        H: Handler + 'static,
        H::Output: 'static,
    {
        let (answer, answered) = oneshot::channel();
        let bus = self.clone();
        let correlation_id = correlation_id.map(str::to_owned);
        let run: RunAlone = Box::new(move || {
            Box::pin(async move {
                let result = bus.run(&handler, correlation_id.as_deref()).await;
                // Released before the answer: see `product_queue::drain`.
                drop(bus);
                // The caller may have stopped waiting; the command stands all the same.
                let _ = answer.send(result);
            })
        });
        self.queues().run_alone(self, sku, run, answered).await
    }

    /// The SKU of the product holding batch `reference`, if any.
    pub(super) async fn sku_of_batch(
        &self,
        reference: &str,
    ) -> Result<Option<String>, ServiceError> {
        Ok(self.inner.products.sku_of_batch(reference).await?)
    }

    /// Applies allocations of one SKU together (the product's queue calls it with each group),
    /// retrying version conflicts, then handles the events they raised. One answer per allocation,
    /// in order.
    pub(super) async fn allocate_group(
        &self,
        sku: &str,
        allocations: &[QueuedAllocation],
    ) -> Vec<Result<String, ServiceError>> {
        let stats = &self.inner.stats;
        stats.allocation_groups.fetch_add(1, Ordering::Relaxed);
        stats
            .grouped_allocations
            .fetch_add(allocations.len() as u64, Ordering::Relaxed);
        let group = AllocateGroup { sku, allocations };
        let answers = match self.run(&group, None).await {
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
    /// half of what the store allows in one commit (see `ProductRepository::max_lines_per_commit`).
    pub(crate) fn max_group(&self) -> usize {
        self.inner
            .products
            .max_lines_per_commit()
            .map_or(MAX_ALLOCATIONS_PER_GROUP, |lines| lines / 2)
            .clamp(1, MAX_ALLOCATIONS_PER_GROUP)
    }

    pub(super) fn event_handler<'a>(&'a self, envelope: &'a EventEnvelope) -> HandleEvent<'a> {
        HandleEvent {
            envelope,
            notifications: &*self.inner.notifications,
        }
    }

    /// Runs the in-process handlers of these events and of the events they raise, breadth first.
    async fn handle_events(&self, events: Vec<EventEnvelope>) {
        let mut queue: VecDeque<EventEnvelope> = events.into();
        while let Some(envelope) = queue.pop_front() {
            if self.inner.wiring.delivery(&envelope.event) == Delivery::Outbox {
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

    /// Runs `handler` in a fresh unit of work, again with a new one after each version conflict or
    /// throttling (jittered backoff, bounded in attempts and in time: `RetryPolicy::budget`). Returns
    /// the outcome and the events committed by every attempt: an attempt may commit some steps (a
    /// chunked quantity change) before a later step conflicts.
    async fn with_retries<H: Handler>(
        &self,
        handler: &H,
        correlation_id: Option<&str>,
    ) -> (Result<H::Output, ServiceError>, Vec<EventEnvelope>) {
        let retry = &self.inner.retry;
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut committed = Vec::new();
        let mut attempt = 1;
        loop {
            let attempt_started = Instant::now();
            let mut uow = self.unit_of_work(correlation_id);
            let result = handler.handle(&mut uow).await;
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
