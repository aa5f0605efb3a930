//! The message bus (book ch. 9): handle a message, then the events its commits recorded, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::{debug, error, warn};

use super::{handlers, Delivery, EventWiring, Notifications, RetryPolicy, ServiceError};
use super::{UnitOfWork, UnitOfWorkFactory};
use crate::domain::{Allocate, ChangeBatchQuantity, Command, CreateBatch, Event, EventEnvelope};

/// A message the bus can handle in a unit of work, with its typed result.
pub trait Message: Send + Sync {
    type Output: Send;

    fn handle<U: UnitOfWork>(
        &self,
        uow: &mut U,
    ) -> impl std::future::Future<Output = Result<Self::Output, ServiceError>> + Send;
}

impl Message for CreateBatch {
    type Output = ();
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<(), ServiceError> {
        handlers::add_batch(self, uow).await
    }
}

impl Message for Allocate {
    /// The reference of the batch the line is allocated to.
    type Output = String;
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<String, ServiceError> {
        handlers::allocate(self, uow).await
    }
}

impl Message for ChangeBatchQuantity {
    type Output = ();
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<(), ServiceError> {
        handlers::change_batch_quantity(self, uow).await
    }
}

/// The result of any [`Command`] (for callers holding the type-tagged enum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandResult {
    BatchCreated,
    Allocated { batchref: String },
    BatchQuantityChanged,
}

/// Counters of the bus's work, for tests and logs.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Attempts repeated after a version conflict.
    pub conflict_retries: AtomicU64,
    /// In-process event handlers that failed (logged, not propagated).
    pub failed_event_handlers: AtomicU64,
}

/// Dispatches commands and events to their handlers, each in a fresh unit of work.
pub struct MessageBus<F: UnitOfWorkFactory> {
    uows: F,
    wiring: EventWiring,
    notifications: Arc<dyn Notifications>,
    retry: RetryPolicy,
    stats: BusStats,
}

impl<F: UnitOfWorkFactory> MessageBus<F> {
    pub fn new(
        uows: F,
        wiring: EventWiring,
        notifications: Arc<dyn Notifications>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            uows,
            wiring,
            notifications,
            retry,
            stats: BusStats::default(),
        }
    }

    pub fn uows(&self) -> &F {
        &self.uows
    }

    pub fn stats(&self) -> &BusStats {
        &self.stats
    }

    /// Handles a command, retrying version conflicts, then the events it raised. A command's failure is
    /// returned (after the events it committed, if any, are handled); event handler failures are logged.
    pub async fn handle<C: Message>(
        &self,
        command: &C,
        correlation_id: Option<&str>,
    ) -> Result<C::Output, ServiceError> {
        let (result, events) = self.with_retries(command, correlation_id).await;
        self.handle_events(events, correlation_id).await;
        result
    }

    /// Handles a command given as the type-tagged enum.
    pub async fn handle_command(
        &self,
        command: &Command,
        correlation_id: Option<&str>,
    ) -> Result<CommandResult, ServiceError> {
        match command {
            Command::CreateBatch(cmd) => self
                .handle(cmd, correlation_id)
                .await
                .map(|()| CommandResult::BatchCreated),
            Command::Allocate(cmd) => self
                .handle(cmd, correlation_id)
                .await
                .map(|batchref| CommandResult::Allocated { batchref }),
            Command::ChangeBatchQuantity(cmd) => self
                .handle(cmd, correlation_id)
                .await
                .map(|()| CommandResult::BatchQuantityChanged),
        }
    }

    /// Handles an event delivered from outside (a queue): its handler's failure is returned so the
    /// delivery can be retried; the events it raises in turn are handled as usual.
    pub async fn handle_delivered_event(
        &self,
        envelope: &EventEnvelope,
    ) -> Result<(), ServiceError> {
        let correlation_id = envelope.correlation_id.as_deref();
        let (result, events) = self
            .with_retries(&self.event_handler(envelope), correlation_id)
            .await;
        self.handle_events(events, correlation_id).await;
        result
    }

    fn event_handler<'a>(&'a self, envelope: &'a EventEnvelope) -> HandleEvent<'a> {
        HandleEvent {
            envelope,
            notifications: &*self.notifications,
        }
    }

    /// Runs the in-process handlers of these events and of the events they raise, breadth first.
    async fn handle_events(&self, events: Vec<EventEnvelope>, correlation_id: Option<&str>) {
        let mut queue: VecDeque<EventEnvelope> = events.into();
        while let Some(envelope) = queue.pop_front() {
            if self.wiring.delivery(&envelope.event) == Delivery::Outbox {
                continue;
            }
            debug!(event_id = %envelope.id, event_type = envelope.event.type_name(), "handling event");
            let (result, more) = self
                .with_retries(&self.event_handler(&envelope), correlation_id)
                .await;
            if let Err(error) = result {
                self.stats
                    .failed_event_handlers
                    .fetch_add(1, Ordering::Relaxed);
                error!(event_id = %envelope.id, event_type = envelope.event.type_name(), %error,
                    "event handler failed");
            }
            queue.extend(more);
        }
    }

    /// Runs `message` in a fresh unit of work, again with a new one after each version conflict
    /// (bounded, jittered backoff). Returns the outcome and the events committed by the last attempt.
    async fn with_retries<M: Message>(
        &self,
        message: &M,
        correlation_id: Option<&str>,
    ) -> (Result<M::Output, ServiceError>, Vec<EventEnvelope>) {
        let mut attempt = 1;
        loop {
            let mut uow = self.uows.begin(correlation_id);
            let result = message.handle(&mut uow).await;
            match result {
                Err(error) if error.is_version_conflict() && attempt < self.retry.max_attempts => {
                    self.stats.conflict_retries.fetch_add(1, Ordering::Relaxed);
                    let wait = self.retry.backoff(attempt);
                    warn!(attempt, ?wait, %error, "version conflict, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return (result, uow.collect_new_events()),
            }
        }
    }
}

/// An event handled by its in-process handler (as a message, so it gets the same retries).
struct HandleEvent<'a> {
    envelope: &'a EventEnvelope,
    notifications: &'a dyn Notifications,
}

impl Message for HandleEvent<'_> {
    type Output = ();
    async fn handle<U: UnitOfWork>(&self, uow: &mut U) -> Result<(), ServiceError> {
        match &self.envelope.event {
            Event::AllocationRequired { .. } => {
                handlers::reallocate(&self.envelope.event, uow).await
            }
            Event::OutOfStock { .. } => {
                handlers::send_out_of_stock_notification(&self.envelope.event, self.notifications)
                    .await
            }
            // Published for other systems; nothing in this service reacts to it.
            Event::Allocated { .. } => Ok(()),
        }
    }
}
