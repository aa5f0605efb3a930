//! Round trips and malformed items of the item mapping.

use super::*;
use crate::domain::Event;
use crate::domain::OutOfStock;

fn batch(eta: Option<NaiveDate>) -> BatchRecord {
    BatchRecord {
        reference: "b-1".into(),
        sku: "LAMP".into(),
        purchased_quantity: 20,
        allocated_quantity: 7,
        eta,
    }
}

#[test]
fn every_record_round_trips() {
    let product = ProductRecord {
        sku: "LAMP".into(),
        version_number: 42,
        out_of_stock_since: Some(40),
    };
    assert_eq!(
        parse_product_part(&product_item(&product)).unwrap(),
        ProductPart::Product(product)
    );
    for eta in [None, NaiveDate::from_ymd_opt(2026, 3, 9)] {
        let record = batch(eta);
        let item = batch_item(&record);
        assert_eq!(item.contains_key("eta"), eta.is_some());
        assert_eq!(
            parse_product_part(&item).unwrap(),
            ProductPart::Batch(record.clone())
        );
        assert_eq!(parse_batchref(&batchref_item(&record)).unwrap(), "LAMP");
    }
    let line = AllocationRecord {
        orderid: "o-1".into(),
        sku: "LAMP".into(),
        qty: 3,
        batchref: Some("b-1".into()),
        waiting_since: None,
    };
    let waiting = AllocationRecord {
        batchref: None,
        waiting_since: Some(7),
        ..line.clone()
    };
    let item = allocation_item(&waiting);
    assert_eq!(
        item[LSI1SK],
        AttributeValue::S("WAITING#00000000000000000007#o-1".into())
    );
    assert_eq!(parse_allocation(&item).unwrap(), waiting);
    let item = allocation_item(&line);
    assert_eq!(item[GSI1PK], AttributeValue::S("ORDER#o-1".into()));
    assert_eq!(item[GSI1SK], AttributeValue::S("LAMP".into()));
    assert_eq!(
        parse_product_part(&item).unwrap(),
        ProductPart::Allocation(line.clone())
    );
    assert_eq!(parse_allocation(&item).unwrap(), line);
}

#[test]
fn outbox_items_carry_the_envelope_and_stay_pending_without_a_ttl() {
    let envelope = EventEnvelope {
        id: "LAMP:2:0".into(),
        correlation_id: Some("req-1".into()),
        occurred_at: None,
        event: Event::OutOfStock(OutOfStock {
            sku: "LAMP".into(),
            orderid: Some("o-1".into()),
            qty: Some(3),
        }),
    };
    let record = OutboxRecord {
        sku: "LAMP".into(),
        version_number: 2,
        slot: "000000".into(),
        envelope,
    };
    let item = outbox_item(&record, 1_000).unwrap();
    assert_eq!(item[PK], AttributeValue::S("OUTBOX#LAMP".into()));
    assert_eq!(
        item[SK],
        AttributeValue::S("00000000000000000002#000000".into())
    );
    assert_eq!(item["event_type"], AttributeValue::S("OutOfStock".into()));
    assert_eq!(item[CREATED_AT], AttributeValue::N("1000".into()));
    assert_eq!(
        item[PENDING_SHARD],
        AttributeValue::S(pending_shard("LAMP:2:0"))
    );
    assert!(
        !item.contains_key(EXPIRES_AT),
        "expires only once published"
    );
    assert_eq!(parse_outbox(&item).unwrap(), record.envelope);
}

#[test]
fn malformed_items_are_corrupt_and_name_their_key() {
    let mut item = batch_item(&batch(None));
    item.insert("purchased_quantity".into(), AttributeValue::N("-1".into()));
    let error = parse_product_part(&item).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt(m) if m.contains("pk=PRODUCT#LAMP sk=BATCH#b-1")),
        "{error}"
    );
    let mut item = batch_item(&batch(None));
    item.insert("eta".into(), AttributeValue::S("tomorrow".into()));
    assert!(matches!(
        parse_product_part(&item),
        Err(StoreError::Corrupt(_))
    ));
    let mut item = product_item(&ProductRecord {
        sku: "LAMP".into(),
        version_number: 1,
        out_of_stock_since: None,
    });
    item.insert(SK.into(), AttributeValue::S("SURPRISE".into()));
    assert!(matches!(
        parse_product_part(&item),
        Err(StoreError::Corrupt(_))
    ));
    item.remove(SK);
    assert!(matches!(
        parse_product_part(&item),
        Err(StoreError::Corrupt(_))
    ));
}
