//! Records (`adapters::records`) to DynamoDB items and back: the one item mapping of the DynamoDB store.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::NaiveDate;

use super::keys::*;
use crate::adapters::records::{AllocationRecord, BatchRecord, OutboxRecord, ProductRecord};
use crate::domain::EventEnvelope;
use crate::service::StoreError;

/// A DynamoDB item (or key): attribute name → value.
pub type Item = HashMap<String, AttributeValue>;

const ETA_FORMAT: &str = "%Y-%m-%d";

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

/// `pk = PRODUCT#<sku>`, `sk = PRODUCT`.
pub fn product_key(sku: &str) -> Item {
    key(product_pk(sku), PRODUCT_SK.to_owned())
}

pub fn batch_key(sku: &str, reference: &str) -> Item {
    key(product_pk(sku), batch_sk(reference))
}

pub fn allocation_key(sku: &str, orderid: &str) -> Item {
    key(product_pk(sku), allocation_sk(orderid))
}

pub fn batchref_key(reference: &str) -> Item {
    key(batchref_pk(reference), BATCHREF_SK.to_owned())
}

pub fn outbox_key(sku: &str, version_number: u64, slot: &str) -> Item {
    key(outbox_pk(sku), outbox_sk(version_number, slot))
}

pub fn product_item(record: &ProductRecord) -> Item {
    let mut item = product_key(&record.sku);
    item.insert(ENTITY.to_owned(), s("product"));
    item.insert("sku".to_owned(), s(&record.sku));
    item.insert("version_number".to_owned(), n(record.version_number));
    if let Some(since) = record.out_of_stock_since {
        item.insert("out_of_stock_since".to_owned(), n(since));
    }
    item
}

pub fn batch_item(record: &BatchRecord) -> Item {
    let mut item = batch_key(&record.sku, &record.reference);
    item.insert(ENTITY.to_owned(), s("batch"));
    item.insert("reference".to_owned(), s(&record.reference));
    item.insert("sku".to_owned(), s(&record.sku));
    item.insert(
        "purchased_quantity".to_owned(),
        n(record.purchased_quantity),
    );
    item.insert(
        "allocated_quantity".to_owned(),
        n(record.allocated_quantity),
    );
    if let Some(eta) = record.eta {
        item.insert("eta".to_owned(), s(eta.format(ETA_FORMAT).to_string()));
    }
    item
}

/// The item that maps a batch reference to its SKU (one per reference, across all SKUs).
pub fn batchref_item(record: &BatchRecord) -> Item {
    let mut item = batchref_key(&record.reference);
    item.insert(ENTITY.to_owned(), s("batchref"));
    item.insert("sku".to_owned(), s(&record.sku));
    item
}

pub fn allocation_item(record: &AllocationRecord) -> Item {
    let mut item = allocation_key(&record.sku, &record.orderid);
    item.insert(ENTITY.to_owned(), s("allocation"));
    item.insert("orderid".to_owned(), s(&record.orderid));
    item.insert("sku".to_owned(), s(&record.sku));
    item.insert("qty".to_owned(), n(record.qty));
    item.insert(GSI1PK.to_owned(), s(order_gsi_pk(&record.orderid)));
    item.insert(GSI1SK.to_owned(), s(&record.sku));
    if let Some(batchref) = &record.batchref {
        item.insert("batchref".to_owned(), s(batchref));
        item.insert(
            LSI1SK.to_owned(),
            s(batch_line_sk(batchref, &record.orderid)),
        );
    } else if let Some(since) = record.waiting_since {
        item.insert("waiting_since".to_owned(), n(since));
        item.insert(
            LSI1SK.to_owned(),
            s(waiting_line_sk(since, &record.orderid)),
        );
    }
    item
}

/// An outbox item, committed at `now` (epoch seconds): pending (in the `pending` index) until it is
/// published; only then does it get its TTL.
pub fn outbox_item(record: &OutboxRecord, now: i64) -> Result<Item, StoreError> {
    let payload = serde_json::to_string(&record.envelope).map_err(|e| {
        StoreError::Corrupt(format!(
            "event {} cannot be serialized: {e}",
            record.envelope.id
        ))
    })?;
    let mut item = outbox_key(&record.sku, record.version_number, &record.slot);
    item.insert(ENTITY.to_owned(), s("outbox"));
    item.insert(
        "event_type".to_owned(),
        s(record.envelope.event.type_name()),
    );
    item.insert("event_id".to_owned(), s(&record.envelope.id));
    item.insert("payload".to_owned(), s(payload));
    item.insert(CREATED_AT.to_owned(), n(now));
    item.insert(
        PENDING_SHARD.to_owned(),
        s(pending_shard(&record.envelope.id)),
    );
    Ok(item)
}

/// One item of a product's partition, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductPart {
    Product(ProductRecord),
    Batch(BatchRecord),
    Allocation(AllocationRecord),
}

/// Parses an item of a `PRODUCT#<sku>` partition by its sort key.
pub fn parse_product_part(item: &Item) -> Result<ProductPart, StoreError> {
    let reader = Reader(item);
    let sk = reader.s(SK)?;
    if sk == PRODUCT_SK {
        return Ok(ProductPart::Product(ProductRecord {
            sku: reader.s("sku")?.to_owned(),
            version_number: reader.n("version_number")?,
            out_of_stock_since: reader.n_opt("out_of_stock_since")?,
        }));
    }
    if let Some(reference) = sk.strip_prefix(BATCH_SK_PREFIX) {
        let eta = match item.get("eta") {
            None => None,
            Some(_) => {
                let text = reader.s("eta")?;
                Some(
                    NaiveDate::parse_from_str(text, ETA_FORMAT)
                        .map_err(|e| reader.corrupt(&format!("eta {text:?}: {e}")))?,
                )
            }
        };
        let record = BatchRecord {
            reference: reader.s("reference")?.to_owned(),
            sku: reader.s("sku")?.to_owned(),
            purchased_quantity: reader.n("purchased_quantity")?,
            allocated_quantity: reader.n("allocated_quantity")?,
            eta,
        };
        if record.reference != reference {
            return Err(reader.corrupt("reference differs from the sort key"));
        }
        return Ok(ProductPart::Batch(record));
    }
    if let Some(orderid) = sk.strip_prefix(ALLOCATION_SK_PREFIX) {
        let record = allocation_record(&reader)?;
        if record.orderid != orderid {
            return Err(reader.corrupt("orderid differs from the sort key"));
        }
        return Ok(ProductPart::Allocation(record));
    }
    Err(reader.corrupt("unknown sort key in a product partition"))
}

/// An allocation item (from the table or the `by_order` index).
pub fn parse_allocation(item: &Item) -> Result<AllocationRecord, StoreError> {
    allocation_record(&Reader(item))
}

/// The SKU of a batch-reference item.
pub fn parse_batchref(item: &Item) -> Result<String, StoreError> {
    Reader(item).s("sku").map(str::to_owned)
}

/// The event of an outbox item.
pub fn parse_outbox(item: &Item) -> Result<EventEnvelope, StoreError> {
    let reader = Reader(item);
    let payload = reader.s("payload")?;
    serde_json::from_str(payload).map_err(|e| reader.corrupt(&format!("payload: {e}")))
}

fn allocation_record(reader: &Reader<'_>) -> Result<AllocationRecord, StoreError> {
    Ok(AllocationRecord {
        orderid: reader.s("orderid")?.to_owned(),
        sku: reader.s("sku")?.to_owned(),
        qty: reader.n("qty")?,
        batchref: reader.s_opt("batchref")?.map(str::to_owned),
        waiting_since: reader.n_opt("waiting_since")?,
    })
}

/// Typed access to an item's attributes; every failure is `Corrupt` and names the item's key.
struct Reader<'a>(&'a Item);

impl Reader<'_> {
    fn key(&self) -> String {
        let part = |name: &str| match self.0.get(name) {
            Some(AttributeValue::S(value)) => value.clone(),
            Some(other) => format!("{other:?}"),
            None => "<missing>".to_owned(),
        };
        format!("pk={} sk={}", part(PK), part(SK))
    }

    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("item {}: {what}", self.key()))
    }

    fn s(&self, name: &str) -> Result<&str, StoreError> {
        match self.0.get(name) {
            Some(AttributeValue::S(value)) => Ok(value),
            Some(_) => Err(self.corrupt(&format!("attribute {name} is not a string"))),
            None => Err(self.corrupt(&format!("attribute {name} is missing"))),
        }
    }

    fn s_opt(&self, name: &str) -> Result<Option<&str>, StoreError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(_) => self.s(name).map(Some),
        }
    }

    fn n_opt<T: FromStr>(&self, name: &str) -> Result<Option<T>, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            None => Ok(None),
            Some(_) => self.n(name).map(Some),
        }
    }

    fn n<T: FromStr>(&self, name: &str) -> Result<T, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            Some(AttributeValue::N(value)) => value
                .parse()
                .map_err(|e| self.corrupt(&format!("attribute {name} = {value}: {e}"))),
            Some(_) => Err(self.corrupt(&format!("attribute {name} is not a number"))),
            None => Err(self.corrupt(&format!("attribute {name} is missing"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;

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
            event: Event::OutOfStock {
                sku: "LAMP".into(),
                orderid: Some("o-1".into()),
                qty: Some(3),
            },
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
}
