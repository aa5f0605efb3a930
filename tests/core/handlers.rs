//! The service layer through the message bus (book ch. 5-9 `test_handlers`), on the in-memory store.

use allocation::domain::{AllocationRequired, OutOfStock};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::memory_store::InMemoryStore;
use allocation::domain::{
    Allocate, ChangeBatchQuantity, CreateBatch, Event, EventEnvelope, LineStatus, Product,
    Reallocate,
};
use allocation::service::notifications::NotifyFuture;
use allocation::service::{
    handlers, AllocationView, AllocationsView, Bootstrap, EventWiring, MessageBus,
    NotificationError, Notifications, OutboxAudit, ProductRepository, ProductWrite, RetryPolicy,
    ServiceError, StoreError, UnitOfWork,
};
use chrono::NaiveDate;

/// Records the out-of-stock notifications it is asked to send (or fails them all).
#[derive(Default)]
struct FakeNotifications {
    sent: Mutex<Vec<String>>,
    fail: bool,
}

impl Notifications for FakeNotifications {
    fn out_of_stock<'a>(&'a self, envelope: &'a EventEnvelope) -> NotifyFuture<'a> {
        Box::pin(async move {
            self.sent
                .lock()
                .unwrap()
                .push(envelope.event.sku().to_owned());
            if self.fail {
                Err(NotificationError("smtp is down".into()))
            } else {
                Ok(())
            }
        })
    }
}

struct Fixture<S: ProductRepository> {
    store: Arc<S>,
    notifications: Arc<FakeNotifications>,
    bus: MessageBus<S>,
}

impl<S: ProductRepository> Fixture<S> {
    /// Given a batch (the command succeeds).
    async fn add_batch(&self, reference: &str, sku: &str, qty: u32, eta: Option<NaiveDate>) {
        let cmd = create_batch(reference, sku, qty, eta);
        self.bus.handle(&cmd, None).await.unwrap();
    }
}

fn bootstrap_with<S: ProductRepository>(
    store: S,
    wiring: EventWiring,
    notifications: FakeNotifications,
) -> Fixture<S> {
    let store = Arc::new(store);
    let notifications = Arc::new(notifications);
    let bus = Bootstrap::new(Arc::clone(&store))
        .wiring(wiring)
        .notifications(Arc::clone(&notifications) as Arc<dyn Notifications>)
        .retry(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            budget: Duration::from_secs(5),
        })
        .build();
    Fixture {
        store,
        notifications,
        bus,
    }
}

/// The book's test bus: every event handled in process.
fn bootstrap_test_app() -> Fixture<InMemoryStore> {
    bootstrap_with(
        InMemoryStore::new(),
        EventWiring::in_process(),
        FakeNotifications::default(),
    )
}

fn create_batch(reference: &str, sku: &str, qty: u32, eta: Option<NaiveDate>) -> CreateBatch {
    CreateBatch::new(reference, sku, qty, eta).unwrap()
}

fn allocate(orderid: &str, sku: &str, qty: u32) -> Allocate {
    Allocate::new(orderid, sku, qty).unwrap()
}

async fn product<S: ProductRepository>(fx: &Fixture<S>, sku: &str) -> Product {
    let mut uow = fx.bus.unit_of_work(None);
    uow.get(sku, &[])
        .await
        .unwrap()
        .expect("product exists")
        .clone()
}

mod add_batch {
    use super::*;

    #[tokio::test]
    async fn test_for_new_product() {
        let fx = bootstrap_test_app();
        fx.add_batch("b1", "CRUNCHY-ARMCHAIR", 100, None).await;
        let product = product(&fx, "CRUNCHY-ARMCHAIR").await;
        assert_eq!(product.batches().len(), 1);
        assert_eq!(product.batch("b1").unwrap().purchased_quantity(), 100);
    }

    #[tokio::test]
    async fn test_for_existing_product() {
        let fx = bootstrap_test_app();
        fx.add_batch("b1", "GARISH-RUG", 100, None).await;
        fx.add_batch("b2", "GARISH-RUG", 99, None).await;
        let refs: Vec<_> = product(&fx, "GARISH-RUG")
            .await
            .batches()
            .iter()
            .map(|b| b.reference().to_owned())
            .collect();
        assert_eq!(refs, ["b1", "b2"]);
    }

    #[tokio::test]
    async fn test_a_duplicate_batch_reference_is_refused_even_for_another_sku() {
        let fx = bootstrap_test_app();
        fx.add_batch("b1", "GARISH-RUG", 100, None).await;
        let again = fx
            .bus
            .handle(&create_batch("b1", "OTHER-RUG", 5, None), None)
            .await;
        assert_eq!(
            again.unwrap_err().to_string(),
            "batch b1 already exists with sku GARISH-RUG, not OTHER-RUG; qty 100, not 5"
        );
        assert!(fx.store.load("OTHER-RUG", &[]).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn test_an_identical_add_batch_retried_answers_as_the_first_and_changes_nothing() {
        let fx = bootstrap_test_app();
        let eta = NaiveDate::from_ymd_opt(2027, 1, 15);
        fx.add_batch("b1", "GARISH-RUG", 100, eta).await;
        let version = |p: Option<Product>| p.map(|p| p.version_number());
        let before = version(fx.store.load("GARISH-RUG", &[]).await.unwrap());
        fx.add_batch("b1", "GARISH-RUG", 100, eta).await;
        assert_eq!(
            version(fx.store.load("GARISH-RUG", &[]).await.unwrap()),
            before
        );
        let later = fx
            .bus
            .handle(&create_batch("b1", "GARISH-RUG", 100, None), None)
            .await;
        assert_eq!(
            later.unwrap_err().to_string(),
            "batch b1 already exists with eta 2027-01-15, not none"
        );
    }
}

mod allocate {
    use super::*;

    #[tokio::test]
    async fn test_the_same_allocation_repeated_answers_the_same_and_another_quantity_is_refused() {
        let fx = bootstrap_test_app();
        fx.add_batch("batch1", "SMALL-TABLE", 100, None).await;
        let first = fx
            .bus
            .handle(&allocate("o1", "SMALL-TABLE", 15), None)
            .await;
        let again = fx
            .bus
            .handle(&allocate("o1", "SMALL-TABLE", 15), None)
            .await;
        assert_eq!(
            (first.unwrap(), again.unwrap()),
            ("batch1".into(), "batch1".into())
        );
        let other = fx.bus.handle(&allocate("o1", "SMALL-TABLE", 7), None).await;
        let error = other.unwrap_err();
        assert!(matches!(error, ServiceError::Conflict(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "order o1 already has a line of 15 SMALL-TABLE; this request asks for 7"
        );
        let product = fx
            .store
            .load("SMALL-TABLE", &["o1"])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(product.batch("batch1").unwrap().allocated_quantity(), 15);
    }

    #[tokio::test]
    async fn test_returns_allocation() {
        let fx = bootstrap_test_app();
        fx.add_batch("batch1", "COMPLICATED-LAMP", 100, None).await;
        let batchref = fx
            .bus
            .handle(&allocate("o1", "COMPLICATED-LAMP", 10), None)
            .await
            .unwrap();
        assert_eq!(batchref, "batch1");
    }

    #[tokio::test]
    async fn test_errors_for_invalid_sku() {
        let fx = bootstrap_test_app();
        fx.add_batch("b1", "AREALSKU", 100, None).await;
        let result = fx
            .bus
            .handle(&allocate("o1", "NONEXISTENTSKU", 10), None)
            .await;
        assert_eq!(
            result,
            Err(ServiceError::InvalidSku("NONEXISTENTSKU".into()))
        );
        assert_eq!(
            result.unwrap_err().to_string(),
            "Invalid sku NONEXISTENTSKU"
        );
    }

    #[tokio::test]
    async fn test_commits() {
        let fx = bootstrap_test_app();
        fx.add_batch("b1", "OMINOUS-MIRROR", 100, None).await;
        fx.bus
            .handle(&allocate("o1", "OMINOUS-MIRROR", 10), None)
            .await
            .unwrap();
        // A fresh unit of work sees the allocation: it was committed.
        let product = product(&fx, "OMINOUS-MIRROR").await;
        assert_eq!(product.batch("b1").unwrap().available_quantity(), 90);
        assert_eq!(
            fx.store.allocations_for_order("o1").await.unwrap(),
            [AllocationView {
                sku: "OMINOUS-MIRROR".into(),
                batchref: Some("b1".into())
            }]
        );
    }

    #[tokio::test]
    async fn test_sends_email_on_out_of_stock_error() {
        let fx = bootstrap_test_app();
        fx.add_batch("b1", "POPULAR-CURTAINS", 9, None).await;
        let result = fx
            .bus
            .handle(&allocate("o1", "POPULAR-CURTAINS", 10), None)
            .await;
        assert_eq!(
            result,
            Err(ServiceError::OutOfStock("POPULAR-CURTAINS".into()))
        );
        assert_eq!(*fx.notifications.sent.lock().unwrap(), ["POPULAR-CURTAINS"]);
    }

    #[tokio::test]
    async fn test_out_of_stock_goes_to_the_outbox_when_wired_out_of_process() {
        let fx = bootstrap_with(
            InMemoryStore::new(),
            EventWiring::outbox(),
            FakeNotifications::default(),
        );
        fx.add_batch("b1", "POPULAR-CURTAINS", 9, None).await;
        let _ = fx
            .bus
            .handle(&allocate("o1", "POPULAR-CURTAINS", 10), Some("req-9"))
            .await;
        assert!(
            fx.notifications.sent.lock().unwrap().is_empty(),
            "handled in one place only"
        );
        let outbox = fx.store.outbox("POPULAR-CURTAINS").await.unwrap();
        assert_eq!(
            outbox.last().map(|e| &e.event),
            Some(&Event::OutOfStock(OutOfStock {
                sku: "POPULAR-CURTAINS".into(),
                orderid: Some("o1".into()),
                qty: Some(10),
            }))
        );
        assert_eq!(
            outbox.last().and_then(|e| e.correlation_id.as_deref()),
            Some("req-9")
        );
    }
}

mod change_batch_quantity {
    use super::*;

    fn today() -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(2026, 11, 21)
    }

    #[tokio::test]
    async fn test_changes_available_quantity() {
        let fx = bootstrap_test_app();
        fx.add_batch("batch1", "ADORABLE-SETTEE", 100, None).await;
        assert_eq!(
            product(&fx, "ADORABLE-SETTEE")
                .await
                .batch("batch1")
                .unwrap()
                .available_quantity(),
            100
        );
        fx.bus
            .handle(&ChangeBatchQuantity::new("batch1", 50).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(
            product(&fx, "ADORABLE-SETTEE")
                .await
                .batch("batch1")
                .unwrap()
                .available_quantity(),
            50
        );
    }

    #[tokio::test]
    async fn test_reallocates_if_necessary() {
        let fx = bootstrap_test_app();
        for cmd in [
            create_batch("batch1", "INDIFFERENT-TABLE", 50, None),
            create_batch("batch2", "INDIFFERENT-TABLE", 50, today()),
        ] {
            fx.bus.handle(&cmd, None).await.unwrap();
        }
        for order in ["order1", "order2"] {
            fx.bus
                .handle(&allocate(order, "INDIFFERENT-TABLE", 20), None)
                .await
                .unwrap();
        }
        let product_before = product(&fx, "INDIFFERENT-TABLE").await;
        assert_eq!(
            product_before.batch("batch1").unwrap().available_quantity(),
            10
        );
        assert_eq!(
            product_before.batch("batch2").unwrap().available_quantity(),
            50
        );

        fx.bus
            .handle(&ChangeBatchQuantity::new("batch1", 25).unwrap(), None)
            .await
            .unwrap();

        let product = product(&fx, "INDIFFERENT-TABLE").await;
        // order1 or order2 is deallocated, so 25 - 20 remain ...
        assert_eq!(product.batch("batch1").unwrap().available_quantity(), 5);
        // ... and its 20 are reallocated to the next batch.
        assert_eq!(product.batch("batch2").unwrap().available_quantity(), 30);
    }

    #[tokio::test]
    async fn test_reallocates_if_necessary_isolated() {
        // The handler alone, with the bus's event handling out of the picture: the events it raises are
        // what the bus would be given, and nothing is reallocated.
        let store = Arc::new(InMemoryStore::new());
        let mut uow = UnitOfWork::new(Arc::clone(&store), EventWiring::outbox(), None);
        let product = uow.add(Product::parse("INDIFFERENT-TABLE").unwrap());
        for (reference, eta) in [("batch1", None), ("batch2", today())] {
            product
                .add_batch(
                    allocation::domain::Batch::parse(reference, "INDIFFERENT-TABLE", 50, eta)
                        .unwrap(),
                )
                .unwrap();
        }
        for order in ["order1", "order2"] {
            product
                .allocate(
                    &allocation::domain::OrderLine::parse(order, "INDIFFERENT-TABLE", 20).unwrap(),
                )
                .unwrap();
        }
        uow.commit().await.unwrap();
        uow.collect_new_events();

        handlers::change_batch_quantity(
            None,
            &ChangeBatchQuantity::new("batch1", 25).unwrap(),
            &mut uow,
        )
        .await
        .unwrap();

        let events: Vec<Event> = uow
            .collect_new_events()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(events.len(), 1);
        let Event::AllocationRequired(AllocationRequired { orderid, sku, qty }) = &events[0] else {
            panic!("expected AllocationRequired, got {events:?}");
        };
        assert!(&**orderid == "order1" || &**orderid == "order2");
        assert_eq!((&**sku, *qty), ("INDIFFERENT-TABLE", 20));
        let product = uow.get("INDIFFERENT-TABLE", &[]).await.unwrap().unwrap();
        assert_eq!(
            product.batch("batch2").unwrap().available_quantity(),
            50,
            "not reallocated by the handler"
        );
    }

    #[tokio::test]
    async fn test_unknown_batch_is_an_error() {
        let fx = bootstrap_test_app();
        let result = fx
            .bus
            .handle(&ChangeBatchQuantity::new("nope", 1).unwrap(), None)
            .await;
        assert_eq!(result, Err(ServiceError::UnknownBatch("nope".into())));
    }
}

mod message_bus {
    use super::*;

    #[tokio::test]
    async fn allocations_and_reallocations_of_one_sku_arriving_together_are_applied_in_one_unit_of_work(
    ) {
        let fx = bootstrap_with(
            InMemoryStore::new(),
            EventWiring::outbox(),
            FakeNotifications::default(),
        );
        fx.add_batch("b1", "TWIN-LAMP", 5, None).await;
        let groups_before = fx.bus.stats().allocation_groups.load(Ordering::Relaxed);
        let (first, second) = (
            allocate("o1", "TWIN-LAMP", 4),
            allocate("o3", "TWIN-LAMP", 10),
        );
        let reallocate = Reallocate::new("o2", "TWIN-LAMP", 10).unwrap();
        // Submitted together, as an SQS batch or concurrent requests are: one entry for both kinds.
        let (allocated, reallocated, refused) = tokio::join!(
            fx.bus.handle(&first, None),
            fx.bus.handle(&reallocate, None),
            fx.bus.handle(&second, None),
        );
        assert_eq!(allocated.as_deref(), Ok("b1"));
        assert_eq!(reallocated, Ok(()), "no stock: the reallocated line waits");
        assert_eq!(
            refused,
            Err(ServiceError::OutOfStock("TWIN-LAMP".into())),
            "no stock: the requested line is turned away"
        );
        let groups = fx.bus.stats().allocation_groups.load(Ordering::Relaxed) - groups_before;
        assert_eq!(groups, 1, "one group, one unit of work");
        // One commit: its events carry the one version it wrote (event ids are sku:version:n).
        let ids: Vec<String> = fx
            .store
            .outbox("TWIN-LAMP")
            .await
            .unwrap()
            .into_iter()
            .map(|envelope| envelope.id)
            .collect();
        assert_eq!(
            ids,
            ["TWIN-LAMP:3:0", "TWIN-LAMP:3:1"],
            "Allocated, OutOfStock"
        );
        let mut uow = fx.bus.unit_of_work(None);
        let product = uow.get("TWIN-LAMP", &["o2", "o3"]).await.unwrap().unwrap();
        assert!(matches!(
            product.line_status("o2"),
            Some((LineStatus::Waiting { .. }, 10))
        ));
        assert_eq!(product.line_status("o3"), None);
    }

    #[tokio::test]
    async fn a_failing_event_handler_is_logged_and_does_not_stop_the_others() {
        let failing = FakeNotifications {
            fail: true,
            ..Default::default()
        };
        let fx = bootstrap_with(InMemoryStore::new(), EventWiring::in_process(), failing);
        fx.add_batch("b1", "LONELY-STOOL", 2, None).await;
        fx.bus
            .handle(&allocate("o1", "LONELY-STOOL", 1), None)
            .await
            .unwrap();
        // Refused: the stock-out begins; its notification fails, and the command still answers.
        let refused = fx
            .bus
            .handle(&allocate("o2", "LONELY-STOOL", 5), None)
            .await;
        assert_eq!(
            refused,
            Err(ServiceError::OutOfStock("LONELY-STOOL".into()))
        );
        assert_eq!(fx.notifications.sent.lock().unwrap().len(), 1);
        // A shrink deallocates o1; its reallocation runs out of stock and keeps it waiting.
        let result = fx
            .bus
            .handle(&ChangeBatchQuantity::new("b1", 0).unwrap(), None)
            .await;
        assert_eq!(result, Ok(()));
        // New stock: the waiting line is offered and reallocated, after the failed notification.
        fx.add_batch("b2", "LONELY-STOOL", 1, None).await;
        assert_eq!(
            fx.store.allocations_for_order("o1").await.unwrap()[0]
                .batchref
                .as_deref(),
            Some("b2")
        );
        assert_eq!(
            fx.bus.stats().failed_event_handlers.load(Ordering::Relaxed),
            1
        );
    }

    #[tokio::test]
    async fn events_are_handled_in_the_order_they_were_committed() {
        let fx = bootstrap_test_app();
        fx.add_batch("b1", "ORDERED", 3, None).await;
        for order in ["o1", "o2", "o3"] {
            fx.bus
                .handle(&allocate(order, "ORDERED", 1), None)
                .await
                .unwrap();
        }
        fx.bus
            .handle(&ChangeBatchQuantity::new("b1", 0).unwrap(), None)
            .await
            .unwrap();
        // Deallocated greatest order id first; the first reallocation found no stock and began
        // the stock-out (one notification); the others waited too.
        assert_eq!(*fx.notifications.sent.lock().unwrap(), ["ORDERED"]);
        // Two units arrive: offered to the lines that waited longest; these three began waiting
        // together (one commit), so by order id: o1, then o2.
        fx.add_batch("b2", "ORDERED", 2, None).await;
        for (order, batch) in [("o1", Some("b2")), ("o2", Some("b2")), ("o3", None)] {
            let views = fx.store.allocations_for_order(order).await.unwrap();
            assert_eq!(views[0].batchref.as_deref(), batch, "{order}");
        }
    }

    /// A store whose commits always lose the version race.
    #[derive(Default)]
    struct AlwaysConflicting(InMemoryStore);

    impl ProductRepository for AlwaysConflicting {
        crate::delegate_loads!(0);
        async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
            Err(StoreError::VersionConflict {
                sku: writes[0].product.sku().to_owned(),
            })
        }
    }

    #[tokio::test]
    async fn a_version_conflict_is_retried_then_reported_when_attempts_run_out() {
        let fx = bootstrap_with(
            AlwaysConflicting::default(),
            EventWiring::outbox(),
            FakeNotifications::default(),
        );
        let result = fx
            .bus
            .handle(&create_batch("b1", "CONTESTED", 5, None), None)
            .await;
        assert!(
            result
                .as_ref()
                .is_err_and(ServiceError::is_version_conflict),
            "{result:?}"
        );
        assert_eq!(
            fx.bus.stats().conflict_retries.load(Ordering::Relaxed),
            2,
            "3 attempts in all"
        );
    }
}

/// A quantity change larger than one commit, in chunks (a store that moves at most 2 lines a commit).
mod change_batch_quantity_in_chunks {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use allocation::domain::OrderLine;

    use super::*;

    /// After each commit that deallocates lines, reallocates them at once, as another process's
    /// reallocation would between two chunks.
    #[derive(Default)]
    struct ReallocatingBetweenChunks {
        inner: InMemoryStore,
        reallocating: AtomicBool,
        reallocated: Mutex<Vec<(String, Option<String>)>>,
    }

    impl ProductRepository for ReallocatingBetweenChunks {
        crate::delegate_loads!(inner);
        async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
            self.inner.commit(writes).await?;
            if self.reallocating.swap(true, Ordering::SeqCst) {
                return Ok(());
            }
            for envelope in writes.iter().flat_map(|w| w.outbox.iter()) {
                let Event::AllocationRequired(AllocationRequired { orderid, sku, qty }) =
                    &envelope.event
                else {
                    continue;
                };
                let mut product = self.inner.load(sku, &[orderid]).await?.unwrap();
                let loaded = product.version_number();
                let line = OrderLine::parse(orderid, sku, *qty).unwrap();
                let batch = product.allocate(&line).unwrap();
                if batch.is_some() {
                    let write = ProductWrite {
                        product: &product,
                        expected_version: Some(loaded),
                        changes: product.changes(),
                        outbox: &[],
                    };
                    self.inner.commit(&[write]).await?;
                }
                self.reallocated
                    .lock()
                    .unwrap()
                    .push((orderid.to_string(), batch.map(|b| b.to_string())));
            }
            self.reallocating.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn max_lines_per_commit(&self) -> Option<usize> {
            Some(2)
        }
    }

    crate::delegate_views!(ReallocatingBetweenChunks, inner);

    /// Refuses one commit (a version conflict, writing nothing) once armed, `skip` commits later.
    #[derive(Default)]
    struct ConflictOnLaterChunk {
        inner: InMemoryStore,
        /// Commits to let through before the refused one; `usize::MAX`: never refuse.
        skip: AtomicUsize,
    }

    impl ProductRepository for ConflictOnLaterChunk {
        crate::delegate_loads!(inner);
        async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
            let left = self.skip.load(Ordering::SeqCst);
            if left != usize::MAX {
                self.skip.store(left.wrapping_sub(1), Ordering::SeqCst);
                if left == 0 {
                    return Err(StoreError::VersionConflict {
                        sku: writes[0].product.sku().to_owned(),
                    });
                }
            }
            self.inner.commit(writes).await
        }
        fn max_lines_per_commit(&self) -> Option<usize> {
            Some(2)
        }
    }

    crate::delegate_views!(ConflictOnLaterChunk, inner);

    async fn six_lines_on_b_now<S: ProductRepository + AllocationsView>(fx: &Fixture<S>) {
        fx.add_batch("b-now", "SHELF", 6, None).await;
        fx.add_batch("b-later", "SHELF", 10, later()).await;
        for n in 0..6 {
            let batch = fx
                .bus
                .handle(&allocate(&format!("o{n}"), "SHELF", 1), None)
                .await
                .unwrap();
            assert_eq!(batch, "b-now");
        }
    }

    fn later() -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(2027, 3, 1)
    }

    async fn lines_on<S: ProductRepository + AllocationsView>(
        fx: &Fixture<S>,
        batch: &str,
    ) -> usize {
        let mut on = 0;
        for n in 0..6 {
            let views = fx
                .store
                .allocations_for_order(&format!("o{n}"))
                .await
                .unwrap();
            on += views
                .iter()
                .filter(|v| v.batchref.as_deref() == Some(batch))
                .count();
        }
        on
    }

    #[tokio::test]
    async fn a_reallocation_between_chunks_never_takes_back_the_room_a_chunk_freed() {
        let fx = bootstrap_with(
            ReallocatingBetweenChunks::default(),
            EventWiring::outbox(),
            FakeNotifications::default(),
        );
        six_lines_on_b_now(&fx).await;
        let change = ChangeBatchQuantity::new("b-now", 0).unwrap();
        fx.bus.handle(&change, None).await.unwrap();

        let reallocated = fx.store.reallocated.lock().unwrap().clone();
        assert_eq!(reallocated.len(), 6, "{reallocated:?}");
        assert!(
            reallocated
                .iter()
                .all(|(_, batch)| batch.as_deref() == Some("b-later")),
            "no freed line went back to the shrinking batch: {reallocated:?}"
        );
        let product = product(&fx, "SHELF").await;
        let now = product.batch("b-now").unwrap();
        assert_eq!((now.purchased_quantity(), now.allocated_quantity()), (0, 0));
        assert_eq!(lines_on(&fx, "b-later").await, 6);
    }

    #[tokio::test]
    async fn a_conflict_on_a_later_chunk_keeps_the_events_of_the_chunks_committed() {
        let fx = bootstrap_with(
            ConflictOnLaterChunk {
                skip: AtomicUsize::new(usize::MAX),
                ..ConflictOnLaterChunk::default()
            },
            EventWiring::in_process(),
            FakeNotifications::default(),
        );
        six_lines_on_b_now(&fx).await;
        // The first chunk commits, the second is refused: the bus retries the command.
        fx.store.skip.store(1, Ordering::SeqCst);
        let change = ChangeBatchQuantity::new("b-now", 0).unwrap();
        fx.bus.handle(&change, None).await.unwrap();

        assert_eq!(fx.bus.stats().conflict_retries.load(Ordering::Relaxed), 1);
        // Every deallocated line was reallocated in process, the first chunk's two included.
        assert_eq!(lines_on(&fx, "b-later").await, 6);
        assert_eq!(lines_on(&fx, "b-now").await, 0);
    }
}

/// Retries are bounded in time, and throttling is retried like a lost version race.
mod retries_within_a_time_budget {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Each commit takes `commit_time` (virtual time), then is refused as throttled while
    /// `throttled` is above zero (counting down), or forever with `usize::MAX`.
    struct SlowThrottled {
        inner: InMemoryStore,
        commit_time: Duration,
        throttled: AtomicUsize,
        commits: AtomicUsize,
    }

    impl SlowThrottled {
        fn new(commit_time: Duration, throttled: usize) -> Self {
            Self {
                inner: InMemoryStore::new(),
                commit_time,
                throttled: AtomicUsize::new(throttled),
                commits: AtomicUsize::new(0),
            }
        }
    }

    impl ProductRepository for SlowThrottled {
        crate::delegate_loads!(inner);
        async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.commit_time).await;
            let left = self.throttled.load(Ordering::SeqCst);
            if left > 0 {
                if left != usize::MAX {
                    self.throttled.store(left - 1, Ordering::SeqCst);
                }
                return Err(StoreError::Throttled(
                    "ProvisionedThroughputExceeded".into(),
                ));
            }
            self.inner.commit(writes).await
        }
    }

    fn bus_with(store: SlowThrottled, budget: Duration) -> Fixture<SlowThrottled> {
        let store = Arc::new(store);
        let bus = Bootstrap::new(Arc::clone(&store))
            .retry(RetryPolicy {
                max_attempts: 1_000,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(100),
                budget,
            })
            .build();
        Fixture {
            store,
            notifications: Arc::new(FakeNotifications::default()),
            bus,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_commit_is_retried_until_it_goes_through() {
        let fx = bus_with(
            SlowThrottled::new(Duration::from_millis(5), 3),
            Duration::from_secs(2),
        );
        let result = fx
            .bus
            .handle(&create_batch("b1", "BUSY", 5, None), None)
            .await;
        assert_eq!(result, Ok(()));
        assert_eq!(
            fx.store.commits.load(Ordering::SeqCst),
            4,
            "3 refused, then done"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_that_could_not_end_within_the_budget() {
        let budget = Duration::from_millis(300);
        let fx = bus_with(
            SlowThrottled::new(Duration::from_millis(40), usize::MAX),
            budget,
        );
        let started = tokio::time::Instant::now();
        let result = fx
            .bus
            .handle(&create_batch("b1", "BUSY", 5, None), None)
            .await;
        assert!(
            matches!(result, Err(ServiceError::Store(StoreError::Throttled(_)))),
            "{result:?}"
        );
        // Virtual time: exact, whatever the machine does.
        assert!(started.elapsed() <= budget, "{:?}", started.elapsed());
        let attempts = fx.store.commits.load(Ordering::SeqCst);
        assert!(
            (2..=7).contains(&attempts),
            "{attempts} attempts of 40 ms in 300 ms"
        );
    }
}
