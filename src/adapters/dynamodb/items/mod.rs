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
/// The product item's list of batches.
const BATCHES: &str = "batches";

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

/// `pk = ORDER#<orderid>`, `sk = LINE#<sku>`.
pub fn line_key(orderid: &str, sku: &str) -> Item {
    key(order_pk(orderid), line_sk(sku))
}

pub fn batchref_key(reference: &str) -> Item {
    key(batchref_pk(reference), BATCHREF_SK.to_owned())
}

pub fn outbox_key(sku: &str, version_number: u64, slot: &str) -> Item {
    key(outbox_pk(sku), outbox_sk(version_number, slot))
}

/// The product item: the product record with every batch of the SKU in `batches`, so one
/// strongly consistent GetItem reads the whole aggregate as of one version.
pub fn product_item<'a>(
    record: &ProductRecord,
    batches: impl IntoIterator<Item = &'a BatchRecord>,
) -> Item {
    let mut item = product_key(&record.sku);
    item.insert(ENTITY.to_owned(), s("product"));
    item.insert("sku".to_owned(), s(&record.sku));
    item.insert("version_number".to_owned(), n(record.version_number));
    if let Some(since) = record.out_of_stock_since {
        item.insert("out_of_stock_since".to_owned(), n(since));
    }
    let batches = batches.into_iter().map(batch_value).collect();
    item.insert(BATCHES.to_owned(), AttributeValue::L(batches));
    item
}

/// One batch inside the product item: `{ref, qty, allocated, eta}` (the API's short names keep the
/// item small; `eta` absent when in stock).
fn batch_value(record: &BatchRecord) -> AttributeValue {
    let mut batch = HashMap::from([
        ("ref".to_owned(), s(&record.reference)),
        ("qty".to_owned(), n(record.purchased_quantity)),
        ("allocated".to_owned(), n(record.allocated_quantity)),
    ]);
    if let Some(eta) = record.eta {
        batch.insert("eta".to_owned(), s(eta.format(ETA_FORMAT).to_string()));
    }
    AttributeValue::M(batch)
}

/// The item that maps a batch reference to its SKU (one per reference, across all SKUs).
pub fn batchref_item(record: &BatchRecord) -> Item {
    let mut item = batchref_key(&record.reference);
    item.insert(ENTITY.to_owned(), s("batchref"));
    item.insert("sku".to_owned(), s(&record.sku));
    item
}

/// An order's line of one SKU, in the `lines` index under its batch (allocated) or its SKU's
/// waiting lines (waiting).
pub fn line_item(record: &AllocationRecord) -> Item {
    let mut item = line_key(&record.orderid, &record.sku);
    item.insert(ENTITY.to_owned(), s("line"));
    item.insert("orderid".to_owned(), s(&record.orderid));
    item.insert("sku".to_owned(), s(&record.sku));
    item.insert("qty".to_owned(), n(record.qty));
    if let Some(batchref) = &record.batchref {
        item.insert("batchref".to_owned(), s(batchref));
        item.insert(LINES_PK.to_owned(), s(batch_lines_pk(batchref)));
        item.insert(LINES_SK.to_owned(), s(&record.orderid));
    } else if let Some(since) = record.waiting_since {
        item.insert("waiting_since".to_owned(), n(since));
        item.insert(LINES_PK.to_owned(), s(waiting_lines_pk(&record.sku)));
        item.insert(
            LINES_SK.to_owned(),
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

/// The product item, parsed: its record and its batches.
pub fn parse_product(item: &Item) -> Result<(ProductRecord, Vec<BatchRecord>), StoreError> {
    let reader = Reader(item);
    if reader.s(SK)? != PRODUCT_SK {
        return Err(reader.corrupt("not a product item"));
    }
    let record = ProductRecord {
        sku: reader.s("sku")?.to_owned(),
        version_number: reader.n("version_number")?,
        out_of_stock_since: reader.n_opt("out_of_stock_since")?,
    };
    let batches = match item.get(BATCHES) {
        Some(AttributeValue::L(batches)) => batches,
        Some(_) => return Err(reader.corrupt("attribute batches is not a list")),
        None => return Err(reader.corrupt("attribute batches is missing")),
    };
    let batches = batches
        .iter()
        .map(|value| match value {
            AttributeValue::M(batch) => batch_record(&reader, &Reader(batch), &record.sku),
            _ => Err(reader.corrupt("a batch is not a map")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((record, batches))
}

fn batch_record(
    item: &Reader<'_>,
    batch: &Reader<'_>,
    sku: &str,
) -> Result<BatchRecord, StoreError> {
    let in_item = |e: StoreError| item.corrupt(&format!("a batch: {e}"));
    let eta = match batch.s_opt("eta").map_err(in_item)? {
        None => None,
        Some(text) => Some(
            NaiveDate::parse_from_str(text, ETA_FORMAT)
                .map_err(|e| item.corrupt(&format!("a batch's eta {text:?}: {e}")))?,
        ),
    };
    Ok(BatchRecord {
        reference: batch.s("ref").map_err(in_item)?.to_owned(),
        sku: sku.to_owned(),
        purchased_quantity: batch.n("qty").map_err(in_item)?,
        allocated_quantity: batch.n("allocated").map_err(in_item)?,
        eta,
    })
}

/// A line item (from the table or the `lines` index).
pub fn parse_line(item: &Item) -> Result<AllocationRecord, StoreError> {
    let reader = Reader(item);
    Ok(AllocationRecord {
        orderid: reader.s("orderid")?.to_owned(),
        sku: reader.s("sku")?.to_owned(),
        qty: reader.n("qty")?,
        batchref: reader.s_opt("batchref")?.map(str::to_owned),
        waiting_since: reader.n_opt("waiting_since")?,
    })
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
