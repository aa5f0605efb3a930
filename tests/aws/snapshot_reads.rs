//! Every load is a snapshot, on DynamoDB as it really behaves. The store reads the product item (its
//! batches inside) and the order lines in separate requests, which DynamoDB does not isolate from
//! each other, and reads a batch's lines on a global index, which lags behind the table. The
//! interposer between the SDK and DynamoDB Local injects both: a product read held back until a
//! concurrent commit has landed (its line read went before), and an index answered from a snapshot
//! taken before the last commits. A commit decided on such a torn load is refused and retried on
//! fresh state, never applied (`docs/storage.md`, "Every load a snapshot").

use std::sync::Arc;
use std::time::Duration;

use crate::support::contract::unique;
use crate::support::dynamodb_local::dynamodb_local;
use crate::support::interposer::{item_json, Interposer};
use allocation::adapters::dynamodb::keys::{batch_lines_pk, LINES_INDEX, LINES_PK, SK};
use allocation::adapters::dynamodb::DynamoDbStore;
use allocation::domain::{Allocate, ChangeBatchQuantity, CreateBatch, LineStatus};
use allocation::service::{
    deployed_app, AllocationView, AllocationsView, OutboxAudit, ProductRepository, ServiceError,
};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

/// A table with a plain store, and an interposer with a store whose requests pass through it.
struct Table {
    plain: Arc<DynamoDbStore>,
    interposer: Arc<Interposer>,
    torn: Arc<DynamoDbStore>,
    client: aws_sdk_dynamodb::Client,
    name: String,
}

async fn table() -> Table {
    let local = dynamodb_local().await;
    let name = local.create_table("snapshot").await;
    let interposer = Interposer::new();
    Table {
        plain: Arc::new(DynamoDbStore::new(local.client(), &name)),
        torn: Arc::new(DynamoDbStore::new(local.client_through(&interposer), &name)),
        interposer,
        client: local.client(),
        name,
    }
}

async fn add_batch(store: &Arc<DynamoDbStore>, reference: &str, sku: &str, qty: u32, late: bool) {
    let eta = late.then(|| chrono::NaiveDate::from_ymd_opt(2027, 1, 15).unwrap());
    let command = CreateBatch::new(reference, sku, qty, eta).unwrap();
    deployed_app(Arc::clone(store))
        .bus
        .handle(&command, None)
        .await
        .unwrap();
}

/// The statuses of the `TransactWriteItems` requests the interposer saw, in order.
fn commits(interposer: &Interposer) -> Vec<u16> {
    interposer
        .calls()
        .iter()
        .filter(|c| c.operation == "TransactWriteItems")
        .map(|c| c.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_decided_on_a_line_read_before_a_concurrent_commit_is_refused_and_retried() {
    let t = table().await;
    let (sku, batch, order) = (unique("TORN"), unique("b"), unique("o"));
    add_batch(&t.plain, &batch, &sku, 100, false).await;

    // A loads: its line read goes through (no line yet), its product read is held.
    t.interposer.hold_product_reads();
    let torn = deployed_app(Arc::clone(&t.torn)).bus;
    let command = Allocate::new(order.clone(), sku.clone(), 5).unwrap();
    let a = tokio::spawn(async move { torn.handle(&command, None).await });
    let line_sk = format!("LINE#{sku}");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line_read = t.interposer.calls().iter().any(|c| {
                c.operation == "GetItem"
                    && c.request["Key"][SK]["S"] == line_sk
                    && c.ended.is_some()
            });
            if line_read && t.interposer.held_product_reads() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("A read its line and waits for its product");

    // B allocates the same order meanwhile; then A reads the product as B left it: a torn load.
    let b = deployed_app(Arc::clone(&t.plain))
        .bus
        .handle(&Allocate::new(order.clone(), sku.clone(), 5).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(b, batch);
    t.interposer.release_product_reads();
    assert_eq!(
        a.await.unwrap().unwrap(),
        batch,
        "A answers the batch B chose"
    );

    // A's commit (the line put again, the batch's total counted twice) was refused; its retry read
    // the line and wrote nothing.
    assert_eq!(commits(&t.interposer), [400], "one commit, refused");
    let product = t.plain.load(&sku, &[&order]).await.unwrap().unwrap();
    assert_eq!(product.batch(&batch).unwrap().allocated_quantity(), 5);
    assert_eq!(
        t.plain.allocations_for_order(&order).await.unwrap(),
        [AllocationView {
            sku: sku.clone(),
            batchref: Some(batch.clone())
        }]
    );
    assert_eq!(
        t.plain.outbox(&sku).await.unwrap().len(),
        1,
        "B's Allocated, none of A's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_allocations_on_torn_loads_never_oversell() {
    let t = table().await;
    let (sku, batch) = (unique("HOT"), unique("b"));
    let stock = 40u32;
    add_batch(&t.plain, &batch, &sku, stock, false).await;
    // Every product read 30 ms after the line reads of its load: any commit landing in between
    // tears the load. Eight buses stand for eight function processes; 48 orders, 16 of them asked
    // twice at once.
    t.interposer
        .delay_product_reads(Some(Duration::from_millis(30)));
    let buses: Vec<_> = (0..8)
        .map(|_| deployed_app(Arc::clone(&t.torn)).bus)
        .collect();
    let orders: Vec<String> = (0..48).map(|i| format!("{}-{i:02}", unique("o"))).collect();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let bus = buses[i % buses.len()].clone();
            let order = orders[i % orders.len()].clone();
            let command = Allocate::new(order.clone(), sku.clone(), 1).unwrap();
            tokio::spawn(async move { (order, bus.handle(&command, None).await) })
        })
        .collect();
    let (mut allocated, mut refused, mut retry_later) = (Vec::new(), 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (order, Ok(reference)) => {
                assert_eq!(reference, batch);
                allocated.push(order);
            }
            (_, Err(ServiceError::OutOfStock(_))) => refused += 1,
            // The bus's retry budget ran out (HTTP: 503, try again): nothing of it was applied.
            (_, Err(e)) if e.is_version_conflict() => retry_later += 1,
            (order, Err(other)) => panic!("{order}: {other}"),
        }
    }

    // No oversell, and every 201 has its line (and only an order answered 201 has one): the batch's
    // total is the sum of its lines.
    let product = t.plain.load(&sku, &[]).await.unwrap().unwrap();
    let total = product.batch(&batch).unwrap().allocated_quantity();
    let mut with_line = 0u64;
    for order in &orders {
        let lines = t.plain.allocations_for_order(order).await.unwrap();
        assert!(lines.len() <= 1, "{order}: {lines:?}");
        with_line += lines.len() as u64;
        if allocated.contains(order) {
            assert_eq!(
                lines[0].batchref.as_deref(),
                Some(batch.as_str()),
                "{order}"
            );
        }
    }
    let answered_201 = allocated.len();
    assert_eq!(answered_201 + refused + retry_later, 64);
    allocated.sort();
    allocated.dedup();
    assert!(
        total <= u64::from(stock),
        "the batch gave out {total} of {stock}"
    );
    assert_eq!(total, with_line, "the batch's total is its lines");
    assert_eq!(
        with_line,
        allocated.len() as u64,
        "every 201 has its line, and only those"
    );
    let statuses = commits(&t.interposer);
    let refusals = statuses.iter().filter(|s| **s == 400).count();
    println!(
        "64 allocations on torn loads: {answered_201} answered 201 ({with_line} orders), \
         {refused} 409, {retry_later} 503; {} commits of which {refusals} refused",
        statuses.len()
    );
}

/// The `lines` index's entries of a batch as it shows them now (ascending order id).
async fn index_snapshot(t: &Table, reference: &str) -> Vec<Value> {
    let answer = t
        .client
        .query()
        .table_name(&t.name)
        .index_name(LINES_INDEX)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", LINES_PK)
        .expression_attribute_values(":pk", AttributeValue::S(batch_lines_pk(reference)))
        .send()
        .await
        .unwrap();
    answer.items().iter().map(item_json).collect()
}

/// Where each order's line of the SKU is: its batch, `None` waiting, or no line.
async fn lines(store: &DynamoDbStore, sku: &str, orders: &[&str]) -> Vec<Option<Option<String>>> {
    let product = store.load(sku, orders).await.unwrap().unwrap();
    orders
        .iter()
        .map(|o| {
            product.line_status(o).map(|(status, _)| match status {
                LineStatus::Allocated(batch) => Some(batch.reference().to_owned()),
                LineStatus::Waiting { .. } => None,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shrink_on_a_lagging_index_is_refused_and_retried_on_fresh_lines() {
    let t = table().await;
    let (sku, batch, later) = (unique("LAG"), unique("b"), unique("b"));
    add_batch(&t.plain, &batch, &sku, 10, false).await;
    add_batch(&t.plain, &later, &sku, 10, true).await;
    let plain = deployed_app(Arc::clone(&t.plain)).bus;
    let orders = ["o-1", "o-2", "o-3"].map(|o| format!("{}-{o}", unique("order")));
    for order in &orders {
        plain
            .handle(&Allocate::new(order.clone(), sku.clone(), 2).unwrap(), None)
            .await
            .unwrap();
    }
    let before_shrink = index_snapshot(&t, &batch).await;
    assert_eq!(before_shrink.len(), 3);
    // The first shrink frees the greatest order id: o-3 waits for its reallocation.
    plain
        .handle(&ChangeBatchQuantity::new(batch.clone(), 4).unwrap(), None)
        .await
        .unwrap();
    let ids: Vec<&str> = orders.iter().map(String::as_str).collect();
    assert_eq!(
        lines(&t.plain, &sku, &ids).await,
        [
            Some(Some(batch.clone())),
            Some(Some(batch.clone())),
            Some(None)
        ]
    );

    // The next shrink reads the index as it was before the first: o-3 still in the batch.
    t.interposer
        .lag_index(&batch_lines_pk(&batch), before_shrink, 1);
    deployed_app(Arc::clone(&t.torn))
        .bus
        .handle(&ChangeBatchQuantity::new(batch.clone(), 2).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(t.interposer.stale_answers(), 1);
    assert_eq!(
        commits(&t.interposer),
        [400, 200],
        "freeing o-3 again was refused; the retry freed o-2"
    );
    assert_eq!(
        lines(&t.plain, &sku, &ids).await,
        [Some(Some(batch.clone())), Some(None), Some(None)]
    );
    let product = t.plain.load(&sku, &[]).await.unwrap().unwrap();
    let shrunk = product.batch(&batch).unwrap();
    assert_eq!(
        (shrunk.purchased_quantity(), shrunk.allocated_quantity()),
        (2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shrink_on_an_index_missing_lines_is_retried() {
    let t = table().await;
    let (sku, batch) = (unique("LAG"), unique("b"));
    add_batch(&t.plain, &batch, &sku, 10, false).await;
    let plain = deployed_app(Arc::clone(&t.plain)).bus;
    let orders = ["o-1", "o-2"].map(|o| format!("{}-{o}", unique("order")));
    for order in &orders {
        plain
            .handle(&Allocate::new(order.clone(), sku.clone(), 3).unwrap(), None)
            .await
            .unwrap();
    }
    // The index has not shown the batch's lines yet: the lines run out before the batch's total.
    t.interposer
        .lag_index(&batch_lines_pk(&batch), Vec::new(), 1);
    deployed_app(Arc::clone(&t.torn))
        .bus
        .handle(&ChangeBatchQuantity::new(batch.clone(), 4).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(t.interposer.stale_answers(), 1);
    assert_eq!(
        commits(&t.interposer),
        [200],
        "nothing committed on the short read"
    );
    let ids: Vec<&str> = orders.iter().map(String::as_str).collect();
    assert_eq!(
        lines(&t.plain, &sku, &ids).await,
        [Some(Some(batch.clone())), Some(None)]
    );
}
