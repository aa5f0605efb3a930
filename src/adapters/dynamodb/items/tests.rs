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

fn product() -> ProductRecord {
    ProductRecord {
        sku: "LAMP".into(),
        version_number: 42,
        out_of_stock_since: Some(40),
    }
}

#[test]
fn every_record_round_trips() {
    let batches = vec![batch(None), {
        let mut later = batch(NaiveDate::from_ymd_opt(2026, 3, 9));
        later.reference = "b-2".into();
        later
    }];
    let item = product_item(&product(), &batches);
    assert_eq!(parse_product(&item).unwrap(), (product(), batches.clone()));
    assert_eq!(
        parse_product(&product_item(&product(), &[])).unwrap(),
        (product(), vec![])
    );
    assert_eq!(parse_batchref(&batchref_item(&batches[0])).unwrap(), "LAMP");
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
    let item = line_item(&waiting);
    assert_eq!(item[LINES_PK], AttributeValue::S("WAITING#LAMP".into()));
    assert_eq!(
        item[LINES_SK],
        AttributeValue::S("00000000000000000007#o-1".into())
    );
    assert_eq!(parse_line(&item).unwrap(), waiting);
    let item = line_item(&line);
    assert_eq!(item[PK], AttributeValue::S("ORDER#o-1".into()));
    assert_eq!(item[SK], AttributeValue::S("LINE#LAMP".into()));
    assert_eq!(item[LINES_PK], AttributeValue::S("BATCH#b-1".into()));
    assert_eq!(item[LINES_SK], AttributeValue::S("o-1".into()));
    assert_eq!(parse_line(&item).unwrap(), line);
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
    let corrupt = |item: &Item| match parse_product(item) {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("not corrupt: {other:?}"),
    };
    let with_batch = |batch: AttributeValue| {
        let mut item = product_item(&product(), &[]);
        item.insert("batches".into(), AttributeValue::L(vec![batch]));
        item
    };
    let AttributeValue::L(good) = &product_item(&product(), &[batch(None)])["batches"] else {
        panic!("batches is a list");
    };
    let AttributeValue::M(good) = good[0].clone() else {
        panic!("a batch is a map");
    };
    let mut negative = good.clone();
    negative.insert("qty".into(), AttributeValue::N("-1".into()));
    let message = corrupt(&with_batch(AttributeValue::M(negative)));
    assert!(message.contains("pk=PRODUCT#LAMP sk=PRODUCT"), "{message}");
    let mut late = good.clone();
    late.insert("eta".into(), AttributeValue::S("tomorrow".into()));
    corrupt(&with_batch(AttributeValue::M(late)));
    corrupt(&with_batch(AttributeValue::S("b-1".into())));
    let mut item = product_item(&product(), &[]);
    item.remove("batches");
    corrupt(&item);
    item = product_item(&product(), &[]);
    item.insert(SK.into(), AttributeValue::S("SURPRISE".into()));
    corrupt(&item);
    item.remove(SK);
    corrupt(&item);
}
