//! Batches (book ch. 1/5): available quantity, what can be allocated, idempotent allocation.

use allocation::domain::{
    Allocate, Batch, CreateBatch, DomainError, OrderLine, Product, Quantity, MAX_QUANTITY,
};
use chrono::NaiveDate;

fn make_batch_and_line(sku: &str, batch_qty: u32, line_qty: u32) -> (Batch, OrderLine) {
    (
        Batch::parse(
            "batch-001",
            sku,
            batch_qty,
            NaiveDate::from_ymd_opt(2026, 11, 21),
        )
        .unwrap(),
        OrderLine::parse("order-123", sku, line_qty).unwrap(),
    )
}

#[test]
fn test_allocating_to_a_batch_reduces_the_available_quantity() {
    let (mut batch, line) = make_batch_and_line("SMALL-TABLE", 20, 2);
    assert!(batch.allocate(&line));
    assert_eq!(batch.available_quantity(), 18);
}

#[test]
fn test_can_allocate_if_available_greater_than_required() {
    let (large_batch, small_line) = make_batch_and_line("ELEGANT-LAMP", 20, 2);
    assert!(large_batch.can_allocate(&small_line));
}

#[test]
fn test_cannot_allocate_if_available_smaller_than_required() {
    let (small_batch, large_line) = make_batch_and_line("ELEGANT-LAMP", 2, 20);
    assert!(!small_batch.can_allocate(&large_line));
}

#[test]
fn test_can_allocate_if_available_equal_to_required() {
    let (batch, line) = make_batch_and_line("ELEGANT-LAMP", 2, 2);
    assert!(batch.can_allocate(&line));
}

#[test]
fn test_cannot_allocate_if_skus_do_not_match() {
    let batch = Batch::parse("batch-001", "UNCOMFORTABLE-CHAIR", 100, None).unwrap();
    let different_sku_line = OrderLine::parse("order-123", "EXPENSIVE-TOASTER", 10).unwrap();
    assert!(!batch.can_allocate(&different_sku_line));
}

#[test]
fn test_allocation_is_idempotent() {
    // The product knows which batch holds each order's line, so idempotency is its rule.
    let (batch, line) = make_batch_and_line("ANGULAR-DESK", 20, 2);
    let mut product = Product::with_batches("ANGULAR-DESK", vec![batch]).unwrap();
    product.allocate(&line).unwrap();
    product.allocate(&line).unwrap();
    assert_eq!(product.batch("batch-001").unwrap().available_quantity(), 18);
}

#[test]
fn test_deallocating_a_line_frees_its_quantity() {
    let (mut batch, line) = make_batch_and_line("DECORATIVE-TRINKET", 20, 2);
    batch.allocate(&line);
    batch.deallocate(&line);
    assert_eq!(batch.available_quantity(), 20);
}

#[test]
fn test_deallocating_never_frees_more_than_was_allocated() {
    let (mut batch, unallocated_line) = make_batch_and_line("DECORATIVE-TRINKET", 20, 2);
    batch.deallocate(&unallocated_line);
    assert_eq!(batch.available_quantity(), 20);
}

#[test]
fn test_a_stored_batch_keeps_its_allocated_total() {
    let batch = Batch::restore("b1", "LAMP", 20, None, 15).unwrap();
    assert_eq!(batch.allocated_quantity(), 15);
    assert_eq!(batch.available_quantity(), 5);
}

#[test]
fn test_order_lines_need_a_positive_quantity_and_identifiers() {
    assert_eq!(
        OrderLine::parse("o1", "SKU", 0),
        Err(DomainError::QuantityOutOfRange {
            min: 1,
            max: MAX_QUANTITY
        })
    );
    assert_eq!(
        Batch::parse("b1", "SKU", 1_000_000_001, None).map(|b| b.purchased_quantity()),
        Err(DomainError::QuantityOutOfRange {
            min: 0,
            max: MAX_QUANTITY
        })
    );
    assert_eq!(
        OrderLine::parse("", "SKU", 1),
        Err(DomainError::EmptyIdentifier("orderid"))
    );
    assert_eq!(
        OrderLine::parse("o1", "  ", 1),
        Err(DomainError::EmptyIdentifier("sku"))
    );
    assert!(matches!(
        OrderLine::parse("o".repeat(129), "SKU", 1),
        Err(DomainError::IdentifierTooLong {
            field: "orderid",
            ..
        })
    ));
}

#[test]
fn test_batches_may_hold_zero_but_need_a_reference() {
    assert!(Batch::parse("b1", "SKU", 0, None).is_ok());
    assert_eq!(
        Batch::parse("", "SKU", 5, None),
        Err(DomainError::EmptyIdentifier("ref"))
    );
}

#[test]
fn test_a_line_and_a_batch_are_made_of_the_values_a_command_carries() {
    let cmd = Allocate::new("o1", "SKU", 3).unwrap();
    let line = OrderLine::new(cmd.orderid.clone(), cmd.sku.clone(), cmd.qty).unwrap();
    assert_eq!((line.orderid(), line.sku(), line.qty()), ("o1", "SKU", 3));
    // The line's own rule holds whatever carried the quantity.
    assert_eq!(
        OrderLine::new(cmd.orderid, cmd.sku, Quantity::new(0).unwrap()),
        Err(DomainError::QuantityOutOfRange {
            min: 1,
            max: MAX_QUANTITY
        })
    );
    let create = CreateBatch::new("b1", "SKU", 0, None).unwrap();
    let batch = Batch::new(create.reference, create.sku, create.qty, create.eta);
    assert_eq!((batch.reference(), batch.purchased_quantity()), ("b1", 0));
}
