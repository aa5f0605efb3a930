//! The cost of one allocation in DynamoDB, counted on DynamoDB Local: the requests the store really
//! makes (seen by the interposer between the SDK and the emulator), the items and index entries they
//! read and write, priced by DynamoDB's sizing rules (`dynamodb_size`). The same with no earlier lines
//! on the SKU and with 100,000 (`COST_EARLIER_LINES` to change it): at most 2 read units, 8 write
//! units in the commit, 10 with the relay's marking published, two round trips before the answer.
//! A cost specification, not a timing: `cargo test --test aws dynamodb_cost -- --nocapture` prints
//! the figures.
//!
//! Index entries are priced as standard writes (1 unit per started KB of the entry), transactional
//! or not: a global index is maintained asynchronously, outside the transaction's two phases
//! (`docs/storage.md`, "Cost of one allocation").

use std::sync::Arc;

use crate::dynamodb_size as size;
use crate::support::dynamodb_local::{bulk_dynamodb_local, bulk_put, DynamoDbLocal};
use crate::support::interposer::{item_from_json, sequential_round_trips, Call, Interposer};
use allocation::adapters::dynamodb::commit::{self, Operation};
use allocation::adapters::dynamodb::items::{self, Item};
use allocation::adapters::dynamodb::keys::{self, CREATED_AT, LINES_PK, PENDING_SHARD, PK, SK};
use allocation::adapters::dynamodb::{DynamoDbOutbox, DynamoDbStore};
use allocation::adapters::records::{AllocationRecord, BatchRecord, ProductRecord};
use allocation::domain::{Allocate, Batch, CreateBatch, EventEnvelope, OrderLine, Product};
use allocation::service::{deployed_app, AllocationsView, App, ProductWrite, RecordsRead};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde_json::Value;

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
    /// The requests before the answer, in the order they started.
    requests: Vec<String>,
    round_trips: usize,
    /// Records the store's reads returned (the product's and its batch's, in one item), and the
    /// read units.
    records_read: u64,
    read_units: u64,
    /// (item kind, size in bytes, transactional write units) per item the commit writes.
    writes: Vec<(String, usize, u64)>,
    /// (index, standard write units) per index entry the commit writes.
    index_entries: Vec<(&'static str, u64)>,
    /// Units of the relay's marking the event published: the item's update and its index removal.
    published_units: u64,
}

impl Cost {
    /// The same, without the items' sizes in bytes.
    fn units(&self) -> Cost {
        Cost {
            requests: self.requests.clone(),
            writes: self.writes.iter().map(|w| (w.0.clone(), 0, w.2)).collect(),
            index_entries: self.index_entries.clone(),
            ..*self
        }
    }

    fn commit_units(&self) -> u64 {
        self.writes.iter().map(|w| w.2).sum::<u64>()
            + self.index_entries.iter().map(|e| e.1).sum::<u64>()
    }

    fn print(&self, label: &str) {
        println!("{label}:");
        println!(
            "  requests {:?}, {} sequential round trips before the answer",
            self.requests, self.round_trips
        );
        println!(
            "  reads: {} records, {} RCU (strongly consistent)",
            self.records_read, self.read_units
        );
        for (kind, bytes, units) in &self.writes {
            println!("  write {kind:<10} {bytes:>4} bytes  {units} WCU (transactional)");
        }
        for (index, units) in &self.index_entries {
            println!("  index entry {index:<8} {units} WCU (standard)");
        }
        println!(
            "  commit {} WCU; marking published {} WCU; total {} WCU",
            self.commit_units(),
            self.published_units,
            self.commit_units() + self.published_units
        );
    }
}

/// The index entries an item written with these attributes has, each with its standard write units
/// (every index projects all attributes: an entry is the size of its item).
fn index_entries(item: &Item) -> Vec<(&'static str, u64)> {
    let units = size::standard_write_units(size::item_size(item));
    [(LINES_PK, "lines"), (PENDING_SHARD, "pending")]
        .into_iter()
        .filter(|(key, _)| item.contains_key(*key))
        .map(|(_, index)| (index, units))
        .collect()
}

/// The items a `TransactWriteItems` request puts.
fn transaction_puts(call: &Call) -> Vec<Item> {
    call.request["TransactItems"]
        .as_array()
        .expect("a transaction's items")
        .iter()
        .filter(|action| action.get("Put").is_some())
        .map(|action| item_from_json(&action["Put"]["Item"]))
        .collect()
}

/// A SKU with one batch holding `earlier` lines, stored as the store stores them: the line items
/// (written in bulk) and the batch's total in the product item.
async fn sku_with_history(client: &Client, table: &str, n: &Names, earlier: u32) {
    let store = Arc::new(DynamoDbStore::new(client.clone(), table));
    let bus = deployed_app(Arc::clone(&store)).bus;
    let purchased = earlier + 1_000;
    let batch = CreateBatch::new(n.batch.clone(), n.sku.clone(), purchased, None).unwrap();
    bus.handle(&batch, None).await.unwrap();
    let lines = (0..earlier)
        .map(|i| {
            items::line_item(&AllocationRecord {
                orderid: format!("earlier-{i:08}"),
                sku: n.sku.clone(),
                qty: 1,
                batchref: Some(n.batch.clone()),
                waiting_since: None,
            })
        })
        .collect();
    bulk_put(client, table, lines).await;
    let product = ProductRecord {
        sku: n.sku.clone(),
        version_number: 1,
        out_of_stock_since: None,
    };
    let batch = BatchRecord {
        reference: n.batch.clone(),
        sku: n.sku.clone(),
        purchased_quantity: purchased,
        allocated_quantity: u64::from(earlier),
        eta: None,
    };
    client
        .put_item()
        .table_name(table)
        .set_item(Some(items::product_item(&product, [&batch])))
        .send()
        .await
        .unwrap();
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

/// Allocates one line of `n` through the bus on DynamoDB Local, then marks its event published
/// as the relay does, and counts what each read and wrote.
async fn measure(local: &DynamoDbLocal, table: &str, n: &Names) -> (Cost, Vec<Call>) {
    let client = local.client();
    let stored_product = stored_item(&client, table, items::product_key(&n.sku)).await;
    let interposer = Interposer::new();
    let store = Arc::new(DynamoDbStore::new(local.client_through(&interposer), table));
    let bus = deployed_app(Arc::clone(&store)).bus;
    let allocate = Allocate::new(n.order.clone(), n.sku.clone(), 3).unwrap();
    assert_eq!(
        bus.handle(&allocate, Some(CORRELATION)).await.unwrap(),
        n.batch
    );
    let calls = interposer.calls();
    let requests: Vec<String> = calls.iter().map(|c| c.operation.clone()).collect();
    // The product item as it was read; the order's line did not exist (a read that finds nothing
    // costs 1 unit all the same).
    let read_units = calls
        .iter()
        .filter(|c| c.operation == "GetItem")
        .map(|c| match c.request["Key"][SK]["S"].as_str() {
            Some(keys::PRODUCT_SK) => size::strong_read_units([size::item_size(&stored_product)]),
            _ => size::strong_read_units([]),
        })
        .sum();
    let commit = calls
        .iter()
        .find(|c| c.operation == "TransactWriteItems")
        .expect("the allocation commits");
    let puts = transaction_puts(commit);
    let writes = puts
        .iter()
        .map(|item| {
            let kind = item["entity"].as_s().unwrap().clone();
            let replaced = (kind == "product").then_some(&stored_product);
            let units = size::transactional_put_units(item, replaced);
            (kind, size::item_size(item), units)
        })
        .collect();
    let index_entries = puts.iter().flat_map(index_entries).collect();

    // The relay marks the event published: an update that adds the TTL and leaves the index.
    let outbox = puts
        .iter()
        .find(|item| item["entity"].as_s().is_ok_and(|e| e == "outbox"))
        .expect("the commit writes its event");
    let marker = Interposer::new();
    DynamoDbOutbox::new(local.client_through(&marker), table)
        .mark_published(outbox[PK].as_s().unwrap(), outbox[SK].as_s().unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(marker.count("UpdateItem"), 1);
    let key: Item = [PK, SK]
        .iter()
        .map(|k| (k.to_string(), outbox[*k].clone()))
        .collect();
    let published = stored_item(&client, table, key).await;
    assert!(!published.contains_key(PENDING_SHARD), "left the index");
    let published_units =
        size::standard_write_units(size::item_size(&published).max(size::item_size(outbox)))
            + size::standard_write_units(size::item_size(outbox));
    let cost = Cost {
        round_trips: sequential_round_trips(&calls),
        requests,
        records_read: store.records_read(),
        read_units,
        writes,
        index_entries,
        published_units,
    };
    (cost, calls)
}

/// The actions of allocating `n.order` (qty 3) on `n.sku`, loaded at version 1 with one empty batch.
fn offline_allocation(n: &Names) -> Vec<commit::Action> {
    let batch = Batch::restore(&n.batch, &n.sku, 1_000, None, 0).unwrap();
    let mut product = Product::restore(&n.sku, 1, vec![batch], None).unwrap();
    product.restore_no_line(&n.order);
    product
        .allocate(&OrderLine::parse(&n.order, &n.sku, 3).unwrap())
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
    let local = bulk_dynamodb_local().await;
    let table = local.create_table("cost").await;
    let client = local.client();
    let earlier = earlier_lines();
    let (fresh, busy) = (names("FRESH"), names("BUSY"));
    sku_with_history(&client, &table, &fresh, 0).await;
    sku_with_history(&client, &table, &busy, earlier).await;

    let (on_fresh, _) = measure(local, &table, &fresh).await;
    let (on_busy, _) = measure(local, &table, &busy).await;
    on_fresh.print("allocation on a SKU with no earlier lines");
    on_busy.print(&format!("allocation on a SKU with {earlier} earlier lines"));

    assert_eq!(
        on_fresh.requests,
        ["GetItem", "GetItem", "TransactWriteItems"],
        "the product item and the order's line, then the commit"
    );
    assert_eq!(on_fresh.round_trips, 2, "the two reads go together");
    assert_eq!(
        on_fresh.records_read, 2,
        "the product and its batch, in one item (the line is new)"
    );
    let kinds = |c: &Cost| c.writes.iter().map(|w| w.0.clone()).collect::<Vec<_>>();
    assert_eq!(kinds(&on_fresh), ["product", "line", "outbox"]);
    assert_eq!(on_fresh.index_entries, [("lines", 1), ("pending", 1)]);
    // The same whatever the history, but for a few bytes of longer numbers.
    assert_eq!(
        on_fresh.units(),
        on_busy.units(),
        "{on_fresh:?}\n{on_busy:?}"
    );
    assert!(on_busy.read_units <= 2, "{on_busy:?}");
    assert!(on_busy.commit_units() <= 8, "{on_busy:?}");
    assert!(
        on_busy.commit_units() + on_busy.published_units <= 10,
        "{on_busy:?}"
    );
}

/// The items the store writes are exactly the ones the commit's actions describe (so the costs above
/// are the costs of what the store sends), and identifiers of the maximum length cost what they cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_writes_exactly_the_items_of_its_actions() {
    let local = bulk_dynamodb_local().await;
    let table = local.create_table("cost-items").await;
    let n = names("ITEMS");
    sku_with_history(&local.client(), &table, &n, 0).await;
    let (measured, calls) = measure(local, &table, &n).await;
    let commit = calls
        .iter()
        .find(|c| c.operation == "TransactWriteItems")
        .unwrap();
    let sent = transaction_puts(commit);

    // The same commit computed offline, from a product loaded as the store loads it.
    let actions = offline_allocation(&n);
    assert_eq!(actions.len(), sent.len());
    for (action, sent) in actions.iter().zip(&sent) {
        let Operation::Put { item, .. } = &action.operation else {
            panic!("an allocation only puts: {action:?}");
        };
        let mut sent = sent.clone();
        // The outbox item and its envelope carry the commit time: the computed item used a fixed
        // time.
        if sent.contains_key(CREATED_AT) {
            sent.insert(CREATED_AT.to_owned(), item[CREATED_AT].clone());
            let mut envelope = items::parse_outbox(&sent).unwrap();
            envelope.occurred_at = items::parse_outbox(item).unwrap().occurred_at;
            sent.insert(
                "payload".to_owned(),
                AttributeValue::S(serde_json::to_string(&envelope).unwrap()),
            );
        }
        assert_eq!(&sent, item);
    }
    assert_eq!(measured.writes.len(), sent.len());
    assert!(commit.request["TransactItems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|action| action["Put"]["ConditionExpression"] != Value::Null
            || action["Put"]["Item"]["entity"]["S"] == "outbox"));

    let long = |c: char| c.to_string().repeat(allocation::domain::MAX_IDENTIFIER_LEN);
    let n = Names {
        sku: long('S'),
        batch: long('B'),
        order: long('O'),
    };
    let stored_product = items::product_item(
        &ProductRecord {
            sku: n.sku.clone(),
            version_number: 1,
            out_of_stock_since: Some(u64::MAX),
        },
        &[],
    );
    let puts: Vec<Item> = offline_allocation(&n)
        .into_iter()
        .filter_map(|a| a.put_item().cloned())
        .collect();
    let writes: Vec<(String, usize, u64)> = puts
        .iter()
        .map(|item| {
            let kind = item["entity"].as_s().unwrap().clone();
            let replaced = (kind == "product").then_some(&stored_product);
            (
                kind,
                size::item_size(item),
                size::transactional_put_units(item, replaced),
            )
        })
        .collect();
    let longest = Cost {
        requests: vec![],
        round_trips: 0,
        records_read: 0,
        read_units: 0,
        writes,
        index_entries: puts.iter().flat_map(index_entries).collect(),
        published_units: 0,
    };
    longest.print("allocation with every identifier at 128 bytes (computed)");
}

/// The other operations, measured the same way: the requests each sends one after another, and what
/// its commit writes (printed: `docs/storage.md`, "Other operations").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_operations_send_the_requests_the_storage_doc_lists() {
    let local = bulk_dynamodb_local().await;
    let table = local.create_table("cost-ops").await;
    let interposer = Interposer::new();
    let App { bus, store } = deployed_app(Arc::new(DynamoDbStore::new(
        local.client_through(&interposer),
        &table,
    )));
    let n = names("OPS");
    let measured = |label: &str| {
        let calls = interposer.calls();
        interposer.clear();
        let requests: Vec<String> = calls.iter().map(|c| c.operation.clone()).collect();
        let written: Vec<(String, usize)> = calls
            .iter()
            .filter(|c| c.operation == "TransactWriteItems")
            .flat_map(transaction_puts)
            .map(|item| {
                let kind = item["entity"].as_s().cloned().unwrap_or_default();
                (kind, size::item_size(&item))
            })
            .collect();
        let units: u64 = written
            .iter()
            .map(|(_, bytes)| size::transactional_write_units(*bytes))
            .sum();
        println!(
            "{label}: {requests:?} ({} round trips); puts {written:?}: {units} WCU before index entries",
            sequential_round_trips(&calls)
        );
        requests
    };
    let create = CreateBatch::new(n.batch.clone(), n.sku.clone(), 10, None).unwrap();
    bus.handle(&create, None).await.unwrap();
    assert_eq!(
        measured("add_batch (new SKU)"),
        ["GetItem", "GetItem", "Query", "TransactWriteItems"],
        "batch reference, product, waiting lines, commit"
    );
    for order in ["o-1", "o-2", "o-3"] {
        let allocate = Allocate::new(order, n.sku.clone(), 3).unwrap();
        bus.handle(&allocate, None).await.unwrap();
    }
    interposer.clear();
    let shrink = allocation::domain::ChangeBatchQuantity::new(n.batch.clone(), 4).unwrap();
    bus.handle(&shrink, None).await.unwrap();
    assert_eq!(
        measured("change_batch_quantity freeing 2 lines"),
        ["GetItem", "GetItem", "Query", "TransactWriteItems"],
        "batch reference, product, the batch's lines (one page), commit"
    );
    store.allocations_for_order("o-1").await.unwrap();
    assert_eq!(measured("GET /allocations/{orderid}"), ["Query"]);
}
