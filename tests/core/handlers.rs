//! The handlers through the message bus (book ch. 5-9 `test_handlers`), on the in-memory store.

use allocation::domain::{AllocationRequired, OutOfStock};
use std::sync::Arc;

use crate::fixture::*;
use crate::support::fakes::*;
use crate::support::memory_store::InMemoryStore;
use allocation::domain::{ChangeBatchQuantity, Event, Product};
use allocation::service::handlers::{ChangeBatchQuantityOf, Handler};
use allocation::service::{
    AllocationView, AllocationsView, EventWiring, OutboxAudit, ProductRepository, ServiceError,
    UnitOfWork,
};
use chrono::NaiveDate;

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

        let change = ChangeBatchQuantityOf {
            sku: None,
            cmd: ChangeBatchQuantity::new("batch1", 25).unwrap(),
        };
        change.handle(&mut uow).await.unwrap();

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
