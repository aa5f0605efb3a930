//! The Product aggregate (book ch. 7-9): batch preference, out of stock, versions, quantity changes.

use allocation::domain::{Batch, DomainError, Event, OrderLine, Product};
use chrono::NaiveDate;

fn today() -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(2026, 11, 21)
}
fn tomorrow() -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(2026, 11, 22)
}
fn later() -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(2026, 12, 31)
}

fn product(sku: &str, batches: &[(&str, u32, Option<NaiveDate>)]) -> Product {
    let batches = batches
        .iter()
        .map(|(reference, qty, eta)| Batch::new(*reference, sku, *qty, *eta).unwrap())
        .collect();
    Product::with_batches(sku, batches).unwrap()
}

fn line(orderid: &str, sku: &str, qty: u32) -> OrderLine {
    OrderLine::new(orderid, sku, qty).unwrap()
}

#[test]
fn test_prefers_current_stock_batches_to_shipments() {
    let mut product = product(
        "RETRO-CLOCK",
        &[
            ("in-stock-batch", 100, None),
            ("shipment-batch", 100, tomorrow()),
        ],
    );
    product.allocate(&line("oref", "RETRO-CLOCK", 10)).unwrap();
    assert_eq!(
        product
            .batch("in-stock-batch")
            .unwrap()
            .available_quantity(),
        90
    );
    assert_eq!(
        product
            .batch("shipment-batch")
            .unwrap()
            .available_quantity(),
        100
    );
}

#[test]
fn test_prefers_earlier_batches() {
    let mut product = product(
        "MINIMALIST-SPOON",
        &[
            ("normal-batch", 100, tomorrow()),
            ("slow-batch", 100, later()),
            ("speedy-batch", 100, today()),
        ],
    );
    product
        .allocate(&line("order1", "MINIMALIST-SPOON", 10))
        .unwrap();
    assert_eq!(
        product.batch("speedy-batch").unwrap().available_quantity(),
        90
    );
    assert_eq!(
        product.batch("normal-batch").unwrap().available_quantity(),
        100
    );
    assert_eq!(
        product.batch("slow-batch").unwrap().available_quantity(),
        100
    );
}

#[test]
fn test_ties_on_eta_are_broken_by_reference() {
    let mut product = product(
        "TWIN-LAMP",
        &[("batch-b", 10, today()), ("batch-a", 10, today())],
    );
    assert_eq!(
        product
            .allocate(&line("o1", "TWIN-LAMP", 1))
            .unwrap()
            .as_deref(),
        Some("batch-a")
    );
}

#[test]
fn test_skips_batches_that_cannot_take_the_line() {
    let mut product = product("BIG-SOFA", &[("small", 1, None), ("large", 10, tomorrow())]);
    assert_eq!(
        product
            .allocate(&line("o1", "BIG-SOFA", 5))
            .unwrap()
            .as_deref(),
        Some("large")
    );
}

#[test]
fn test_returns_allocated_batch_ref() {
    let mut product = product(
        "HIGHBROW-POSTER",
        &[
            ("in-stock-batch-ref", 100, None),
            ("shipment-batch-ref", 100, tomorrow()),
        ],
    );
    let allocation = product
        .allocate(&line("oref", "HIGHBROW-POSTER", 10))
        .unwrap();
    assert_eq!(allocation.as_deref(), Some("in-stock-batch-ref"));
}

#[test]
fn test_records_out_of_stock_event_if_cannot_allocate() {
    let mut product = product("SMALL-FORK", &[("batch1", 10, today())]);
    product.allocate(&line("order1", "SMALL-FORK", 10)).unwrap();
    let allocation = product.allocate(&line("order2", "SMALL-FORK", 1)).unwrap();
    assert_eq!(
        product.events().last(),
        Some(&Event::OutOfStock {
            sku: "SMALL-FORK".into(),
            orderid: Some("order2".into()),
            qty: Some(1),
        })
    );
    assert_eq!(allocation, None);
    assert_eq!(product.batch("batch1").unwrap().available_quantity(), 0);
}

#[test]
fn test_records_allocated_event() {
    let mut product = product("SMALL-FORK", &[("batch1", 10, None)]);
    product.allocate(&line("order1", "SMALL-FORK", 3)).unwrap();
    assert_eq!(
        product.events(),
        [Event::Allocated {
            orderid: "order1".into(),
            sku: "SMALL-FORK".into(),
            qty: 3,
            batchref: "batch1".into()
        }]
    );
}

#[test]
fn test_increments_version_number() {
    let mut product = product("SCANDI-PEN", &[("b1", 100, None)]);
    let before = product.version_number();
    product.allocate(&line("oref", "SCANDI-PEN", 10)).unwrap();
    assert_eq!(product.version_number(), before + 1);
}

#[test]
fn test_allocating_the_same_line_twice_answers_the_same_batch_and_changes_nothing() {
    let mut product = product("ANGULAR-DESK", &[("b1", 2, None), ("b2", 100, tomorrow())]);
    let first = product.allocate(&line("o1", "ANGULAR-DESK", 2)).unwrap();
    let (version, events) = (product.version_number(), product.events().len());
    let again = product.allocate(&line("o1", "ANGULAR-DESK", 2)).unwrap();
    assert_eq!(first, again);
    assert_eq!(product.version_number(), version);
    assert_eq!(product.events().len(), events);
    assert_eq!(product.batch("b2").unwrap().available_quantity(), 100);
}

#[test]
fn test_out_of_stock_changes_nothing_not_even_the_version() {
    let mut product = product("NOTHING", &[("b1", 1, None)]);
    let version = product.version_number();
    assert_eq!(product.allocate(&line("o1", "NOTHING", 5)).unwrap(), None);
    assert_eq!(product.batch("b1").unwrap().available_quantity(), 1);
    assert_eq!(
        product.version_number(),
        version,
        "concurrent allocations stay valid"
    );
    assert!(product.changes().is_empty());
}

#[test]
fn test_a_loaded_product_refuses_a_line_it_was_not_loaded_with() {
    let batch = Batch::restore("b1", "LOADED", 10, None, 4).unwrap();
    let mut product = Product::restore("LOADED", 7, vec![batch]).unwrap();
    assert_eq!(
        product.allocate(&line("o1", "LOADED", 1)),
        Err(DomainError::LineNotLoaded("o1".into()))
    );
    product.restore_no_line("o1");
    product
        .restore_line(&line("o2", "LOADED", 4), "b1")
        .unwrap();
    assert_eq!(
        product
            .allocate(&line("o1", "LOADED", 1))
            .unwrap()
            .as_deref(),
        Some("b1")
    );
    assert_eq!(
        product
            .allocate(&line("o2", "LOADED", 4))
            .unwrap()
            .as_deref(),
        Some("b1"),
        "already allocated: the same batch"
    );
    assert_eq!(product.batch("b1").unwrap().allocated_quantity(), 5);
}

#[test]
fn test_a_shrink_without_its_lines_loaded_is_refused() {
    let batch = Batch::restore("b1", "PARTIAL", 10, None, 10).unwrap();
    let mut product = Product::restore("PARTIAL", 3, vec![batch]).unwrap();
    assert_eq!(
        product.change_batch_quantity("b1", 5),
        Err(DomainError::LinesNotLoaded("b1".into()))
    );
    // Raising, or lowering within what is free, needs no line.
    product.change_batch_quantity("b1", 12).unwrap();
    assert_eq!(product.batch("b1").unwrap().purchased_quantity(), 12);
}

#[test]
fn test_change_batch_quantity_deallocates_until_the_batch_fits() {
    let mut product = product("INDIFFERENT-TABLE", &[("batch1", 50, None)]);
    for (order, qty) in [("order1", 20), ("order2", 20), ("order3", 5)] {
        product
            .allocate(&line(order, "INDIFFERENT-TABLE", qty))
            .unwrap();
    }
    product.take_events();
    product.change_batch_quantity("batch1", 25).unwrap();
    let batch = product.batch("batch1").unwrap();
    assert_eq!(batch.purchased_quantity(), 25);
    assert!(batch.available_quantity() >= 0);
    let required: Vec<_> = product
        .events()
        .iter()
        .filter(|e| matches!(e, Event::AllocationRequired { .. }))
        .collect();
    assert_eq!(required.len(), 2, "{required:?}");
    assert_eq!(batch.allocated_quantity(), 20);
}

#[test]
fn test_change_batch_quantity_of_an_unknown_batch_is_an_error() {
    let mut product = product("X", &[("b1", 1, None)]);
    assert_eq!(
        product.change_batch_quantity("nope", 1),
        Err(DomainError::UnknownBatch("nope".into()))
    );
}

#[test]
fn test_bounded_change_deallocates_in_steps_and_never_hands_back_what_it_freed() {
    let mut product = product("CRATE", &[("b1", 10, None)]);
    for n in 0..10 {
        product
            .allocate(&line(&format!("o{n}"), "CRATE", 1))
            .unwrap();
    }
    product.take_events();
    assert_eq!(product.change_batch_quantity_bounded("b1", 0, 4), Ok(false));
    let batch = product.batch("b1").unwrap();
    assert_eq!(batch.allocated_quantity(), 6);
    assert_eq!(
        batch.purchased_quantity(),
        6,
        "lowered as far as the step allows: the freed room is gone"
    );
    assert_eq!(batch.available_quantity(), 0);
    assert_eq!(product.allocate(&line("late", "CRATE", 1)).unwrap(), None);
    assert_eq!(product.change_batch_quantity_bounded("b1", 0, 4), Ok(false));
    assert_eq!(product.change_batch_quantity_bounded("b1", 0, 4), Ok(true));
    assert_eq!(product.batch("b1").unwrap().purchased_quantity(), 0);
    let required = product
        .events()
        .iter()
        .filter(|e| matches!(e, Event::AllocationRequired { .. }))
        .count();
    assert_eq!(required, 10);
}

#[test]
fn test_deallocation_takes_the_greatest_order_ids_first() {
    let mut product = product("ORDERED", &[("b1", 10, None)]);
    for order in ["o-b", "o-d", "o-a", "o-c"] {
        product.allocate(&line(order, "ORDERED", 2)).unwrap();
    }
    product.take_events();
    product.change_batch_quantity("b1", 4).unwrap();
    let gone: Vec<String> = product
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::AllocationRequired { orderid, .. } => Some(orderid.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(gone, ["o-d", "o-c"]);
}

#[test]
fn test_batch_references_are_unique_within_a_product() {
    let mut product = product("DUP", &[("b1", 1, None)]);
    let again = Batch::new("b1", "DUP", 5, None).unwrap();
    assert_eq!(
        product.add_batch(again),
        Err(DomainError::DuplicateBatch("b1".into()))
    );
}

#[test]
fn test_a_batch_of_another_sku_is_refused() {
    let mut product = product("ONE", &[]);
    let other = Batch::new("b1", "TWO", 5, None).unwrap();
    assert!(matches!(
        product.add_batch(other),
        Err(DomainError::SkuMismatch { .. })
    ));
}
