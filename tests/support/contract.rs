//! The store contract: one suite every `Store` must pass unchanged (in-memory, embedded, DynamoDB):
//! what a store must keep, read back, refuse and count. The business rules that hold whatever the
//! store are specified once, on the in-memory store (`tests/core/specifications.rs`).
//!
//! Use it with `contract_suite!(async { Arc::new(MyStore::new(...)) })` in a test module. Each case uses its own SKUs, batch references and order ids, so one store (or one
//! moto table) can serve every case, also concurrently.

use allocation::domain::{Allocated, AllocationRequired, OutOfStock};
use std::sync::Arc;

use allocation::domain::{
    Allocate, Batch, ChangeBatchQuantity, CreateBatch, Event, LineStatus, OrderLine, Product,
};
use allocation::service::{
    Bootstrap, EventWiring, MessageBus, RetryPolicy, ServiceError, Store, StoreError, UnitOfWork,
};
use chrono::NaiveDate;

/// A name unique to this test run, so cases never collide in a shared store.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{n}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

pub fn bus<S: Store>(store: Arc<S>) -> MessageBus<S> {
    // Generous: the racing cases must end by retrying, and moto serializes every request.
    let retry = RetryPolicy {
        max_attempts: 100,
        budget: std::time::Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    Bootstrap::new(store).retry(retry).build()
}

pub fn unit_of_work<S: Store>(store: &Arc<S>, correlation_id: Option<&str>) -> UnitOfWork<S> {
    UnitOfWork::new(Arc::clone(store), EventWiring::outbox(), correlation_id)
}

pub fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

pub async fn create_batch<S: Store>(
    store: &Arc<S>,
    reference: &str,
    sku: &str,
    qty: u32,
    eta: Option<NaiveDate>,
) {
    let cmd = CreateBatch::new(reference, sku, qty, eta).unwrap();
    bus(Arc::clone(store))
        .handle(&cmd, None)
        .await
        .expect("create batch");
}

pub async fn a_committed_product_reads_back_the_same<S: Store>(store: Arc<S>) {
    let sku = unique("RETRO-CLOCK");
    let (b1, b2) = (unique("b1"), unique("b2"));
    let order = unique("o1");
    let mut uow = unit_of_work(&store, Some("corr-1"));
    let product = uow.add(Product::parse(&sku).unwrap());
    product
        .add_batch(Batch::parse(&b1, &sku, 100, None).unwrap())
        .unwrap();
    product
        .add_batch(Batch::parse(&b2, &sku, 50, date(2026, 12, 24)).unwrap())
        .unwrap();
    let line = OrderLine::parse(&order, &sku, 10).unwrap();
    assert_eq!(
        product.allocate(&line).unwrap().as_deref(),
        Some(b1.as_str())
    );
    uow.commit().await.unwrap();

    let mut uow = unit_of_work(&store, None);
    let product = uow
        .get(&sku, &[&order])
        .await
        .unwrap()
        .expect("product is stored");
    assert_eq!(product.version_number(), 3);
    let batches: Vec<_> = product
        .batches()
        .iter()
        .map(|b| {
            (
                b.reference().to_owned(),
                b.purchased_quantity(),
                b.eta(),
                b.available_quantity(),
            )
        })
        .collect();
    assert_eq!(
        batches,
        vec![
            (b1.clone(), 100, None, 90),
            (b2.clone(), 50, date(2026, 12, 24), 50)
        ]
    );
    assert_eq!(
        product
            .allocation_of(&order)
            .map(|b| b.reference().to_owned()),
        Some(b1.clone())
    );
    let by_ref = uow
        .get_by_batchref(&b2)
        .await
        .unwrap()
        .expect("found by batchref");
    assert_eq!(by_ref.sku(), sku);
    assert!(uow
        .get_by_batchref(&unique("nope"))
        .await
        .unwrap()
        .is_none());
    assert!(uow.get(&unique("NO-SKU"), &[]).await.unwrap().is_none());

    let views = store.allocations_for_order(&order).await.unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(
        (views[0].sku.as_str(), views[0].batchref.as_deref()),
        (sku.as_str(), Some(b1.as_str()))
    );
}

/// What the business rules (`tests/core/specifications.rs`) need a store to keep besides batches
/// and allocated lines: the running stock-out episode (a refusal during it records nothing) and a
/// waiting line with the version it waits since (new stock is offered to the oldest first).
pub async fn a_stock_out_episode_and_a_waiting_line_read_back_the_same<S: Store>(store: Arc<S>) {
    let sku = unique("EPISODE");
    let (b1, o1, o2) = (unique("b1"), unique("o1"), unique("o2"));
    create_batch(&store, &b1, &sku, 5, None).await;
    let bus = bus(Arc::clone(&store));
    let allocate =
        |orderid: &String, qty| Allocate::new(orderid.clone(), sku.clone(), qty).unwrap();
    assert_eq!(bus.handle(&allocate(&o1, 5), None).await.unwrap(), b1);
    let shrink = ChangeBatchQuantity::new(b1.clone(), 0).unwrap();
    bus.handle(&shrink, None).await.unwrap();
    let refused = bus.handle(&allocate(&o2, 1), None).await;
    assert_eq!(refused, Err(ServiceError::OutOfStock(sku.clone())));

    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[&o1, &o2]).await.unwrap().unwrap();
    let refused_at = product.version_number();
    assert_eq!(
        product.out_of_stock_since(),
        Some(refused_at),
        "the episode"
    );
    assert_eq!(
        product.line_status(&o1),
        Some((
            LineStatus::Waiting {
                since: refused_at - 1
            },
            5
        )),
        "waiting since the shrink"
    );
    assert_eq!(
        product.line_status(&o2),
        None,
        "a refused line is not stored"
    );
}

pub async fn uncommitted_work_is_rolled_back_by_default<S: Store>(store: Arc<S>) {
    let sku = unique("SOFA");
    let batch = unique("b");
    {
        let mut uow = unit_of_work(&store, None);
        let product = uow.add(Product::parse(&sku).unwrap());
        product
            .add_batch(Batch::parse(&batch, &sku, 10, None).unwrap())
            .unwrap();
        // dropped without commit
    }
    let mut uow = unit_of_work(&store, None);
    assert!(uow.get(&sku, &[]).await.unwrap().is_none());
    assert!(store.sku_of_batch(&batch).await.unwrap().is_none());
    assert!(store.outbox(&sku).await.unwrap().is_empty());
}

pub async fn work_is_rolled_back_when_the_handler_fails<S: Store>(store: Arc<S>) {
    let sku = unique("LAMP");
    let batch = unique("b");
    create_batch(&store, &batch, &sku, 10, None).await;
    // The first line allocates in memory, the second is invalid: the handler fails before commit.
    let mut uow = unit_of_work(&store, None);
    let (first, second) = (unique("o"), unique("o"));
    let failure: Result<(), ServiceError> = async {
        let product = uow.get(&sku, &[&first, &second]).await?.expect("stored");
        product.allocate(&OrderLine::parse(&first, &sku, 5)?)?;
        product.allocate(&OrderLine::parse(&second, &sku, 0)?)?;
        uow.commit().await?;
        Ok(())
    }
    .await;
    assert!(failure.is_err());
    drop(uow);
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[]).await.unwrap().unwrap();
    assert_eq!(product.batch(&batch).unwrap().available_quantity(), 10);
    assert_eq!(product.version_number(), 1);
}

pub async fn a_stale_commit_is_a_version_conflict<S: Store>(store: Arc<S>) {
    let sku = unique("TABLE");
    let batch = unique("b");
    create_batch(&store, &batch, &sku, 10, None).await;
    let (o1, o2) = (unique("o1"), unique("o2"));
    let mut first = unit_of_work(&store, None);
    let mut second = unit_of_work(&store, None);
    first
        .get(&sku, &[&o1])
        .await
        .unwrap()
        .unwrap()
        .allocate(&OrderLine::parse(&o1, &sku, 4).unwrap())
        .unwrap();
    second
        .get(&sku, &[&o2])
        .await
        .unwrap()
        .unwrap()
        .allocate(&OrderLine::parse(&o2, &sku, 4).unwrap())
        .unwrap();
    first.commit().await.unwrap();
    let conflict = second.commit().await;
    assert_eq!(
        conflict,
        Err(StoreError::VersionConflict { sku: sku.clone() })
    );

    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[&o1, &o2]).await.unwrap().unwrap();
    assert_eq!(product.version_number(), 2);
    assert!(product.allocation_of(&o1).is_some());
    assert!(
        product.allocation_of(&o2).is_none(),
        "the losing commit wrote nothing"
    );
    assert!(store.allocations_for_order(&o2).await.unwrap().is_empty());
    let outbox = store.outbox(&sku).await.unwrap();
    assert_eq!(
        outbox.len(),
        1,
        "only the winner's event is in the outbox: {outbox:?}"
    );
}

pub async fn two_new_products_with_one_sku_conflict<S: Store>(store: Arc<S>) {
    let sku = unique("CHAIR");
    let mut first = unit_of_work(&store, None);
    let mut second = unit_of_work(&store, None);
    first
        .add(Product::parse(&sku).unwrap())
        .add_batch(Batch::parse(unique("b"), &sku, 1, None).unwrap())
        .unwrap();
    second
        .add(Product::parse(&sku).unwrap())
        .add_batch(Batch::parse(unique("b"), &sku, 2, None).unwrap())
        .unwrap();
    first.commit().await.unwrap();
    assert_eq!(
        second.commit().await,
        Err(StoreError::VersionConflict { sku })
    );
}

pub async fn batch_references_are_unique_across_skus<S: Store>(store: Arc<S>) {
    let batch = unique("shared-ref");
    let (sku1, sku2) = (unique("MUG"), unique("CUP"));
    create_batch(&store, &batch, &sku1, 10, None).await;
    let mut uow = unit_of_work(&store, None);
    uow.add(Product::parse(&sku2).unwrap())
        .add_batch(Batch::parse(&batch, &sku2, 5, None).unwrap())
        .unwrap();
    assert_eq!(
        uow.commit().await,
        Err(StoreError::DuplicateBatchReference(batch.clone()))
    );
    let mut uow = unit_of_work(&store, None);
    assert!(
        uow.get(&sku2, &[]).await.unwrap().is_none(),
        "nothing of the failed commit is stored"
    );
    assert_eq!(store.sku_of_batch(&batch).await.unwrap(), Some(sku1));
}

/// The same new batch asked for by two requests at once (a client retrying before its first answer
/// came back) answers both as created, once; another batch under the same reference at once with
/// them is a conflict naming the difference. Whatever commits first.
pub async fn concurrent_identical_batches_are_created_once_and_a_different_one_refused<S: Store>(
    store: Arc<S>,
) {
    let (batch, sku, other_sku) = (unique("b"), unique("RUG"), unique("MAT"));
    let bus = Arc::new(bus(Arc::clone(&store)));
    let tasks: Vec<_> = [&sku, &sku, &other_sku]
        .into_iter()
        .map(|sku| {
            let (bus, cmd) = (
                Arc::clone(&bus),
                CreateBatch::new(batch.clone(), sku.clone(), 10, None).unwrap(),
            );
            tokio::spawn(async move { bus.handle(&cmd, None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task ran"));
    }
    let created = answers.iter().filter(|a| a.is_ok()).count();
    let refused: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().err())
        .map(|e| {
            assert!(matches!(e, ServiceError::Conflict(_)), "{e:?}");
            e.to_string()
        })
        .collect();
    // Either SKU may win the reference; the two identical requests agree with each other.
    let winner = store.sku_of_batch(&batch).await.unwrap().expect("created");
    let loser = if winner == sku { &other_sku } else { &sku };
    assert_eq!(created, if winner == sku { 2 } else { 1 }, "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|m| m == &format!("batch {batch} already exists with sku {winner}, not {loser}")),
        "{refused:?}"
    );
    let mut uow = unit_of_work(&store, None);
    assert!(uow.get(loser, &[]).await.unwrap().is_none());
    let product = uow.get(&winner, &[]).await.unwrap().unwrap();
    assert_eq!(product.batches().len(), 1);
}

pub async fn the_outbox_is_written_with_the_state_it_describes<S: Store>(store: Arc<S>) {
    let sku = unique("RUG");
    let batch = unique("b");
    create_batch(&store, &batch, &sku, 3, None).await;
    let bus = bus(Arc::clone(&store));
    let (o1, o2) = (unique("o"), unique("o"));
    let batchref = bus
        .handle(
            &Allocate::new(o1.clone(), sku.clone(), 3).unwrap(),
            Some("req-7"),
        )
        .await
        .unwrap();
    assert_eq!(batchref, batch);
    let out = bus
        .handle(&Allocate::new(o2.clone(), sku.clone(), 1).unwrap(), None)
        .await;
    assert_eq!(out, Err(ServiceError::OutOfStock(sku.clone())));

    let outbox = store.outbox(&sku).await.unwrap();
    let kinds: Vec<_> = outbox.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(kinds, ["Allocated", "OutOfStock"]);
    assert_eq!(outbox[0].id, format!("{sku}:2:0"));
    assert_eq!(outbox[0].correlation_id.as_deref(), Some("req-7"));
    assert_eq!(
        outbox[0].event,
        Event::Allocated(Allocated {
            orderid: o1.as_str().into(),
            sku: sku.as_str().into(),
            qty: 3,
            batchref: batch.as_str().into()
        })
    );
    assert_eq!(
        outbox[1].event,
        Event::OutOfStock(OutOfStock {
            sku: sku.as_str().into(),
            orderid: Some(o2.as_str().into()),
            qty: Some(1)
        })
    );
    // The first refusal opens the stock-out episode: a new version, 3, recorded on the product.
    assert_eq!(outbox[1].id, format!("{sku}:3:0"));
    assert!(outbox[1].occurred_at.is_some());
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[]).await.unwrap().unwrap();
    assert_eq!(product.version_number(), 3);
    assert_eq!(product.out_of_stock_since(), Some(3));
}

pub async fn an_idempotent_allocation_writes_nothing<S: Store>(store: Arc<S>) {
    let sku = unique("DESK");
    let batch = unique("b");
    create_batch(&store, &batch, &sku, 10, None).await;
    let bus = bus(Arc::clone(&store));
    let cmd = Allocate::new(unique("o"), sku.clone(), 2).unwrap();
    assert_eq!(bus.handle(&cmd, None).await.unwrap(), batch);
    assert_eq!(bus.handle(&cmd, None).await.unwrap(), batch);
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[]).await.unwrap().unwrap();
    assert_eq!(product.version_number(), 2);
    assert_eq!(product.batch(&batch).unwrap().available_quantity(), 8);
    assert_eq!(store.outbox(&sku).await.unwrap().len(), 1);
}

pub async fn a_quantity_change_persists_the_deallocations<S: Store>(store: Arc<S>) {
    let sku = unique("BENCH");
    let batch = unique("b");
    create_batch(&store, &batch, &sku, 10, None).await;
    let bus = bus(Arc::clone(&store));
    let orders: Vec<String> = (0..4).map(|_| unique("o")).collect();
    for order in &orders {
        bus.handle(&Allocate::new(order.clone(), sku.clone(), 2).unwrap(), None)
            .await
            .unwrap();
    }
    bus.handle(&ChangeBatchQuantity::new(batch.clone(), 5).unwrap(), None)
        .await
        .unwrap();

    let mut uow = unit_of_work(&store, None);
    let ids: Vec<&str> = orders.iter().map(String::as_str).collect();
    let product = uow.get(&sku, &ids).await.unwrap().unwrap();
    let stored = product.batch(&batch).unwrap();
    assert_eq!(stored.purchased_quantity(), 5);
    assert_eq!(stored.allocated_quantity(), 4);
    let still: Vec<_> = orders
        .iter()
        .filter(|o| product.allocation_of(o).is_some())
        .collect();
    assert_eq!(still.len(), 2);
    for order in orders.iter().filter(|o| product.allocation_of(o).is_none()) {
        let views = store.allocations_for_order(order).await.unwrap();
        assert_eq!(views.len(), 1, "a deallocated line waits for stock");
        assert_eq!(views[0].batchref, None);
    }
    let required = store
        .outbox(&sku)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.type_name() == "AllocationRequired")
        .count();
    assert_eq!(required, 2);
}

/// A change that deallocates more lines than one commit may hold still ends consistent: every line
/// deallocated exactly once, the quantity set, one `AllocationRequired` per line.
pub async fn a_large_deallocation_ends_consistent<S: Store>(store: Arc<S>) {
    let sku = unique("CRATE");
    let batch = unique("b");
    let lines = 120;
    create_batch(&store, &batch, &sku, lines, None).await;
    let bus = bus(Arc::clone(&store));
    for _ in 0..lines {
        bus.handle(&Allocate::new(unique("o"), sku.clone(), 1).unwrap(), None)
            .await
            .unwrap();
    }
    bus.handle(&ChangeBatchQuantity::new(batch.clone(), 0).unwrap(), None)
        .await
        .unwrap();
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[]).await.unwrap().unwrap();
    let stored = product.batch(&batch).unwrap();
    assert_eq!(
        (stored.purchased_quantity(), stored.allocated_quantity()),
        (0, 0)
    );
    let outbox = store.outbox(&sku).await.unwrap();
    let required = outbox
        .iter()
        .filter(|e| e.event.type_name() == "AllocationRequired")
        .count();
    assert_eq!(required, lines as usize);
    let mut ids: Vec<_> = outbox.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), outbox.len(), "event ids are unique");
}

/// Many allocators on one SKU at once: no oversell, and exactly one version step per successful commit.
pub async fn concurrent_allocators_never_oversell<S: Store>(store: Arc<S>) {
    let sku = unique("HOT-SKU");
    let batch = unique("b");
    let stock = 10;
    let allocators = 24;
    create_batch(&store, &batch, &sku, stock, None).await;
    let bus = Arc::new(bus(Arc::clone(&store)));
    let tasks: Vec<_> = (0..allocators)
        .map(|_| {
            let (bus, sku) = (Arc::clone(&bus), sku.clone());
            tokio::spawn(async move {
                bus.handle(&Allocate::new(unique("o"), sku, 1).unwrap(), None)
                    .await
            })
        })
        .collect();
    let mut allocated = 0;
    let mut out_of_stock = 0;
    for task in tasks {
        match task.await.expect("task ran") {
            Ok(_) => allocated += 1,
            Err(ServiceError::OutOfStock(_)) => out_of_stock += 1,
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!((allocated, out_of_stock), (stock, allocators - stock));
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[]).await.unwrap().unwrap();
    assert_eq!(
        product.batch(&batch).unwrap().allocated_quantity(),
        u64::from(stock)
    );
    assert_eq!(product.batch(&batch).unwrap().available_quantity(), 0);
    // One version for the batch, one per allocation, one for the stock-out episode (its first
    // refusal); the other refusals make none.
    assert_eq!(product.version_number(), 2 + u64::from(stock));
    assert_eq!(
        store.outbox(&sku).await.unwrap().len(),
        stock as usize + 1,
        "an Allocated per line, one OutOfStock"
    );
}

/// Records a store reads for one allocation through the bus.
async fn records_read_by_allocation<S: Store>(store: &Arc<S>, sku: &str) -> u64 {
    let before = store.records_read();
    bus(Arc::clone(store))
        .handle(&Allocate::new(unique("probe"), sku, 1).unwrap(), None)
        .await
        .expect("allocated");
    store.records_read() - before
}

/// Cost does not grow with history: an allocation on a SKU with many earlier lines reads exactly as
/// many records as on a SKU with none (the product, its batches, and the order's own line if any).
pub async fn an_allocation_reads_the_same_records_whatever_the_history<S: Store>(store: Arc<S>) {
    let (fresh, busy) = (unique("FRESH"), unique("BUSY"));
    create_batch(&store, &unique("b"), &fresh, 1_000, None).await;
    create_batch(&store, &unique("b"), &busy, 1_000, None).await;
    create_batch(&store, &unique("b"), &busy, 1_000, date(2027, 1, 1)).await;
    create_batch(&store, &unique("b"), &fresh, 1_000, date(2027, 1, 1)).await;
    let bus = bus(Arc::clone(&store));
    for _ in 0..200 {
        let cmd = Allocate::new(unique("earlier"), busy.clone(), 1).unwrap();
        bus.handle(&cmd, None).await.unwrap();
    }
    let on_fresh = records_read_by_allocation(&store, &fresh).await;
    let on_busy = records_read_by_allocation(&store, &busy).await;
    assert_eq!(on_fresh, on_busy, "reads must not grow with the lines");
    assert_eq!(on_busy, 3, "the product record and two batch records");
}

/// A shrink that frees k lines reads about k lines (at most a small page more), not the batch.
pub async fn a_shrink_reads_about_the_lines_it_frees<S: Store>(store: Arc<S>) {
    let sku = unique("SHRINK");
    let batch = unique("b");
    let lines = 150u32;
    create_batch(&store, &batch, &sku, lines, None).await;
    let bus = bus(Arc::clone(&store));
    let mut orders = Vec::new();
    for _ in 0..lines {
        let orderid = unique("o");
        let cmd = Allocate::new(orderid.clone(), sku.clone(), 1).unwrap();
        bus.handle(&cmd, None).await.unwrap();
        orders.push(orderid);
    }
    for freed in [3u32, 10] {
        let before = store.records_read();
        let qty = lines - freed - if freed == 10 { 3 } else { 0 };
        let cmd = ChangeBatchQuantity::new(batch.clone(), qty).unwrap();
        bus.handle(&cmd, None).await.unwrap();
        let read = store.records_read() - before;
        // The product and its batch, then the k lines (a page may read a few past them).
        assert!(
            read >= 2 + u64::from(freed) && read <= 2 + u64::from(freed) + 8,
            "freeing {freed} lines read {read} records"
        );
    }
    // The lines deallocated are the greatest order ids, as in every process.
    orders.sort();
    let ids: Vec<&str> = orders.iter().map(String::as_str).collect();
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &ids).await.unwrap().unwrap();
    let gone: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|o| product.allocation_of(o).is_none())
        .collect();
    assert_eq!(gone, ids[ids.len() - 13..].to_vec());
}

/// A refusal (out of stock) changes no version, so an allocation loaded on the same version still
/// commits.
pub async fn a_refusal_during_a_stock_out_does_not_invalidate_a_concurrent_allocation<S: Store>(
    store: Arc<S>,
) {
    let sku = unique("SCARCE");
    create_batch(&store, &unique("b"), &sku, 5, None).await;
    let (first, small, large) = (unique("o"), unique("o"), unique("o"));
    let refused = bus(Arc::clone(&store))
        .handle(&Allocate::new(first, sku.clone(), 50).unwrap(), None)
        .await;
    assert_eq!(refused, Err(ServiceError::OutOfStock(sku.clone())));
    let mut allocating = unit_of_work(&store, None);
    let mut refusing = unit_of_work(&store, None);
    let product = allocating.get(&sku, &[&small]).await.unwrap().unwrap();
    assert!(product
        .allocate(&OrderLine::parse(&small, &sku, 2).unwrap())
        .unwrap()
        .is_some());
    let product = refusing.get(&sku, &[&large]).await.unwrap().unwrap();
    assert_eq!(
        product
            .allocate(&OrderLine::parse(&large, &sku, 50).unwrap())
            .unwrap(),
        None
    );
    refusing.commit().await.unwrap();
    allocating.commit().await.unwrap();
    // The first refusal opened the stock-out episode (version 2, its OutOfStock); the second wrote
    // nothing, so the allocation made version 3.
    let ids: Vec<_> = store
        .outbox(&sku)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [format!("{sku}:2:0"), format!("{sku}:3:0")]);
}

/// A refusal is recorded only on the state it was decided on.
pub async fn a_refusal_on_a_state_that_moved_is_a_version_conflict<S: Store>(store: Arc<S>) {
    let sku = unique("MOVING");
    create_batch(&store, &unique("b"), &sku, 5, None).await;
    let (small, large) = (unique("o"), unique("o"));
    let mut refusing = unit_of_work(&store, None);
    let product = refusing.get(&sku, &[&large]).await.unwrap().unwrap();
    assert_eq!(
        product
            .allocate(&OrderLine::parse(&large, &sku, 50).unwrap())
            .unwrap(),
        None
    );
    bus(Arc::clone(&store))
        .handle(&Allocate::new(small, sku.clone(), 2).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        refusing.commit().await,
        Err(StoreError::VersionConflict { sku: sku.clone() })
    );
    assert_eq!(
        store.outbox(&sku).await.unwrap().len(),
        1,
        "only the allocation"
    );
}

/// The same order allocated by many racing units of work (no queue): one line, every caller told the
/// same batch, one `Allocated` event.
pub async fn concurrent_allocations_of_one_order_end_with_one_line<S: Store>(store: Arc<S>) {
    let sku = unique("TWICE");
    let batch = unique("b");
    create_batch(&store, &batch, &sku, 100, None).await;
    let order = unique("o");
    let bus = bus(Arc::clone(&store));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (bus, order, sku) = (bus.clone(), order.clone(), sku.clone());
            tokio::spawn(async move {
                let cmd = Allocate::new(order, sku, 5).unwrap();
                bus.handle(&cmd, None).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task ran").unwrap(), batch);
    }
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[&order]).await.unwrap().unwrap();
    assert_eq!(product.batch(&batch).unwrap().allocated_quantity(), 5);
    assert_eq!(store.allocations_for_order(&order).await.unwrap().len(), 1);
    assert_eq!(store.outbox(&sku).await.unwrap().len(), 1);
}

/// A line a shrinking batch gives up, that no batch can take, waits for stock (a back-order): the
/// read model shows it without a batch, redelivering its `AllocationRequired` changes nothing, and
/// new stock is offered to the waiting lines oldest first, each allocated by its own reallocation.
pub async fn a_line_a_shrink_gives_up_waits_for_stock<S: Store>(store: Arc<S>) {
    let sku = unique("BACKORDER");
    let (b1, b2) = (unique("b1"), unique("b2"));
    let (o1, o2, o3) = (unique("o1"), unique("o2"), unique("o3"));
    create_batch(&store, &b1, &sku, 10, None).await;
    let bus = bus(Arc::clone(&store));
    for (orderid, qty) in [(&o1, 6), (&o2, 4)] {
        let cmd = Allocate::new(orderid.clone(), sku.clone(), qty).unwrap();
        assert_eq!(bus.handle(&cmd, None).await.unwrap(), b1);
    }
    let shrink = ChangeBatchQuantity::new(b1.clone(), 0).unwrap();
    bus.handle(&shrink, None).await.unwrap();
    let waiting = |orderid: &String| {
        let (store, orderid, sku) = (Arc::clone(&store), orderid.clone(), sku.clone());
        async move {
            let views = store.allocations_for_order(&orderid).await.unwrap();
            views.len() == 1 && views[0].sku == sku && views[0].batchref.is_none()
        }
    };
    assert!(waiting(&o1).await && waiting(&o2).await, "both lines wait");

    // Their reallocations find no stock: they keep waiting, the episode's one OutOfStock is
    // recorded; delivered again (at least once), they change nothing.
    let required: Vec<_> = store
        .outbox(&sku)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.type_name() == "AllocationRequired")
        .collect();
    assert_eq!(required.len(), 2);
    for _ in 0..2 {
        for envelope in &required {
            bus.handle(envelope, None).await.unwrap();
        }
    }
    let outbox = store.outbox(&sku).await.unwrap();
    let types: Vec<_> = outbox.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(
        types,
        [
            "Allocated",
            "Allocated",
            "AllocationRequired",
            "AllocationRequired",
            "OutOfStock"
        ]
    );
    assert!(waiting(&o1).await && waiting(&o2).await);

    // A client's allocation that finds no stock is still refused and stores nothing.
    let refused = bus
        .handle(&Allocate::new(o3.clone(), sku.clone(), 1).unwrap(), None)
        .await;
    assert_eq!(refused, Err(ServiceError::OutOfStock(sku.clone())));
    assert!(store.allocations_for_order(&o3).await.unwrap().is_empty());

    // 7 units arrive: the oldest waiting line (o1, 6) is offered; o2 (4) no longer fits and waits.
    create_batch(&store, &b2, &sku, 7, None).await;
    let offered: Vec<_> = store.outbox(&sku).await.unwrap()[outbox.len()..].to_vec();
    assert_eq!(
        offered.iter().map(|e| &e.event).collect::<Vec<_>>(),
        [&Event::AllocationRequired(AllocationRequired {
            orderid: o1.as_str().into(),
            sku: sku.as_str().into(),
            qty: 6,
        })]
    );
    bus.handle(&offered[0], None).await.unwrap();
    bus.handle(&offered[0], None).await.unwrap();
    let views = store.allocations_for_order(&o1).await.unwrap();
    assert_eq!(views[0].batchref.as_deref(), Some(b2.as_str()));
    assert!(waiting(&o2).await);

    // Raising b2 by 3 offers o2, which then takes the room.
    bus.handle(&ChangeBatchQuantity::new(b2.clone(), 10).unwrap(), None)
        .await
        .unwrap();
    let last = store.outbox(&sku).await.unwrap().pop().unwrap();
    bus.handle(&last, None).await.unwrap();
    let views = store.allocations_for_order(&o2).await.unwrap();
    assert_eq!(views[0].batchref.as_deref(), Some(b2.as_str()));
    let mut uow = unit_of_work(&store, None);
    let product = uow.get(&sku, &[]).await.unwrap().unwrap();
    assert_eq!(product.batch(&b2).unwrap().allocated_quantity(), 10);
}

/// Generates one `#[tokio::test]` per contract case, each with a store from `$make` (an async expression
/// giving an `Arc<impl Store>`).
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::contract_suite!(@cases $make;
            a_committed_product_reads_back_the_same,
            a_stock_out_episode_and_a_waiting_line_read_back_the_same,
            uncommitted_work_is_rolled_back_by_default,
            work_is_rolled_back_when_the_handler_fails,
            a_stale_commit_is_a_version_conflict,
            two_new_products_with_one_sku_conflict,
            batch_references_are_unique_across_skus,
            the_outbox_is_written_with_the_state_it_describes,
            an_idempotent_allocation_writes_nothing,
            a_quantity_change_persists_the_deallocations,
            a_large_deallocation_ends_consistent,
            concurrent_allocators_never_oversell,
            an_allocation_reads_the_same_records_whatever_the_history,
            a_shrink_reads_about_the_lines_it_frees,
            a_refusal_during_a_stock_out_does_not_invalidate_a_concurrent_allocation,
            a_refusal_on_a_state_that_moved_is_a_version_conflict,
            concurrent_allocations_of_one_order_end_with_one_line,
            a_line_a_shrink_gives_up_waits_for_stock,
            concurrent_identical_batches_are_created_once_and_a_different_one_refused,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $make.await;
                $crate::support::contract::$case(store).await;
            }
        )+
    };
}
