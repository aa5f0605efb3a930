//! The Product aggregate (book ch. 7-9): batch preference, out of stock, versions, quantity changes.

use allocation::domain::{Allocated, AllocationRequired, OutOfStock};
use allocation::domain::{Batch, DomainError, Event, LineStatus, OrderLine, Product};
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
        .map(|(reference, qty, eta)| Batch::parse(*reference, sku, *qty, *eta).unwrap())
        .collect();
    Product::with_batches(sku, batches).unwrap()
}

fn line(orderid: &str, sku: &str, qty: u32) -> OrderLine {
    OrderLine::parse(orderid, sku, qty).unwrap()
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
        Some(&Event::OutOfStock(OutOfStock {
            sku: "SMALL-FORK".into(),
            orderid: Some("order2".into()),
            qty: Some(1),
        }))
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
        [Event::Allocated(Allocated {
            orderid: "order1".into(),
            sku: "SMALL-FORK".into(),
            qty: 3,
            batchref: "batch1".into()
        })]
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
fn test_the_first_refusal_opens_a_stock_out_episode() {
    let mut product = product("NOTHING", &[("b1", 1, None)]);
    let version = product.version_number();
    assert_eq!(product.allocate(&line("o1", "NOTHING", 5)).unwrap(), None);
    assert_eq!(product.batch("b1").unwrap().available_quantity(), 1);
    assert_eq!(product.version_number(), version + 1);
    assert_eq!(product.out_of_stock_since(), Some(version + 1));
    assert_eq!(
        product.events(),
        [Event::OutOfStock(OutOfStock {
            sku: "NOTHING".into(),
            orderid: Some("o1".into()),
            qty: Some(5)
        })]
    );
    assert!(product.changes().is_empty(), "no line, no batch written");
    assert!(
        product.line_status("o1").is_none(),
        "the line is turned away"
    );
}

#[test]
fn test_refusals_during_a_stock_out_change_nothing_not_even_the_version() {
    let mut product = product("NOTHING", &[("b1", 1, None)]);
    product.allocate(&line("o1", "NOTHING", 5)).unwrap();
    product.take_events();
    let version = product.version_number();
    for order in ["o1", "o2", "o3"] {
        assert_eq!(product.allocate(&line(order, "NOTHING", 5)).unwrap(), None);
    }
    assert_eq!(
        product.version_number(),
        version,
        "concurrent allocations stay valid"
    );
    assert!(product.events().is_empty(), "one email per episode");
}

#[test]
fn test_adding_or_raising_stock_ends_the_stock_out() {
    let mut product = product("SHORT", &[("b1", 1, None)]);
    product.allocate(&line("o1", "SHORT", 5)).unwrap();
    product
        .add_batch(Batch::parse("b2", "SHORT", 1, None).unwrap())
        .unwrap();
    assert_eq!(product.out_of_stock_since(), None);
    product.allocate(&line("o2", "SHORT", 5)).unwrap();
    assert!(product.out_of_stock_since().is_some(), "a new episode");
    product.change_batch_quantity("b2", 2).unwrap();
    assert_eq!(product.out_of_stock_since(), None);
    let refusals = product
        .events()
        .iter()
        .filter(|e| matches!(e, Event::OutOfStock(_)))
        .count();
    assert_eq!(refusals, 2);
}

#[test]
fn test_a_line_a_shrink_gives_up_waits_for_stock() {
    let mut product = product("WAIT", &[("b1", 10, None)]);
    product.allocate(&line("o1", "WAIT", 6)).unwrap();
    product.change_batch_quantity("b1", 5).unwrap();
    let version = product.version_number();
    assert_eq!(
        product.line_status("o1"),
        Some((LineStatus::Waiting { since: version }, 6))
    );
    assert!(product.changes().lines.iter().any(|o| &**o == "o1"));
    // Its reallocation finds no stock: it keeps waiting, and the stock-out episode begins.
    assert_eq!(product.reallocate(&line("o1", "WAIT", 6)).unwrap(), None);
    assert_eq!(
        product.line_status("o1"),
        Some((LineStatus::Waiting { since: version }, 6))
    );
    assert!(matches!(
        product.events().last(),
        Some(Event::OutOfStock(_))
    ));
    // With room again, it is allocated like any line.
    product.change_batch_quantity("b1", 6).unwrap();
    assert_eq!(
        product
            .reallocate(&line("o1", "WAIT", 6))
            .unwrap()
            .as_deref(),
        Some("b1")
    );
    assert_eq!(
        product.line("o1").map(|(b, q)| (b.reference(), q)),
        Some(("b1", 6))
    );
}

#[test]
fn test_a_reallocation_of_an_unknown_line_without_stock_keeps_it_waiting() {
    let mut product = product("LOST", &[("b1", 1, None)]);
    assert_eq!(product.reallocate(&line("o1", "LOST", 5)).unwrap(), None);
    assert!(matches!(
        product.line_status("o1"),
        Some((LineStatus::Waiting { .. }, 5))
    ));
}

#[test]
fn test_new_stock_is_offered_to_waiting_lines_oldest_first() {
    let mut product = product("QUEUE", &[("b1", 9, None)]);
    for (order, qty) in [("o1", 4), ("o2", 3), ("o3", 2)] {
        product.allocate(&line(order, "QUEUE", qty)).unwrap();
    }
    // Greatest order id first: o3 waits first, then o2, then o1 (each chunk its own version).
    for target in [7, 4, 0] {
        product
            .change_batch_quantity_bounded("b1", target, 1)
            .unwrap();
        product.clear_changes();
    }
    product.take_events();
    // 5 units: o3 (2) and o2 (3) fit, oldest first; o1 (4) would not.
    product
        .add_batch(Batch::parse("b2", "QUEUE", 5, None).unwrap())
        .unwrap();
    assert_eq!(product.offer_waiting_lines(), 2);
    let offered: Vec<_> = product
        .events()
        .iter()
        .map(|e| match e {
            Event::AllocationRequired(AllocationRequired { orderid, .. }) => orderid.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(offered, ["o3", "o2"]);
    assert!(
        matches!(
            product.line_status("o3"),
            Some((LineStatus::Waiting { .. }, 2))
        ),
        "a line waits until its own reallocation allocates it"
    );
}

#[test]
fn test_an_older_line_that_does_not_fit_is_not_overtaken() {
    let mut product = product("FAIR", &[("b1", 6, None)]);
    product.allocate(&line("o2", "FAIR", 5)).unwrap();
    product.allocate(&line("o1", "FAIR", 1)).unwrap();
    product.change_batch_quantity_bounded("b1", 1, 1).unwrap();
    product.clear_changes();
    product.change_batch_quantity_bounded("b1", 0, 1).unwrap();
    product.take_events();
    // o2 (5) has waited longest; 1 unit would fit o1 but not o2: nothing is offered.
    product
        .add_batch(Batch::parse("b2", "FAIR", 1, None).unwrap())
        .unwrap();
    assert_eq!(product.offer_waiting_lines(), 0);
    assert!(product.events().is_empty());
}

#[test]
fn test_a_loaded_product_refuses_a_line_it_was_not_loaded_with() {
    let batch = Batch::restore("b1", "LOADED", 10, None, 4).unwrap();
    let mut product = Product::restore("LOADED", 7, vec![batch], None).unwrap();
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
    let mut product = Product::restore("PARTIAL", 3, vec![batch], None).unwrap();
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
        .filter(|e| matches!(e, Event::AllocationRequired(_)))
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
        .filter(|e| matches!(e, Event::AllocationRequired(_)))
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
            Event::AllocationRequired(AllocationRequired { orderid, .. }) => {
                Some(orderid.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(gone, ["o-d", "o-c"]);
}

#[test]
fn test_batch_references_are_unique_within_a_product() {
    let mut product = product("DUP", &[("b1", 1, None)]);
    let again = Batch::parse("b1", "DUP", 5, None).unwrap();
    assert_eq!(
        product.add_batch(again),
        Err(DomainError::DuplicateBatch("b1".into()))
    );
}

#[test]
fn test_a_batch_of_another_sku_is_refused() {
    let mut product = product("ONE", &[]);
    let other = Batch::parse("b1", "TWO", 5, None).unwrap();
    assert!(matches!(
        product.add_batch(other),
        Err(DomainError::SkuMismatch { .. })
    ));
}

/// A store whose reads are not one snapshot writes each line on condition that it is as loaded: the
/// product remembers that until the change is committed.
#[test]
fn a_product_remembers_each_line_as_it_was_loaded_until_committed() {
    let batch = Batch::restore("b1", "LAMP", 10, None, 5).unwrap();
    let mut product = Product::restore("LAMP", 4, vec![batch], None).unwrap();
    product.restore_line(&line("o3", "LAMP", 5), "b1").unwrap();
    product.restore_no_line("o4");
    product.allocate(&line("o4", "LAMP", 2)).unwrap();
    product.change_batch_quantity("b1", 2).unwrap();

    let stored = |p: &Product, o: &str| p.stored_line_status(o).map(|(s, q)| (format!("{s:?}"), q));
    let now = |p: &Product, o: &str| p.line_status(o).map(|(s, q)| (format!("{s:?}"), q));
    assert!(matches!(
        product.stored_line_status("o3"),
        Some((LineStatus::Allocated(b), 5)) if b.reference() == "b1"
    ));
    assert!(matches!(
        product.line_status("o3"),
        Some((LineStatus::Waiting { .. }, 5))
    ));
    assert_eq!(stored(&product, "o4"), None, "loaded as absent");
    assert!(now(&product, "o4").is_some());

    product.clear_changes();
    assert_eq!(stored(&product, "o3"), now(&product, "o3"));
    assert_eq!(stored(&product, "o4"), now(&product, "o4"));
}
