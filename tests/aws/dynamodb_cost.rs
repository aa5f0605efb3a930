//! The cost of one allocation in DynamoDB, by DynamoDB's sizing rules applied to the items the store
//! really reads and writes on moto: the same with no earlier lines on the SKU and with 100,000
//! (`COST_EARLIER_LINES` to change it), at most 4 read units and 10 write units (index writes
//! included). A cost specification, not a timing: `cargo test --test aws dynamodb_cost -- --nocapture`
//! prints the figures.

use std::sync::Arc;

use crate::dynamodb_size as size;
use allocation::adapters::dynamodb::commit::{self, Operation};
use allocation::adapters::dynamodb::items::{self, Item};
use allocation::adapters::dynamodb::keys::{
    self, CREATED_AT, GSI1PK, LSI1SK, PENDING_SHARD, PK, SK,
};
use allocation::adapters::dynamodb::DynamoDbStore;
use allocation::adapters::records::{AllocationRecord, BatchRecord, ProductRecord};
use allocation::domain::{Allocate, Batch, CreateBatch, EventEnvelope, OrderLine, Product};
use allocation::service::{outbox_bus, ProductWrite, Store};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

const CORRELATION: &str = "0d9f6c1e-5a4b-4c3d-9e2f-1a2b3c4d5e6f";
/// Commit time (epoch seconds) for the outbox TTL of the computed items: 2026-11-21.
const NOW: i64 = 1_795_261_234;

fn earlier_lines() -> u32 {
    std::env::var("COST_EARLIER_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Identifiers of a realistic size (the book's style, a UUID-like order id).
struct Names {
    sku: String,
    batch: String,
    order: String,
}

fn names(tag: &str) -> Names {
    Names {
        sku: format!("RETRO-CLOCK-{tag}"),
        batch: format!("batch-2026-11-{tag}"),
        order: "order-4b7e9c2a-1f3d-4e5b-8a6c-0d9e8f7a6b5c".to_owned(),
    }
}

/// What one allocation cost.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    /// Items the store's reads returned, and their read units.
    items_read: u64,
    read_units: u64,
    /// (item kind, size in bytes, transactional write units) per table write.
    writes: Vec<(String, usize, u64)>,
    /// Standard write units of the index entries: GSI `by_order`, LSI `by_batch` and, for the outbox
    /// item, GSI `pending`.
    index_units: u64,
}

impl Cost {
    fn write_units(&self) -> u64 {
        self.writes.iter().map(|w| w.2).sum::<u64>() + self.index_units
    }

    fn print(&self, label: &str) {
        println!("{label}:");
        println!(
            "  reads: {} items, {} RCU (strongly consistent)",
            self.items_read, self.read_units
        );
        for (kind, bytes, units) in &self.writes {
            println!("  write {kind:<10} {bytes:>4} bytes  {units} WCU (transactional)");
        }
        println!(
            "  index entries {} WCU; total {} WCU",
            self.index_units,
            self.write_units()
        );
    }
}

/// The write units of putting these items in one transaction, with the stored product item the
/// product put replaces (a put is sized by the larger of the old and the new item).
fn write_cost(puts: &[Item], stored_product: &Item) -> (Vec<(String, usize, u64)>, u64) {
    let mut writes = Vec::new();
    let mut index_units = 0;
    for item in puts {
        let kind = match item.get("entity") {
            Some(AttributeValue::S(kind)) => kind.clone(),
            other => panic!("item without entity: {other:?}"),
        };
        let replaced = (kind == "product").then_some(stored_product);
        let units = size::transactional_put_units(item, replaced);
        writes.push((kind, size::item_size(item), units));
        for index_key in [GSI1PK, LSI1SK, PENDING_SHARD] {
            if item.contains_key(index_key) {
                index_units += size::standard_write_units(size::item_size(item));
            }
        }
    }
    (writes, index_units)
}

/// A SKU with one batch holding `earlier` lines, stored as the store stores them: the allocation
/// items (written in bulk), and the batch's total.
async fn sku_with_history(
    client: &Client,
    table: &str,
    store: &Arc<DynamoDbStore>,
    n: &Names,
    earlier: u32,
) {
    let bus = outbox_bus(Arc::clone(store));
    let batch = CreateBatch::new(n.batch.clone(), n.sku.clone(), earlier + 1_000, None).unwrap();
    bus.handle(&batch, None).await.unwrap();
    let requests: Vec<WriteRequest> = (0..earlier)
        .map(|i| {
            let item = items::allocation_item(&AllocationRecord {
                orderid: format!("earlier-{i:08}"),
                sku: n.sku.clone(),
                qty: 1,
                batchref: Some(n.batch.clone()),
                waiting_since: None,
            });
            let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
            WriteRequest::builder().put_request(put).build()
        })
        .collect();
    let mut writes = tokio::task::JoinSet::new();
    for chunk in requests.chunks(25 * 40) {
        let (client, table, chunk) = (client.clone(), table.to_owned(), chunk.to_vec());
        writes.spawn(async move {
            for batch in chunk.chunks(25) {
                let mut pending = batch.to_vec();
                for _ in 0..10 {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, pending)
                        .send()
                        .await
                        .unwrap();
                    pending = out
                        .unprocessed_items()
                        .and_then(|u| u.get(&table))
                        .cloned()
                        .unwrap_or_default();
                    if pending.is_empty() {
                        break;
                    }
                }
                assert!(pending.is_empty(), "moto left items unprocessed");
            }
        });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap();
    }
    let batch_item = items::batch_item(&BatchRecord {
        reference: n.batch.clone(),
        sku: n.sku.clone(),
        purchased_quantity: earlier + 1_000,
        allocated_quantity: u64::from(earlier),
        eta: None,
    });
    client
        .put_item()
        .table_name(table)
        .set_item(Some(batch_item))
        .send()
        .await
        .unwrap();
}

/// Sizes of the items of the product's head, as the store's load reads them (same key condition).
async fn head_item_sizes(client: &Client, table: &str, sku: &str) -> Vec<usize> {
    let out = client
        .query()
        .table_name(table)
        .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#sk", SK)
        .expression_attribute_values(":pk", AttributeValue::S(keys::product_pk(sku)))
        .expression_attribute_values(":from", AttributeValue::S(keys::BATCH_SK_PREFIX.into()))
        .expression_attribute_values(":to", AttributeValue::S(keys::PRODUCT_SK.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items().iter().map(size::item_size).collect()
}

async fn stored_item(client: &Client, table: &str, key: Item) -> Item {
    client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the store wrote this item")
}

/// Allocates one line of `n` through the bus on moto and measures what it read and wrote.
async fn measure(client: &Client, table: &str, store: &Arc<DynamoDbStore>, n: &Names) -> Cost {
    let head = head_item_sizes(client, table, &n.sku).await;
    let stored_product = stored_item(client, table, items::product_key(&n.sku)).await;
    let before = store.records_read();
    let allocate = Allocate::new(n.order.clone(), n.sku.clone(), 3).unwrap();
    let bus = outbox_bus(Arc::clone(store));
    assert_eq!(
        bus.handle(&allocate, Some(CORRELATION)).await.unwrap(),
        n.batch
    );
    let items_read = store.records_read() - before;
    // One Query page for the head, one GetItem for the order's line (none yet: 1 unit all the same).
    let read_units = size::strong_read_units(head.iter().copied()) + size::strong_read_units([]);

    let version = stored_product["version_number"]
        .as_n()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 1;
    let outbox = stored_item(client, table, items::outbox_key(&n.sku, version, "000000")).await;
    let written = vec![
        stored_item(client, table, items::product_key(&n.sku)).await,
        stored_item(client, table, items::batch_key(&n.sku, &n.batch)).await,
        stored_item(client, table, items::allocation_key(&n.sku, &n.order)).await,
        outbox,
    ];
    let (writes, index_units) = write_cost(&written, &stored_product);
    Cost {
        items_read,
        read_units,
        writes,
        index_units,
    }
}

/// The actions of allocating `n.order` (qty 3) on `n.sku`, loaded at version 1 with one empty batch.
fn offline_allocation(n: &Names) -> Vec<commit::Action> {
    let batch = Batch::restore(&n.batch, &n.sku, 1_000, None, 0).unwrap();
    let mut product = Product::restore(&n.sku, 1, vec![batch], None).unwrap();
    product.restore_no_line(&n.order);
    product
        .allocate(&OrderLine::new(&n.order, &n.sku, 3).unwrap())
        .unwrap();
    let outbox: Vec<EventEnvelope> = product
        .take_events()
        .into_iter()
        .enumerate()
        .map(|(index, event)| EventEnvelope {
            id: EventEnvelope::event_id(&n.sku, 2, index),
            correlation_id: Some(CORRELATION.to_owned()),
            occurred_at: chrono::DateTime::from_timestamp(NOW, 123_456_789),
            event,
        })
        .collect();
    let write = ProductWrite {
        product: &product,
        expected_version: Some(1),
        changes: product.changes(),
        outbox: &outbox,
    };
    commit::actions(&[write], NOW).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_allocation_reads_and_writes_the_same_units_whatever_the_history() {
    let moto = crate::support::moto::bulk_moto().await;
    let table = moto.create_table("cost").await;
    let client = moto.dynamodb();
    let store = Arc::new(DynamoDbStore::new(client.clone(), &table));
    let earlier = earlier_lines();
    let (fresh, busy) = (names("FRESH"), names("BUSY"));
    sku_with_history(&client, &table, &store, &fresh, 0).await;
    sku_with_history(&client, &table, &store, &busy, earlier).await;

    let on_fresh = measure(&client, &table, &store, &fresh).await;
    let on_busy = measure(&client, &table, &store, &busy).await;
    on_fresh.print("allocation on a SKU with no earlier lines");
    on_busy.print(&format!("allocation on a SKU with {earlier} earlier lines"));

    assert_eq!(
        on_fresh.items_read, 2,
        "the product item and the batch item"
    );
    assert_eq!(on_fresh.items_read, on_busy.items_read);
    assert_eq!(on_fresh.read_units, on_busy.read_units);
    let kinds = |c: &Cost| c.writes.iter().map(|w| w.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        kinds(&on_fresh),
        ["product", "batch", "allocation", "outbox"]
    );
    assert_eq!(kinds(&on_fresh), kinds(&on_busy));
    assert_eq!(on_fresh.write_units(), on_busy.write_units());
    assert!(on_busy.read_units <= 4, "{on_busy:?}");
    // 10 for the state and the event, 1 for the event's entry in the `pending` index (what makes
    // an event whose stream record is lost still found and published: docs/functions.md).
    assert!(on_busy.write_units() <= 11, "{on_busy:?}");
}

/// The items the store writes are exactly the ones the commit's actions describe (so the costs above
/// are the costs of what the store sends), and identifiers of the maximum length cost what they cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_writes_exactly_the_items_of_its_actions() {
    let moto = crate::support::moto::bulk_moto().await;
    let table = moto.create_table("cost-items").await;
    let client = moto.dynamodb();
    let store = Arc::new(DynamoDbStore::new(client.clone(), &table));
    let n = names("ITEMS");
    sku_with_history(&client, &table, &store, &n, 0).await;
    let measured = measure(&client, &table, &store, &n).await;

    // The same commit computed offline, from a product loaded as the store loads it.
    let actions = offline_allocation(&n);
    for action in &actions {
        let Operation::Put { item, .. } = &action.operation else {
            panic!("an allocation only puts: {action:?}");
        };
        let key: Item = [PK, SK]
            .iter()
            .map(|k| (k.to_string(), item[*k].clone()))
            .collect();
        let mut stored = stored_item(&client, &table, key).await;
        // The outbox item and its envelope carry the commit time: the computed item used a fixed
        // time.
        if stored.contains_key(CREATED_AT) {
            stored.insert(CREATED_AT.to_owned(), item[CREATED_AT].clone());
            let mut envelope = items::parse_outbox(&stored).unwrap();
            envelope.occurred_at = items::parse_outbox(item).unwrap().occurred_at;
            stored.insert(
                "payload".to_owned(),
                AttributeValue::S(serde_json::to_string(&envelope).unwrap()),
            );
        }
        assert_eq!(&stored, item);
    }
    assert_eq!(actions.len(), measured.writes.len());

    let long = |c: char| c.to_string().repeat(allocation::domain::MAX_IDENTIFIER_LEN);
    let n = Names {
        sku: long('S'),
        batch: long('B'),
        order: long('O'),
    };
    let stored_product = items::product_item(&ProductRecord {
        sku: n.sku.clone(),
        version_number: 1,
        out_of_stock_since: Some(u64::MAX),
    });
    let puts: Vec<Item> = offline_allocation(&n)
        .into_iter()
        .filter_map(|a| a.put_item().cloned())
        .collect();
    let (writes, index_units) = write_cost(&puts, &stored_product);
    let longest = Cost {
        items_read: 0,
        read_units: 0,
        writes,
        index_units,
    };
    longest.print("allocation with every identifier at 128 bytes (computed)");
}
