//! The local event flow in process (an in-memory store with an outbox feed): routes, explicit acks,
//! retries and dead letters, the relay's recovery of pending events and its shutdown, the mailbox.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use allocation::adapters::mailbox::{Mailbox, MAILBOX_SEPARATOR};
use allocation::domain::{
    Allocate, Allocated, AllocationRequired, Batch, ChangeBatchQuantity, CreateBatch, Event,
    EventEnvelope, OutOfStock, Product,
};
use allocation::entrypoints::local::{
    Ack, Consumer, DeliveryPolicy, EventFlow, FlowConfig, QueuedEvent, Routes, Worker,
};
use allocation::service::{
    out_of_stock_message, AllocationsView, App, Bootstrap, DeadLetter, Notifications, OutboxFeed,
    ProductRepository, ProductWrite, StoreError,
};
use tokio::sync::{mpsc, watch};

use crate::support::memory_feed::MemoryFeedStore;

fn batch(reference: &str, qty: u32) -> CreateBatch {
    CreateBatch::new(reference, "LAMP", qty, None).unwrap()
}

fn allocate(orderid: &str, qty: u32) -> Allocate {
    Allocate::new(orderid, "LAMP", qty).unwrap()
}

fn envelope(event: Event) -> EventEnvelope {
    EventEnvelope {
        id: "LAMP:2:0".into(),
        correlation_id: Some("req-1".into()),
        occurred_at: None,
        event,
    }
}

fn allocation_required() -> EventEnvelope {
    envelope(Event::AllocationRequired(AllocationRequired {
        orderid: "o1".into(),
        sku: "LAMP".into(),
        qty: 1,
    }))
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flow-test-{}", fastrand::u64(..)))
}

fn config() -> FlowConfig {
    let mut config = FlowConfig::default();
    config.delivery.base_delay = Duration::from_millis(1);
    config
}

/// The local server's app: its out-of-stock emails go to `dir/mailbox.txt`.
fn app(store: &Arc<MemoryFeedStore>, dir: &std::path::Path) -> App<MemoryFeedStore> {
    let mailbox = Mailbox::new(dir.join("mailbox.txt"));
    Bootstrap::new(Arc::clone(store))
        .notifications(Arc::new(mailbox))
        .app()
}

#[tokio::test]
async fn events_committed_before_start_are_delivered_and_reallocated() {
    let dir = temp_dir();
    let store = Arc::new(MemoryFeedStore::new());
    let app = app(&store, &dir);
    app.bus.handle(&batch("b1", 10), None).await.unwrap();
    app.bus.handle(&batch("b2", 10), None).await.unwrap();
    assert_eq!(
        app.bus.handle(&allocate("o1", 8), None).await.unwrap(),
        "b1"
    );
    let change = ChangeBatchQuantity::new("b1", 5).unwrap();
    app.bus.handle(&change, Some("req-1")).await.unwrap();
    assert!(app.bus.handle(&allocate("o2", 50), None).await.is_err());
    assert_eq!(
        store.pending_count(),
        3,
        "Allocated, AllocationRequired, OutOfStock: pending"
    );

    let flow = EventFlow::start(&app, &config());
    eventually("the reallocation", async || {
        let views = store.allocations_for_order("o1").await.unwrap();
        views.len() == 1 && views[0].batchref.as_deref() == Some("b2")
    })
    .await;
    eventually("every event delivered", async || store.pending_count() == 0).await;
    let stats = flow.shutdown().await;
    assert_eq!(stats.unfinished, 0);
    assert_eq!(
        store.delivered_count(),
        4,
        "the reallocation's Allocated too"
    );
    let mailbox = std::fs::read_to_string(dir.join("mailbox.txt")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        mailbox
            .matches("Subject: Out of stock for SKU LAMP")
            .count(),
        1
    );
    assert!(store.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_reallocation_that_keeps_failing_is_dead_lettered_and_not_redelivered() {
    let dir = temp_dir();
    let store = Arc::new(MemoryFeedStore::new());
    let app = app(&store, &dir);
    let flow = EventFlow::start(&app, &config());
    // An AllocationRequired for a SKU that does not exist: reallocating it fails every time.
    let event = EventEnvelope {
        id: "GHOST:1:0".into(),
        correlation_id: None,
        occurred_at: None,
        event: Event::AllocationRequired(AllocationRequired {
            orderid: "o9".into(),
            sku: "NOSUCH".into(),
            qty: 1,
        }),
    };
    let mut ghost = Product::parse("GHOST").unwrap();
    ghost
        .add_batch(Batch::parse("g1", "GHOST", 1, None).unwrap())
        .unwrap();
    store
        .commit(&[ProductWrite {
            product: &ghost,
            expected_version: None,
            changes: ghost.changes(),
            outbox: std::slice::from_ref(&event),
        }])
        .await
        .unwrap();
    eventually("the dead letter", async || {
        store.dead_letters().await.unwrap().len() == 1 && store.pending_count() == 0
    })
    .await;
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters[0].envelope, event);
    assert_eq!(letters[0].attempts, 5);
    assert!(
        letters[0].reason.contains("Invalid sku NOSUCH"),
        "{}",
        letters[0].reason
    );
    flow.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_event_waiting_to_be_retried_does_not_hold_back_later_ones() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("mailbox.txt")).unwrap(); // a directory: emails fail
    let store = Arc::new(MemoryFeedStore::new());
    let app = app(&store, &dir);
    let mut config = FlowConfig::default();
    config.delivery.base_delay = Duration::from_secs(60);
    config.relay_batch = 2;
    let flow = EventFlow::start(&app, &config);
    app.bus.handle(&batch("b1", 10), None).await.unwrap();
    assert!(app.bus.handle(&allocate("o1", 50), None).await.is_err()); // OutOfStock, stuck
    for i in 0..5 {
        app.bus
            .handle(&allocate(&format!("o{i}-ok"), 1), None)
            .await
            .unwrap();
    }
    eventually("the later events", async || {
        store.pending_count() == 1 && store.delivered_count() == 5
    })
    .await;
    let stats = flow.shutdown().await;
    assert_eq!(
        stats.unfinished, 0,
        "the stuck event was released at shutdown"
    );
    assert_eq!(
        store.pending_count(),
        1,
        "and stays pending for the next start"
    );
    assert!(store.dead_letters().await.unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Routes whose queues the test reads, and the relay's end of the acks.
struct Queues {
    routes: Routes,
    reallocations: mpsc::UnboundedReceiver<QueuedEvent>,
    emails: mpsc::UnboundedReceiver<QueuedEvent>,
    event_log: mpsc::UnboundedReceiver<QueuedEvent>,
    acks_tx: mpsc::UnboundedSender<Ack>,
    acks: mpsc::UnboundedReceiver<Ack>,
}

fn queues() -> Queues {
    let (reallocations_tx, reallocations) = mpsc::unbounded_channel();
    let (emails_tx, emails) = mpsc::unbounded_channel();
    let (event_log_tx, event_log) = mpsc::unbounded_channel();
    let (acks_tx, acks) = mpsc::unbounded_channel();
    Queues {
        routes: Routes {
            reallocations: reallocations_tx,
            emails: emails_tx,
            event_log: event_log_tx,
        },
        reallocations,
        emails,
        event_log,
        acks_tx,
        acks,
    }
}

#[test]
fn each_event_type_goes_to_its_consumer_only_and_is_delivered_once_taken() {
    let mut q = queues();
    let out_of_stock = envelope(Event::OutOfStock(OutOfStock {
        sku: "LAMP".into(),
        orderid: None,
        qty: None,
    }));
    q.routes
        .send(QueuedEvent::new(7, out_of_stock, q.acks_tx.clone()));
    assert!(q.reallocations.try_recv().is_err() && q.event_log.try_recv().is_err());
    let delivery = q.emails.try_recv().expect("the mailbox gets OutOfStock");
    assert_eq!(delivery.seq, 7);
    assert!(
        q.acks.try_recv().is_err(),
        "not delivered before it is taken"
    );
    delivery.take();
    assert_eq!(q.acks.try_recv(), Ok(Ack::Taken(7)));

    let allocated = envelope(Event::Allocated(Allocated {
        orderid: "o1".into(),
        sku: "LAMP".into(),
        qty: 1,
        batchref: "b1".into(),
    }));
    q.routes
        .send(QueuedEvent::new(8, allocated, q.acks_tx.clone()));
    assert!(
        q.event_log.try_recv().is_ok(),
        "the event log gets Allocated"
    );
    q.routes.send(QueuedEvent::new(
        9,
        allocation_required(),
        q.acks_tx.clone(),
    ));
    assert!(q.reallocations.try_recv().is_ok());
    assert!(q.emails.try_recv().is_err());
}

#[test]
fn a_delivery_dropped_without_an_answer_is_released() {
    let mut q = queues();
    q.routes.send(QueuedEvent::new(
        9,
        allocation_required(),
        q.acks_tx.clone(),
    ));
    drop(q.reallocations.try_recv().expect("queued"));
    assert_eq!(q.acks.try_recv(), Ok(Ack::Released(9)));
}

#[test]
fn a_stopped_consumer_releases_the_event() {
    let mut q = queues();
    drop(q.reallocations);
    q.routes.send(QueuedEvent::new(
        4,
        allocation_required(),
        q.acks_tx.clone(),
    ));
    assert_eq!(q.acks.try_recv(), Ok(Ack::Released(4)));
}

/// Fails the first `failures` attempts of every event.
struct Flaky {
    failures: u32,
    calls: Arc<AtomicU32>,
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

/// A feed whose first `failures` dead-letter writes fail (a full disk).
struct DeadLettersFailing {
    inner: MemoryFeedStore,
    failures: u32,
    writes: AtomicU32,
}

impl OutboxFeed for DeadLettersFailing {
    async fn pending_outbox(&self, limit: usize) -> Result<Vec<(u64, EventEnvelope)>, StoreError> {
        self.inner.pending_outbox(limit).await
    }

    async fn mark_delivered(&self, seqs: &[u64]) -> Result<u64, StoreError> {
        self.inner.mark_delivered(seqs).await
    }

    async fn add_dead_letter(
        &self,
        envelope: &EventEnvelope,
        reason: &str,
        attempts: u32,
    ) -> Result<u64, StoreError> {
        let write = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if write <= self.failures {
            return Err(StoreError::Unavailable("No space left on device".into()));
        }
        self.inner.add_dead_letter(envelope, reason, attempts).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters().await
    }

    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.inner.subscribe_commits()
    }
}

/// A worker of the reallocation queue running a [`Flaky`] consumer.
struct Setup<F> {
    queue: mpsc::UnboundedSender<QueuedEvent>,
    acks_tx: mpsc::UnboundedSender<Ack>,
    acks: mpsc::UnboundedReceiver<Ack>,
    feed: Arc<F>,
    calls: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl<F> Setup<F> {
    fn deliver(&self, seq: u64) {
        let delivery = QueuedEvent::new(seq, allocation_required(), self.acks_tx.clone());
        assert!(self.queue.send(delivery).is_ok(), "the worker runs");
    }
}

fn setup(failures: u32, max_attempts: u32) -> Setup<MemoryFeedStore> {
    setup_with(MemoryFeedStore::new(), failures, max_attempts)
}

fn setup_with<F: OutboxFeed>(feed: F, failures: u32, max_attempts: u32) -> Setup<F> {
    let feed = Arc::new(feed);
    let calls = Arc::new(AtomicU32::new(0));
    let (stop, stopping) = watch::channel(false);
    let (queue, deliveries) = mpsc::unbounded_channel();
    let worker = Worker {
        name: "reallocation-queue",
        consumer: Flaky {
            failures,
            calls: Arc::clone(&calls),
        },
        feed: Arc::clone(&feed),
        policy: DeliveryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        },
        concurrency: 2,
        stopping,
    };
    let (acks_tx, acks) = mpsc::unbounded_channel();
    Setup {
        queue,
        acks_tx,
        acks,
        feed,
        calls,
        stop,
        worker: tokio::spawn(worker.run(deliveries)),
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
async fn a_delivery_that_fails_then_succeeds_is_taken() {
    let mut s = setup(3, 5);
    s.deliver(1);
    assert_eq!(s.acks.recv().await, Some(Ack::Taken(1)));
    assert_eq!(s.calls.load(Ordering::SeqCst), 4);
    assert!(s.feed.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_delivery_failing_max_attempts_times_goes_to_the_dead_letters() {
    let mut s = setup(u32::MAX, 5);
    s.deliver(1);
    assert_eq!(s.acks.recv().await, Some(Ack::Taken(1)));
    assert_eq!(s.calls.load(Ordering::SeqCst), 5);
    let letters = s.feed.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].envelope, allocation_required());
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
    s.deliver(1);
    assert_eq!(s.acks.recv().await, Some(Ack::Taken(1)));
    assert_eq!(
        s.calls.load(Ordering::SeqCst),
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
    s.deliver(1);
    assert_eq!(s.acks.recv().await, Some(Ack::Released(1)));
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    assert!(s.feed.dead_letters().await.unwrap().is_empty());
    drop(s.queue);
    s.worker.await.unwrap();
}

#[tokio::test]
async fn an_out_of_stock_email_is_appended_readably_once_per_event_id() {
    let dir = temp_dir();
    let mailbox = Mailbox::new(dir.join("sub").join("mailbox.txt"));
    let envelope = EventEnvelope {
        id: "SMALL-TABLE:3:0".into(),
        correlation_id: Some("req-7".into()),
        occurred_at: None,
        event: Event::OutOfStock(OutOfStock {
            sku: "SMALL-TABLE".into(),
            orderid: Some("order-9".into()),
            qty: Some(2),
        }),
    };
    let next = EventEnvelope {
        id: "SMALL-TABLE:9:0".into(),
        ..envelope.clone()
    };
    mailbox.out_of_stock(&envelope).await.unwrap();
    mailbox.out_of_stock(&envelope).await.unwrap();
    mailbox.out_of_stock(&next).await.unwrap();
    // A new process (a restarted server) knows what the file holds.
    Mailbox::new(mailbox.path())
        .out_of_stock(&envelope)
        .await
        .unwrap();
    let text = std::fs::read_to_string(mailbox.path()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        text.matches("Subject: Out of stock for SKU SMALL-TABLE\n")
            .count(),
        2,
        "one email per event id, however often it is delivered"
    );
    assert_eq!(text.matches(MAILBOX_SEPARATOR).count(), 2);
    assert!(text.contains(&out_of_stock_message(&envelope)));
    assert!(text.contains("Order line turned away: order order-9, quantity 2."));
    assert!(text.contains("Event-Id: SMALL-TABLE:3:0\nCorrelation-Id: req-7\n"));
}
