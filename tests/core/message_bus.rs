//! The message bus itself: one unit of work per product's group, events after commits, retries of
//! version conflicts and throttling within a time budget, chunked quantity changes; on the in-memory
//! store and its faulty wrappers (`support::fakes`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::fixture::*;
use crate::support::fakes::*;
use crate::support::memory_store::InMemoryStore;
use allocation::domain::{ChangeBatchQuantity, LineStatus, Reallocate};
use allocation::service::{
    AllocationsView, Bootstrap, EventWiring, OutboxAudit, ProductRepository, RetryPolicy,
    ServiceError, StoreError,
};
use chrono::NaiveDate;

/// Groups, events after their commits, version conflicts.
mod handling {
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
    use std::sync::atomic::AtomicUsize;

    use super::*;

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

    use super::*;

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
