//! Local mode (`docs/local.md`): the whole service in one process, with the cloud's semantics.
//!
//! ```text
//! HTTP (axum) ─> entrypoints::http::handle ─> bus ─> store commit (+ outbox, same transaction)
//!                                                         │ commit signal / start-up / tick
//!                                                         v
//!                                                   outbox relay ─> topic (filter by event type)
//!                          AllocationRequired ─> reallocation queue ─> bus.handle_delivered_event
//!                          OutOfStock         ─> mailbox file (one email per event, fsynced)
//!                          Allocated          ─> event log
//! ```
//! A subscription's worker retries a failing event with exponential backoff; after
//! `max_attempts` failures the event goes to the dead-letter store. An outbox event is marked
//! delivered only once every subscription took it (handled or dead-lettered), so delivery is at least
//! once across crashes; the consumers are idempotent. See `docs/local.md`.

pub mod consumers;
#[cfg(test)]
mod memory_feed;
pub mod relay;
pub mod server;
pub mod topic;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use consumers::{EventLog, Mailbox, Reallocator, MAILBOX_SEPARATOR};
#[cfg(test)]
pub(crate) use memory_feed::MemoryFeedStore;
pub use relay::{Relay, RelayConfig, RelayStats};
pub use server::{router, App, DEAD_LETTERS_PATH, REQUEST_ID_HEADER};
pub use topic::{Subscription, Topic};
pub use worker::{Consumer, DeliveryPolicy, Worker};

use crate::service::{Bus, OutboxFeed, Store};

/// The subscriptions of the local topic and the event types each one's filter policy accepts.
pub const REALLOCATION_QUEUE: &str = "reallocation-queue";
pub const MAILBOX: &str = "mailbox";
pub const EVENT_LOG: &str = "event-log";

/// How the in-process event flow runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// The mailbox file out-of-stock emails are appended to.
    pub mailbox: PathBuf,
    /// Retries and dead-lettering of every subscription.
    pub delivery: DeliveryPolicy,
    /// Reallocations run at once, at most.
    pub queue_concurrency: usize,
    pub relay: RelayConfig,
}

impl FlowConfig {
    pub fn new(mailbox: impl Into<PathBuf>) -> Self {
        Self {
            mailbox: mailbox.into(),
            delivery: DeliveryPolicy::default(),
            queue_concurrency: 4,
            relay: RelayConfig::default(),
        }
    }
}

/// The running event flow: the relay and the subscriptions' workers.
pub struct EventFlow {
    shutdown: watch::Sender<bool>,
    relay: JoinHandle<RelayStats>,
    workers: Vec<JoinHandle<()>>,
}

impl EventFlow {
    /// Starts the relay (which delivers what is pending at once) and the workers.
    pub fn start<S: Store + OutboxFeed>(bus: Arc<Bus<S>>, config: &FlowConfig) -> Self {
        let store = Arc::clone(bus.uows().store());
        let (shutdown, stopping) = watch::channel(false);
        let mut topic = Topic::new();
        let mut queue = |name: &'static str, event_types: &'static [&'static str]| {
            let (sender, receiver) = mpsc::unbounded_channel();
            topic.subscribe(Subscription {
                name,
                event_types,
                queue: sender,
            });
            receiver
        };
        let reallocations = queue(REALLOCATION_QUEUE, &["AllocationRequired"]);
        let emails = queue(MAILBOX, &["OutOfStock"]);
        let published = queue(EVENT_LOG, &["Allocated"]);
        let worker = |subscription, concurrency| Worker {
            subscription,
            consumer: Arc::new(()),
            feed: Arc::clone(&store),
            policy: config.delivery,
            concurrency,
            stopping: stopping.clone(),
        };
        let workers = vec![
            tokio::spawn(
                worker(REALLOCATION_QUEUE, config.queue_concurrency)
                    .with_consumer(Reallocator {
                        bus: Arc::clone(&bus),
                    })
                    .run(reallocations),
            ),
            tokio::spawn(
                worker(MAILBOX, 1)
                    .with_consumer(Mailbox::new(&config.mailbox))
                    .run(emails),
            ),
            tokio::spawn(worker(EVENT_LOG, 1).with_consumer(EventLog).run(published)),
        ];
        let relay = Relay::new(store, topic, config.relay);
        let relay = tokio::spawn(relay.run(stopping));
        Self {
            shutdown,
            relay,
            workers,
        }
    }

    /// Stops retrying, flushes the relay (bounded by its `flush_timeout`) and waits for the workers.
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

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the HTTP API on `listener` with the event flow, until `shutdown` resolves; then finishes
/// the requests in flight (bounded by [`SHUTDOWN_GRACE`]) and flushes the event flow.
pub async fn serve<S: Store + OutboxFeed>(
    bus: Arc<Bus<S>>,
    listener: TcpListener,
    flow: &FlowConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<RelayStats> {
    use axum::serve::ListenerExt;

    let events = EventFlow::start(Arc::clone(&bus), flow);
    let app = Arc::new(App {
        bus: Arc::clone(&bus),
    });
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown.await;
    info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => warn!(%error, "server error"),
        Ok(Err(error)) => warn!(%error, "server task failed"),
        Err(_) => warn!("requests still in flight after {SHUTDOWN_GRACE:?}; closing them"),
    }
    info!("flushing the event flow");
    Ok(events.shutdown().await)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("received SIGINT"),
        () = terminate => info!("received SIGTERM"),
    }
}

/// The URL a bound address serves, e.g. `http://127.0.0.1:5005`.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AllocationRequired;
    use crate::domain::{Allocate, ChangeBatchQuantity, CreateBatch};
    use crate::service::outbox_bus;

    fn batch(reference: &str, qty: u32) -> CreateBatch {
        CreateBatch {
            reference: reference.into(),
            sku: "LAMP".into(),
            qty,
            eta: None,
        }
    }

    fn allocate(orderid: &str, qty: u32) -> Allocate {
        Allocate {
            orderid: orderid.into(),
            sku: "LAMP".into(),
            qty,
        }
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

    fn config(dir: &std::path::Path) -> FlowConfig {
        let mut config = FlowConfig::new(dir.join("mailbox.txt"));
        config.delivery.base_delay = Duration::from_millis(1);
        config
    }

    #[tokio::test]
    async fn events_committed_before_start_are_delivered_and_reallocated() {
        let dir = std::env::temp_dir().join(format!("flow-test-{}", fastrand::u64(..)));
        let store = Arc::new(MemoryFeedStore::new());
        let bus = Arc::new(outbox_bus(Arc::clone(&store)));
        bus.handle(&batch("b1", 10), None).await.unwrap();
        bus.handle(&batch("b2", 10), None).await.unwrap();
        assert_eq!(bus.handle(&allocate("o1", 8), None).await.unwrap(), "b1");
        let change = ChangeBatchQuantity {
            reference: "b1".into(),
            qty: 5,
        };
        bus.handle(&change, Some("req-1")).await.unwrap();
        assert!(bus.handle(&allocate("o2", 50), None).await.is_err());
        assert_eq!(
            store.pending_count(),
            3,
            "Allocated, AllocationRequired, OutOfStock: pending"
        );

        let flow = EventFlow::start(Arc::clone(&bus), &config(&dir));
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
        let dir = std::env::temp_dir().join(format!("flow-test-{}", fastrand::u64(..)));
        let store = Arc::new(MemoryFeedStore::new());
        let bus = Arc::new(outbox_bus(Arc::clone(&store)));
        let flow = EventFlow::start(Arc::clone(&bus), &config(&dir));
        // An AllocationRequired for a SKU that does not exist: reallocating it fails every time.
        let product = crate::domain::Product::new("GHOST").unwrap();
        let event = crate::domain::EventEnvelope {
            id: "GHOST:1:0".into(),
            correlation_id: None,
            occurred_at: None,
            event: crate::domain::Event::AllocationRequired(AllocationRequired {
                orderid: "o9".into(),
                sku: "NOSUCH".into(),
                qty: 1,
            }),
        };
        let mut ghost = product;
        ghost
            .add_batch(crate::domain::Batch::new("g1", "GHOST", 1, None).unwrap())
            .unwrap();
        store
            .commit(&[crate::service::ProductWrite {
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
        let dir = std::env::temp_dir().join(format!("flow-test-{}", fastrand::u64(..)));
        std::fs::create_dir_all(dir.join("mailbox.txt")).unwrap(); // a directory: emails fail
        let store = Arc::new(MemoryFeedStore::new());
        let bus = Arc::new(outbox_bus(Arc::clone(&store)));
        let mut config = FlowConfig::new(dir.join("mailbox.txt"));
        config.delivery.base_delay = Duration::from_secs(60);
        config.relay.batch = 2;
        let flow = EventFlow::start(Arc::clone(&bus), &config);
        bus.handle(&batch("b1", 10), None).await.unwrap();
        assert!(bus.handle(&allocate("o1", 50), None).await.is_err()); // OutOfStock, stuck
        for i in 0..5 {
            bus.handle(&allocate(&format!("o{i}-ok"), 1), None)
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
}
