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
mod tests;
