//! The publishing ports: where committed outbox events are published (the events topic), and the
//! outbox's publication record (which events are published, which still pending). The stream relay
//! and the republisher (`entrypoints::lambda`) use them; SNS and the DynamoDB table implement them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use futures_util::future::join_all;

use super::StoreError;
use crate::domain::EventEnvelope;

/// An event could not be published; `detail` keeps the whole error chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("publishing event {event_id} failed: {detail}")]
pub struct PublishError {
    pub event_id: String,
    pub detail: String,
}

/// The most events one publish call takes (SNS `PublishBatch`).
pub const MAX_PUBLISH_BATCH: usize = 10;

/// Where outbox events go.
pub trait EventPublisher: Send + Sync {
    /// Publishes these events (at most [`MAX_PUBLISH_BATCH`]) in one call: one answer per event, in
    /// order, the message id or why that event failed (the others may still have been published).
    fn publish_batch(
        &self,
        envelopes: &[&EventEnvelope],
    ) -> impl Future<Output = Vec<Result<String, PublishError>>> + Send;
}

/// What became of one event given to [`publish_in_order`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// Published: the message id.
    Published(String),
    Failed(PublishError),
    /// Not tried: an earlier event of its SKU was not published, or time ran out.
    NotTried,
}

/// Publishes events keeping each SKU's order: an event goes only after every earlier event of its
/// SKU (in the order given) was published, and a SKU whose event failed publishes nothing more.
/// Each round takes the next event of up to `MAX_PUBLISH_BATCH * parallel_calls` SKUs (in turn) and
/// sends them in that many concurrent calls; rounds go on while `keep_going()` says so. Answers one
/// [`Publication`] per event, in the order given, and the number of calls made.
pub async fn publish_in_order<P: EventPublisher>(
    publisher: &P,
    envelopes: &[&EventEnvelope],
    parallel_calls: usize,
    keep_going: impl Fn() -> bool,
) -> (Vec<Publication>, usize) {
    let mut outcomes = vec![Publication::NotTried; envelopes.len()];
    // Each SKU's events, in the order given, as indexes into `envelopes`.
    let mut queues: Vec<VecDeque<usize>> = Vec::new();
    let mut queue_of: HashMap<&str, usize> = HashMap::new();
    for (index, envelope) in envelopes.iter().enumerate() {
        let queue = *queue_of.entry(envelope.event.sku()).or_insert_with(|| {
            queues.push(VecDeque::new());
            queues.len() - 1
        });
        queues[queue].push_back(index);
    }
    let room = MAX_PUBLISH_BATCH * parallel_calls.max(1);
    let mut calls = 0;
    // Rounds take the SKUs in turn, from where the last one stopped, so none waits behind others.
    let mut next = 0;
    while queues.iter().any(|q| !q.is_empty()) && keep_going() {
        let count = queues.len();
        let heads: Vec<(usize, usize)> = (0..count)
            .map(|offset| (next + offset) % count)
            .filter_map(|queue| queues[queue].front().map(|&index| (queue, index)))
            .take(room)
            .collect();
        if let Some(&(last, _)) = heads.last() {
            next = (last + 1) % count;
        }
        let sends = heads.chunks(MAX_PUBLISH_BATCH).map(|chunk| {
            let batch: Vec<&EventEnvelope> = chunk.iter().map(|&(_, i)| envelopes[i]).collect();
            async move { publisher.publish_batch(&batch).await }
        });
        let answers = join_all(sends).await;
        calls += answers.len();
        for (&(queue, index), answer) in heads.iter().zip(answers.into_iter().flatten()) {
            match answer {
                Ok(message_id) => {
                    outcomes[index] = Publication::Published(message_id);
                    queues[queue].pop_front();
                }
                Err(error) => {
                    outcomes[index] = Publication::Failed(error);
                    queues[queue].clear();
                }
            }
        }
    }
    (outcomes, calls)
}

/// One outbox item to publish: its key in the table and its event (or why it cannot be read).
#[derive(Debug)]
pub struct OutboxItem {
    pub pk: String,
    pub sk: String,
    /// When it was committed (epoch seconds).
    pub created_at: i64,
    pub envelope: Result<EventEnvelope, StoreError>,
}

/// Pending outbox items, read oldest first.
#[derive(Debug, Default)]
pub struct PendingPage {
    pub items: Vec<OutboxItem>,
    /// Every pending item committed at or before this time (epoch seconds) is in `items`; `None`:
    /// every pending item is. An item committed later may have an earlier event of its SKU still
    /// unread, so a publisher that keeps each SKU's order publishes only up to here.
    pub complete_through: Option<i64>,
}

/// Where a publisher records that an outbox item was published (the stream relay needs no more).
pub trait PublishedMarks: Send + Sync {
    /// Records that the item with this key was published (an item that no longer exists is left
    /// alone).
    fn mark_published(
        &self,
        pk: &str,
        sk: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The outbox's publication record: the marks, and the items to publish again.
pub trait PublicationRecord: PublishedMarks {
    /// Items still pending that were committed at or before `created_before` (epoch seconds), about
    /// `max` (the oldest first), with how far the read is complete.
    fn pending(
        &self,
        created_before: i64,
        max: usize,
    ) -> impl Future<Output = Result<PendingPage, StoreError>> + Send;

    /// The SKU's items committed in `from..=to` (epoch seconds), published or not, at most `max`.
    fn recorded(
        &self,
        sku: &str,
        from: i64,
        to: i64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<OutboxItem>, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, OutOfStock};
    use std::sync::{Arc, Mutex};

    /// Records each call's event ids; fails the events whose id is in `fail`.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Vec<String>>>,
        fail: Vec<String>,
    }

    impl EventPublisher for Recorder {
        async fn publish_batch(
            &self,
            envelopes: &[&EventEnvelope],
        ) -> Vec<Result<String, PublishError>> {
            self.calls
                .lock()
                .unwrap()
                .push(envelopes.iter().map(|e| e.id.clone()).collect());
            envelopes
                .iter()
                .map(|e| match self.fail.contains(&e.id) {
                    true => Err(PublishError {
                        event_id: e.id.clone(),
                        detail: "down".into(),
                    }),
                    false => Ok(format!("m-{}", e.id)),
                })
                .collect()
        }
    }

    fn event(sku: &str, version: u64) -> EventEnvelope {
        EventEnvelope {
            id: EventEnvelope::event_id(sku, version, 0),
            correlation_id: None,
            occurred_at: None,
            event: Event::OutOfStock(OutOfStock {
                sku: Arc::from(sku),
                orderid: None,
                qty: None,
            }),
        }
    }

    #[tokio::test]
    async fn each_sku_s_events_go_in_order_ten_per_call_and_a_failure_holds_back_the_rest() {
        // 12 SKUs with 2 events each (A:1, B:1, ..., A:2, B:2, ...); B:1 fails.
        let skus: Vec<String> = (b'A'..=b'L').map(|c| (c as char).to_string()).collect();
        let events: Vec<EventEnvelope> = (1..=2)
            .flat_map(|v| skus.iter().map(move |s| event(s, v)))
            .collect();
        let envelopes: Vec<&EventEnvelope> = events.iter().collect();
        let publisher = Recorder {
            fail: vec!["B:1:0".into()],
            ..Recorder::default()
        };
        let (outcomes, calls) = publish_in_order(&publisher, &envelopes, 1, || true).await;
        let sent = publisher.calls.lock().unwrap().clone();
        assert_eq!(calls, sent.len());
        assert!(sent.iter().all(|call| call.len() <= MAX_PUBLISH_BATCH));
        // Round one: the first event of 10 SKUs, then of the other 2; then the second events.
        assert_eq!(sent[0][0], "A:1:0");
        assert_eq!(sent[1][..2], ["K:1:0", "L:1:0"], "the SKUs in turn");
        let position = |id: &str| sent.iter().flatten().position(|s| s == id);
        for sku in skus.iter().filter(|s| *s != "B") {
            assert!(position(&format!("{sku}:1:0")) < position(&format!("{sku}:2:0")));
        }
        assert_eq!(
            position("B:2:0"),
            None,
            "B's second event waits for its first"
        );
        let of = |id: &str| &outcomes[events.iter().position(|e| e.id == id).unwrap()];
        assert!(matches!(of("B:1:0"), Publication::Failed(_)));
        assert_eq!(of("B:2:0"), &Publication::NotTried);
        assert_eq!(of("A:2:0"), &Publication::Published("m-A:2:0".into()));
    }

    #[tokio::test]
    async fn nothing_is_sent_once_time_runs_out() {
        let events = [event("A", 1), event("A", 2)];
        let envelopes: Vec<&EventEnvelope> = events.iter().collect();
        let publisher = Recorder::default();
        let rounds = Mutex::new(0);
        let keep_going = || {
            let mut rounds = rounds.lock().unwrap();
            *rounds += 1;
            *rounds <= 1
        };
        let (outcomes, calls) = publish_in_order(&publisher, &envelopes, 2, keep_going).await;
        assert_eq!(calls, 1);
        assert_eq!(
            outcomes,
            [
                Publication::Published("m-A:1:0".into()),
                Publication::NotTried
            ]
        );
    }
}
