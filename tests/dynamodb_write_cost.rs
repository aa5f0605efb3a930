//! The write cost of one allocation in DynamoDB, from the exact items the store writes, by DynamoDB's
//! sizing rules: the same with 0 and with 10,000 earlier allocations on the SKU, and at most 8 write
//! units. A cost specification, not a timing. `cargo test --test dynamodb_write_cost -- --nocapture`
//! prints the figures.

#![cfg(feature = "aws")]

mod support;

use std::sync::Arc;

use allocation::adapters::dynamodb::commit::{self, Action, Operation};
use allocation::adapters::dynamodb::items::{self, Item};
use allocation::adapters::dynamodb::keys::{EXPIRES_AT, GSI1PK};
use allocation::adapters::dynamodb::{size, DynamoDbStore};
use allocation::adapters::records::ProductRecord;
use allocation::domain::{Allocate, Batch, CreateBatch, EventEnvelope, OrderLine, Product};
use allocation::service::{
    EventWiring, MessageBus, NoNotifications, ProductWrite, RetryPolicy, StoreUnitOfWorkFactory,
};

/// Commit time (epoch seconds), for the outbox TTL: 2026-11-21.
const NOW: i64 = 1_795_261_234;
const CORRELATION: &str = "0d9f6c1e-5a4b-4c3d-9e2f-1a2b3c4d5e6f";

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

/// The cost of one allocation's commit.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    /// (item kind, size in bytes, transactional write units) per table write.
    writes: Vec<(String, usize, u64)>,
    table_units: u64,
    /// Standard write units of the `by_order` GSI (allocation items are projected into it).
    index_units: u64,
}

impl Cost {
    fn total(&self) -> u64 {
        self.table_units + self.index_units
    }
}

/// A product with `earlier` allocations already committed, then one more allocation: the write units
/// of that last commit, computed from the actions the store would send.
fn cost_of_one_allocation(n: &Names, earlier: u32) -> (Cost, Vec<Action>) {
    let mut product = Product::new(&n.sku).unwrap();
    product
        .add_batch(Batch::new(&n.batch, &n.sku, earlier + 1_000, None).unwrap())
        .unwrap();
    for i in 0..earlier {
        let line = OrderLine::new(format!("earlier-{i:08}"), &n.sku, 1).unwrap();
        product.allocate(&line).unwrap();
    }
    product.take_events();
    product.clear_changes();
    let loaded_version = product.version_number();

    let line = OrderLine::new(&n.order, &n.sku, 3).unwrap();
    assert_eq!(
        product.allocate(&line).unwrap().as_deref(),
        Some(n.batch.as_str())
    );
    let version = product.version_number();
    let outbox: Vec<EventEnvelope> = product
        .take_events()
        .into_iter()
        .enumerate()
        .map(|(index, event)| EventEnvelope {
            id: EventEnvelope::event_id(&n.sku, version, index),
            correlation_id: Some(CORRELATION.to_owned()),
            event,
        })
        .collect();
    let write = ProductWrite {
        product: &product,
        expected_version: Some(loaded_version),
        changes: product.changes(),
        outbox: &outbox,
    };
    let actions = commit::actions(&[write], NOW).unwrap();
    // The product item it replaces (a put is sized by the larger of the old and the new item).
    let stored_product = items::product_item(&ProductRecord {
        sku: n.sku.clone(),
        version_number: loaded_version,
    });
    let puts: Vec<Item> = actions
        .iter()
        .map(|action| match &action.operation {
            Operation::Put { item, .. } => item.clone(),
            Operation::Delete { .. } => panic!("an allocation deletes nothing: {action:?}"),
        })
        .collect();
    (cost_of(&puts, &stored_product), actions)
}

/// The cost of putting these items in one transaction.
fn cost_of(puts: &[Item], stored_product: &Item) -> Cost {
    let mut writes = Vec::new();
    let mut index_units = 0;
    for item in puts {
        let kind = match item.get("entity") {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(kind)) => kind.clone(),
            other => panic!("item without entity: {other:?}"),
        };
        let replaced = (kind == "product").then_some(stored_product);
        let units = size::transactional_put_units(item, replaced);
        writes.push((kind, size::item_size(item), units));
        if item.contains_key(GSI1PK) {
            index_units += size::standard_write_units(size::item_size(item));
        }
    }
    let table_units = writes.iter().map(|(_, _, units)| units).sum();
    Cost {
        writes,
        table_units,
        index_units,
    }
}

fn print(label: &str, cost: &Cost) {
    println!("{label}:");
    for (kind, bytes, units) in &cost.writes {
        println!("  {kind:<10} {bytes:>4} bytes  {units} WCU (transactional)");
    }
    println!(
        "  table {} WCU + by_order index {} WCU = {} WCU",
        cost.table_units,
        cost.index_units,
        cost.total()
    );
}

#[test]
fn an_allocation_costs_the_same_whatever_the_history() {
    let n = names("A1");
    let (fresh, _) = cost_of_one_allocation(&n, 0);
    let (busy, _) = cost_of_one_allocation(&n, 10_000);
    print("allocation with 0 earlier allocations", &fresh);
    print("allocation with 10,000 earlier allocations", &busy);
    assert_eq!(
        fresh
            .writes
            .iter()
            .map(|w| w.0.as_str())
            .collect::<Vec<_>>(),
        ["product", "allocation", "outbox"],
        "an allocation writes the product item, its allocation item and one outbox item"
    );
    assert_eq!(fresh.table_units, busy.table_units);
    assert_eq!(fresh.total(), busy.total());
    assert!(fresh.total() <= 8, "{fresh:?}");
}

#[test]
fn identifiers_of_the_maximum_length_still_fit_in_one_kilobyte_per_item() {
    let long = |c: char| c.to_string().repeat(allocation::domain::MAX_IDENTIFIER_LEN);
    let n = Names {
        sku: long('S'),
        batch: long('B'),
        order: long('O'),
    };
    let (cost, _) = cost_of_one_allocation(&n, 10_000);
    print(
        "allocation with 10,000 earlier ones, 128-byte identifiers",
        &cost,
    );
    assert!(cost
        .writes
        .iter()
        .all(|(_, bytes, _)| *bytes <= size::WRITE_UNIT_BYTES));
    assert!(cost.total() <= 8, "{cost:?}");
}

/// The items the store really writes (read back from moto) are the items the cost was computed from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_writes_exactly_the_costed_items() {
    let moto = support::moto::moto().await;
    let table = moto.create_table("write-cost").await;
    let store = Arc::new(DynamoDbStore::new(moto.dynamodb(), &table));
    let n = names(&support::moto::unique_name("M"));
    let bus = MessageBus::new(
        StoreUnitOfWorkFactory::new(Arc::clone(&store), EventWiring::outbox()),
        EventWiring::outbox(),
        Arc::new(NoNotifications),
        RetryPolicy::default(),
    );
    let batch = CreateBatch {
        reference: n.batch.clone(),
        sku: n.sku.clone(),
        qty: 1_000,
        eta: None,
    };
    bus.handle(&batch, None).await.unwrap();
    let allocate = Allocate {
        orderid: n.order.clone(),
        sku: n.sku.clone(),
        qty: 3,
    };
    bus.handle(&allocate, Some(CORRELATION)).await.unwrap();

    let (expected_cost, actions) = cost_of_one_allocation(&n, 0);
    let client = store.client();
    let mut stored_items = Vec::new();
    for action in &actions {
        let mut expected = action.put_item().expect("puts only").clone();
        let key: Item = ["pk", "sk"]
            .iter()
            .map(|k| (k.to_string(), expected[*k].clone()))
            .collect();
        let stored = client
            .get_item()
            .table_name(&table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .expect("the store wrote this item");
        // The outbox TTL is "commit time + 7 days": compare it apart.
        if let Some(ttl) = stored.get(EXPIRES_AT) {
            let ttl: i64 = ttl.as_n().expect("a number").parse().unwrap();
            let now = chrono::Utc::now().timestamp();
            assert!(
                (now + 7 * 86_400 - 600..=now + 7 * 86_400).contains(&ttl),
                "{ttl}"
            );
            expected.insert(EXPIRES_AT.to_owned(), stored[EXPIRES_AT].clone());
        }
        assert_eq!(stored, expected);
        stored_items.push(stored);
    }
    let stored_product = items::product_item(&ProductRecord {
        sku: n.sku.clone(),
        version_number: 1,
    });
    let stored_cost = cost_of(&stored_items, &stored_product);
    assert_eq!(
        (stored_cost.table_units, stored_cost.index_units),
        (expected_cost.table_units, expected_cost.index_units)
    );
    println!(
        "moto: the store wrote the {} costed items ({} WCU); moto reports no consumed capacity for \
         TransactWriteItems, so it cannot cross-check the units themselves",
        stored_items.len(),
        expected_cost.total()
    );
}
