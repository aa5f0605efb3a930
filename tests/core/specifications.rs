//! Business specifications that hold whatever the store: a hot SKU's allocations applied together,
//! one `OutOfStock` per stock-out episode, every event safe to deliver twice. They run once, on the
//! in-memory store; what they need a store to keep (the episode, waiting lines, the outbox) is in
//! the store contract every store passes (`tests/support/contract.rs`).

use std::sync::Arc;

use crate::support::contract::{bus, create_batch, date, unique, unit_of_work};
use crate::support::memory_store::InMemoryStore;
use allocation::domain::{Allocate, Allocated, ChangeBatchQuantity, Event, OutOfStock};
use allocation::service::{AllocationsView, OutboxAudit, ServiceError};

/// Allocations of one SKU sent at once through the product's queue never race: each gets its own
/// answer, nothing is oversold, and there are fewer commits than allocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allocations_queued_on_one_product_are_applied_together() {
    let store = Arc::new(InMemoryStore::new());
    let sku = unique("QUEUED");
    let batch = unique("b");
    create_batch(&store, &batch, &sku, 30, None).await;
    let bus = bus(Arc::clone(&store));
    let calls: Vec<_> = (0..40)
        .map(|n| {
            let (bus, sku) = (bus.clone(), sku.clone());
            tokio::spawn(async move {
                let cmd = Allocate::new(format!("q-{n:02}"), sku, 1).unwrap();
                bus.handle(&cmd, Some(&format!("req-{n}"))).await
            })
        })
        .collect();
    let mut allocated = 0;
    for call in calls {
        match call.await.expect("task ran") {
            Ok(reference) => {
                assert_eq!(reference, batch);
                allocated += 1;
            }
            Err(ServiceError::OutOfStock(_)) => {}
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!(allocated, 30);
    assert_eq!(
        bus.stats()
            .conflict_retries
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let groups = bus
        .stats()
        .allocation_groups
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(groups < 40, "{groups} groups for 40 allocations");
    let outbox = store.outbox(&sku).await.unwrap();
    assert_eq!(
        outbox.len(),
        31,
        "30 Allocated, and the OutOfStock of the first refusal"
    );
    for envelope in &outbox {
        let (Event::Allocated(Allocated { orderid, .. })
        | Event::OutOfStock(OutOfStock {
            orderid: Some(orderid),
            ..
        })) = &envelope.event
        else {
            panic!("unexpected event {envelope:?}");
        };
        let n = orderid.trim_start_matches("q-").parse::<u32>().unwrap();
        assert_eq!(
            envelope.correlation_id,
            Some(format!("req-{n}")),
            "each caller's id"
        );
    }
}

/// A client retrying a refused allocation (409) ten times, and other orders turned away, record one
/// `OutOfStock` (one email): the stock-out episode's. Adding stock ends the episode; the next
/// refusal begins another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stock_out_episode_records_one_out_of_stock() {
    let store = Arc::new(InMemoryStore::new());
    let sku = unique("SCARCE");
    create_batch(&store, &unique("b"), &sku, 1, None).await;
    let bus = bus(Arc::clone(&store));
    let refuse = |orderid: String| {
        let (bus, sku) = (bus.clone(), sku.clone());
        async move {
            let cmd = Allocate::new(orderid, sku.clone(), 5).unwrap();
            let answer = bus.handle(&cmd, None).await;
            assert_eq!(answer, Err(ServiceError::OutOfStock(sku)));
        }
    };
    let retried = unique("o");
    for _ in 0..10 {
        refuse(retried.clone()).await;
    }
    for _ in 0..3 {
        refuse(unique("o")).await;
    }
    let outbox = store.outbox(&sku).await.unwrap();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].id, format!("{sku}:2:0"));
    assert_eq!(
        outbox[0].event,
        Event::OutOfStock(OutOfStock {
            sku: sku.as_str().into(),
            orderid: Some(retried.as_str().into()),
            qty: Some(5),
        })
    );
    assert!(
        store
            .allocations_for_order(&retried)
            .await
            .unwrap()
            .is_empty(),
        "a refused request stores no line"
    );

    create_batch(&store, &unique("b"), &sku, 2, None).await;
    refuse(unique("o")).await;
    refuse(unique("o")).await;
    let outbox = store.outbox(&sku).await.unwrap();
    let types: Vec<_> = outbox.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(
        types,
        ["OutOfStock", "OutOfStock"],
        "a new episode, one email"
    );
}

/// Delivery is at least once: every event of a history (Allocated, AllocationRequired, OutOfStock),
/// delivered again and replayed later in any order, changes nothing: no new version, no new event,
/// every line where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivering_and_replaying_every_event_changes_nothing_twice() {
    let store = Arc::new(InMemoryStore::new());
    let sku = unique("REPLAY");
    let (b1, b2) = (unique("b1"), unique("b2"));
    let (o1, o2, o3) = (unique("o1"), unique("o2"), unique("o3"));
    create_batch(&store, &b1, &sku, 10, None).await;
    create_batch(&store, &b2, &sku, 4, date(2031, 1, 1)).await;
    let bus = bus(Arc::clone(&store));
    for (orderid, qty) in [(&o1, 6), (&o2, 4), (&o3, 20)] {
        let cmd = Allocate::new(orderid.clone(), sku.clone(), qty).unwrap();
        let _ = bus.handle(&cmd, None).await;
    }
    let shrink = ChangeBatchQuantity::new(b1.clone(), 6).unwrap();
    bus.handle(&shrink, None).await.unwrap();
    // Each event delivered once, as the queues would.
    for envelope in store.outbox(&sku).await.unwrap() {
        bus.handle(&envelope, None).await.unwrap();
    }
    let history = store.outbox(&sku).await.unwrap();
    let types: Vec<_> = history.iter().map(|e| e.event.type_name()).collect();
    assert!(
        ["Allocated", "AllocationRequired", "OutOfStock"]
            .iter()
            .all(|t| types.contains(t)),
        "{types:?}"
    );
    let state = |store: Arc<InMemoryStore>| {
        let (sku, orders) = (sku.clone(), [o1.clone(), o2.clone(), o3.clone()]);
        async move {
            let mut uow = unit_of_work(&store, None);
            let ids: Vec<&str> = orders.iter().map(String::as_str).collect();
            let product = uow.get(&sku, &ids).await.unwrap().unwrap();
            let lines: Vec<_> = orders
                .iter()
                .map(|o| {
                    product
                        .line_status(o)
                        .map(|(status, qty)| (format!("{status:?}"), qty))
                })
                .collect();
            (product.version_number(), lines)
        }
    };
    let before = state(Arc::clone(&store)).await;
    // Redelivered at once, then replayed in reverse order.
    for envelope in history.iter().chain(history.iter().rev()) {
        bus.handle(envelope, None).await.unwrap();
    }
    assert_eq!(state(Arc::clone(&store)).await, before);
    assert_eq!(store.outbox(&sku).await.unwrap(), history, "no new event");
}
