//! Where each event goes in local mode, and how its consumer answers. Every event type has one
//! consumer's queue (the cloud's SNS subscriptions filter on `event_type` the same way); the route is a
//! `match`, so a new event type does not compile until it is given one. A consumer answers each
//! delivery explicitly: taken (handled, or kept as a dead letter) or released (it stays pending).

use tokio::sync::mpsc;

use crate::domain::{Event, EventEnvelope};

/// The consumers' names: the prefix of their dead letters' reasons, and a field of their log lines.
pub const REALLOCATION_QUEUE: &str = "reallocation-queue";
pub const MAILBOX: &str = "mailbox";
pub const EVENT_LOG: &str = "event-log";

/// A consumer's answer about one delivery, for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Handled, or kept as a dead letter: the event is marked delivered.
    Taken(u64),
    /// Let go (shutdown): the event stays pending and is delivered again.
    Released(u64),
}

/// One pending event handed to one consumer. Answer it with [`QueuedEvent::take`] or
/// [`QueuedEvent::release`]; one dropped unanswered (a closed queue, a failed task) is released.
pub struct QueuedEvent {
    pub seq: u64,
    pub envelope: EventEnvelope,
    acks: Option<mpsc::UnboundedSender<Ack>>,
}

impl QueuedEvent {
    pub fn new(seq: u64, envelope: EventEnvelope, acks: mpsc::UnboundedSender<Ack>) -> Self {
        Self {
            seq,
            envelope,
            acks: Some(acks),
        }
    }

    pub fn take(mut self) {
        self.answer(Ack::Taken(self.seq));
    }

    pub fn release(mut self) {
        self.answer(Ack::Released(self.seq));
    }

    fn answer(&mut self, ack: Ack) {
        if let Some(acks) = self.acks.take() {
            // The relay may be gone (shutting down): the event then simply stays pending.
            let _ = acks.send(ack);
        }
    }
}

impl Drop for QueuedEvent {
    fn drop(&mut self) {
        self.answer(Ack::Released(self.seq));
    }
}

/// A consumer's queue.
pub type Queue = mpsc::UnboundedSender<QueuedEvent>;

/// The consumers' queues, one per event type.
pub struct Routes {
    pub reallocations: Queue,
    pub emails: Queue,
    pub event_log: Queue,
}

impl Routes {
    /// The consumer that takes this event, and its queue.
    pub fn route(&self, event: &Event) -> (&'static str, &Queue) {
        match event {
            Event::AllocationRequired(_) => (REALLOCATION_QUEUE, &self.reallocations),
            Event::OutOfStock(_) => (MAILBOX, &self.emails),
            Event::Allocated(_) => (EVENT_LOG, &self.event_log),
        }
    }

    /// Queues the delivery for its consumer (a closed queue drops it, which releases the event).
    pub fn send(&self, delivery: QueuedEvent) {
        let (_, queue) = self.route(&delivery.envelope.event);
        let _ = queue.send(delivery);
    }
}
