//! The topic: fans each event out to the subscriptions whose filter policy names its type (like SNS
//! filter policies on the `event_type` attribute), and tells the relay when every one of them took it.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::debug;

use crate::domain::EventEnvelope;

/// What a relay learns about an event it handed to the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every matching subscription took the event (handled it, or dead-lettered it): mark it delivered.
    Delivered(u64),
    /// A subscription let go of it without taking it (shutdown, dead-letter store failure): it stays
    /// pending and is delivered again.
    Released(u64),
}

struct AckState {
    seq: u64,
    outcomes: mpsc::UnboundedSender<Outcome>,
    taken: std::sync::atomic::AtomicUsize,
    expected: usize,
}

impl Drop for AckState {
    fn drop(&mut self) {
        let taken = self.taken.load(std::sync::atomic::Ordering::Acquire);
        let outcome = if taken >= self.expected {
            Outcome::Delivered(self.seq)
        } else {
            Outcome::Released(self.seq)
        };
        // The relay may be gone (shutting down): then the event simply stays pending.
        let _ = self.outcomes.send(outcome);
    }
}

/// A subscription's handle on one delivery. [`Ack::take`] says it took the event; dropping it without
/// taking releases the event. The relay hears once, when every subscription's handle is gone.
pub struct Ack(Arc<AckState>);

impl Ack {
    pub fn take(self) {
        self.0
            .taken
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// One event delivered to one subscription.
pub struct QueuedEvent {
    pub seq: u64,
    pub envelope: Arc<EventEnvelope>,
    pub ack: Ack,
}

/// A named subscription: the event types it accepts and the queue of its worker.
pub struct Subscription {
    pub name: &'static str,
    pub event_types: &'static [&'static str],
    pub queue: mpsc::UnboundedSender<QueuedEvent>,
}

/// The local events topic.
#[derive(Default)]
pub struct Topic {
    subscriptions: Vec<Subscription>,
}

impl Topic {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&mut self, subscription: Subscription) {
        self.subscriptions.push(subscription);
    }

    /// The names of the subscriptions whose filter matches this event type.
    pub fn routes(&self, event_type: &str) -> Vec<&'static str> {
        self.matching(event_type).map(|s| s.name).collect()
    }

    fn matching<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a Subscription> + 'a {
        self.subscriptions
            .iter()
            .filter(move |s| s.event_types.contains(&event_type))
    }

    /// Hands the event to every matching subscription; `outcomes` hears once when they all took it (at
    /// once if none matches: like SNS, an event nobody subscribed to is dropped).
    pub fn publish(
        &self,
        seq: u64,
        envelope: EventEnvelope,
        outcomes: &mpsc::UnboundedSender<Outcome>,
    ) {
        let event_type = envelope.event.type_name();
        let matching: Vec<&Subscription> = self.matching(event_type).collect();
        let state = Arc::new(AckState {
            seq,
            outcomes: outcomes.clone(),
            taken: std::sync::atomic::AtomicUsize::new(0),
            expected: matching.len(),
        });
        if matching.is_empty() {
            debug!(seq, event_id = %envelope.id, event_type, "no subscription for this event type");
            return;
        }
        let envelope = Arc::new(envelope);
        for subscription in matching {
            let delivery = QueuedEvent {
                seq,
                envelope: Arc::clone(&envelope),
                ack: Ack(Arc::clone(&state)),
            };
            // A closed queue (its worker stopped) drops the delivery, which releases the event.
            let _ = subscription.queue.send(delivery);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;
    use crate::domain::{Allocated, AllocationRequired, OutOfStock};

    fn envelope(event: Event) -> EventEnvelope {
        EventEnvelope {
            id: "sku:1:0".into(),
            correlation_id: None,
            occurred_at: None,
            event,
        }
    }

    fn topic() -> (
        Topic,
        mpsc::UnboundedReceiver<QueuedEvent>,
        mpsc::UnboundedReceiver<QueuedEvent>,
    ) {
        let (queue, queue_rx) = mpsc::unbounded_channel();
        let (mailbox, mailbox_rx) = mpsc::unbounded_channel();
        let mut topic = Topic::new();
        topic.subscribe(Subscription {
            name: "reallocation-queue",
            event_types: &["AllocationRequired"],
            queue,
        });
        topic.subscribe(Subscription {
            name: "mailbox",
            event_types: &["OutOfStock"],
            queue: mailbox,
        });
        (topic, queue_rx, mailbox_rx)
    }

    #[test]
    fn routes_by_event_type_only_to_matching_subscriptions() {
        let (topic, mut queue, mut mailbox) = topic();
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        topic.publish(
            7,
            envelope(Event::OutOfStock(OutOfStock {
                sku: "LAMP".into(),
                orderid: None,
                qty: None,
            })),
            &tx,
        );
        assert!(queue.try_recv().is_err());
        let delivery = mailbox.try_recv().expect("mailbox gets OutOfStock");
        assert_eq!(delivery.seq, 7);
        assert!(
            outcomes.try_recv().is_err(),
            "not delivered before it is taken"
        );
        delivery.ack.take();
        assert_eq!(outcomes.try_recv(), Ok(Outcome::Delivered(7)));
    }

    #[test]
    fn an_event_nobody_subscribed_to_is_delivered_at_once() {
        let (topic, mut queue, mut mailbox) = topic();
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let allocated = Event::Allocated(Allocated {
            orderid: "o1".into(),
            sku: "LAMP".into(),
            qty: 1,
            batchref: "b1".into(),
        });
        topic.publish(3, envelope(allocated), &tx);
        assert!(queue.try_recv().is_err() && mailbox.try_recv().is_err());
        assert_eq!(outcomes.try_recv(), Ok(Outcome::Delivered(3)));
    }

    #[test]
    fn dropping_a_delivery_without_taking_it_releases_the_event() {
        let (topic, mut queue, _mailbox) = topic();
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let required = Event::AllocationRequired(AllocationRequired {
            orderid: "o1".into(),
            sku: "LAMP".into(),
            qty: 1,
        });
        topic.publish(9, envelope(required), &tx);
        drop(queue.try_recv().expect("queued"));
        assert_eq!(outcomes.try_recv(), Ok(Outcome::Released(9)));
        assert_eq!(
            topic.routes("AllocationRequired"),
            vec!["reallocation-queue"]
        );
    }

    #[test]
    fn a_stopped_subscriber_releases_the_event() {
        let (topic, queue, _mailbox) = topic();
        drop(queue);
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let required = Event::AllocationRequired(AllocationRequired {
            orderid: "o1".into(),
            sku: "LAMP".into(),
            qty: 1,
        });
        topic.publish(4, envelope(required), &tx);
        assert_eq!(outcomes.try_recv(), Ok(Outcome::Released(4)));
    }
}
