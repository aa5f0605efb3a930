//! `DynamoDbStore`: the store ports (`service::Store`) over one DynamoDB table (a load is one round of point reads, a
//! commit one transaction).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;

use super::commit::{self, Target, MAX_LINES_PER_COMMIT, MAX_TRANSACTION_ACTIONS};
use super::errors::{commit_error, unavailable};
use super::items::{self, Item};
use super::keys::{self, LINES_INDEX, LINES_PK, LINE_SK_PREFIX, PK, SK};
use crate::adapters::records::{
    restore_lines, restore_product, AllocationRecord, LineCollector, LinesToFree, WaitingLines,
};
use crate::domain::{EventEnvelope, Product};
use crate::service::{
    exponential_backoff, AllocationView, AllocationsView, OutboxAudit, ProductRepository,
    ProductWrite, RecordsRead, StoreError,
};

/// How many times a `BatchGetItem` asks again for the keys DynamoDB left unprocessed (it does so
/// under load), pausing 10 ms doubling in between (about 0.3 s in all) before the load fails as
/// throttled.
const UNPROCESSED_RETRIES: u32 = 5;
const UNPROCESSED_PAUSE: Duration = Duration::from_millis(10);

/// The most keys one `BatchGetItem` takes (a DynamoDB limit).
const BATCH_GET_KEYS: usize = 100;

/// A store over one table laid out as `docs/storage.md` describes. Cheap to clone (the SDK client is).
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table_name: String,
    /// Items returned by loads (shared by clones).
    records_read: Arc<AtomicU64>,
}

impl DynamoDbStore {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table_name: table_name.into(),
            records_read: Arc::new(AtomicU64::new(0)),
        }
    }

    fn count(&self, items: usize) {
        self.records_read.fetch_add(items as u64, Ordering::Relaxed);
    }

    /// The product item with its batches: one strongly consistent GetItem, so the whole aggregate
    /// is read as of one version (a single-item read is serializable).
    async fn get_product(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        let Some(item) = self.get(items::product_key(sku)).await? else {
            return Ok(None);
        };
        let (record, batches) = items::parse_product(&item)?;
        // Records, as every store counts them: the product's and each of its batches'.
        self.count(1 + batches.len());
        if record.sku != sku {
            return Err(StoreError::Corrupt(format!(
                "item {} PRODUCT holds sku {}",
                keys::product_pk(sku),
                record.sku
            )));
        }
        restore_product(record, batches).map(Some)
    }

    /// The line items of these orders in the SKU (those that exist), strongly consistent: one
    /// GetItem for one order, BatchGetItems of up to 100 keys (at once) for several.
    async fn get_lines(
        &self,
        sku: &str,
        orderids: &[&str],
    ) -> Result<Vec<AllocationRecord>, StoreError> {
        let found = match orderids {
            [] => Vec::new(),
            [orderid] => self
                .get(items::line_key(orderid, sku))
                .await?
                .into_iter()
                .collect(),
            several => {
                // DynamoDB refuses a BatchGetItem that names a key twice (a group may hold two
                // allocations of one order).
                let mut several = several.to_vec();
                several.sort_unstable();
                several.dedup();
                let gets = several.chunks(BATCH_GET_KEYS).map(|chunk| {
                    self.batch_get(chunk.iter().map(|o| items::line_key(o, sku)).collect())
                });
                futures_util::future::try_join_all(gets)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            }
        };
        let lines = found
            .iter()
            .map(items::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        self.count(lines.len());
        Ok(lines)
    }

    /// One item by its key, strongly consistent.
    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(found.item)
    }

    /// The items of these keys that exist, strongly consistent, asking again (a bounded number of
    /// times) for any key DynamoDB left unprocessed.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("cannot build a BatchGetItem request: {e}"))
        };
        let mut found = Vec::with_capacity(keys.len());
        let mut wanted = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(invalid)?;
        for attempt in 0..=UNPROCESSED_RETRIES {
            if attempt > 0 {
                let pause = exponential_backoff(UNPROCESSED_PAUSE, Duration::from_secs(1), attempt);
                tokio::time::sleep(pause).await;
            }
            let answer = self
                .client
                .batch_get_item()
                .request_items(&self.table_name, wanted)
                .send()
                .await
                .map_err(|e| unavailable("BatchGetItem", &e))?;
            if let Some(items) = answer.responses().and_then(|r| r.get(&self.table_name)) {
                found.extend(items.iter().cloned());
            }
            match answer
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table_name))
                .filter(|left| !left.keys().is_empty())
            {
                Some(left) => wanted = left.clone(),
                None => return Ok(found),
            }
        }
        Err(StoreError::Throttled(format!(
            "BatchGetItem left keys unprocessed after {UNPROCESSED_RETRIES} retries"
        )))
    }

    /// Reads the lines of one `lines` index partition (`lines_pk`), in `lines_sk` order (`forward`)
    /// or backwards, in the pages the collector asks for, until it has enough or the lines run out.
    /// The index is global, so eventually consistent: a line may show as it was a moment ago, which
    /// the commit's condition on each line catches.
    async fn collect_lines(
        &self,
        lines_pk: String,
        forward: bool,
        collector: &mut impl LineCollector,
    ) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        while !collector.is_done() {
            let page = self
                .client
                .query()
                .table_name(&self.table_name)
                .index_name(LINES_INDEX)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", LINES_PK)
                .expression_attribute_values(":pk", AttributeValue::S(lines_pk.clone()))
                .scan_index_forward(forward)
                .limit(i32::try_from(collector.page()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", &e))?;
            self.count(page.items().len());
            for item in page.items() {
                collector.take(items::parse_line(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !page.items().is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(())
    }

    /// Every item of a table partition (whose sort key starts with `prefix`, if given), strongly
    /// consistent, all pages, in sort key order.
    async fn query_partition(
        &self,
        pk: String,
        prefix: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table_name)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .consistent_read(true);
        query = match prefix {
            Some(prefix) => query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned())),
            None => query.key_condition_expression("#pk = :pk"),
        };
        all_pages(query).await
    }
}

/// Every item a query returns, all pages, in order.
async fn all_pages(query: QueryFluentBuilder) -> Result<Vec<Item>, StoreError> {
    let mut pages = query.into_paginator().items().send();
    let mut found = Vec::new();
    while let Some(item) = pages.next().await {
        found.push(item.map_err(|e| unavailable("Query", &e))?);
    }
    Ok(found)
}

impl ProductRepository for DynamoDbStore {
    async fn load(&self, sku: &str, orderids: &[&str]) -> Result<Option<Product>, StoreError> {
        // The product item and the lines at the same time: two requests DynamoDB does not isolate
        // from each other, so a line may be older or newer than the product read. A line newer than
        // the product (in a batch it does not hold) is a conflict here; any other line is written
        // back only on condition that it is still as read (`commit`), and one only read (an order
        // already allocated) was true when it was read.
        let (product, lines) =
            tokio::try_join!(self.get_product(sku), self.get_lines(sku, orderids))?;
        let Some(mut product) = product else {
            return Ok(None);
        };
        restore_lines(&mut product, orderids, lines)?;
        Ok(Some(product))
    }

    async fn load_lines(&self, product: &mut Product, orderids: &[&str]) -> Result<(), StoreError> {
        let lines = self.get_lines(product.sku(), orderids).await?;
        restore_lines(product, orderids, lines)
    }

    /// Reads the SKU's waiting lines oldest first on the `lines` index. A line that began waiting a
    /// moment ago may not show yet: it is offered when stock next arrives.
    async fn load_waiting_lines(
        &self,
        product: &mut Product,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let mut taken = WaitingLines::new(product, max_lines);
        self.collect_lines(keys::waiting_lines_pk(product.sku()), true, &mut taken)
            .await?;
        taken.restore_into(product)
    }

    /// Reads the batch's lines backwards on the `lines` index, in small pages, until they free
    /// `excess` units or `max_lines` are read.
    async fn load_lines_to_free(
        &self,
        product: &mut Product,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let mut taken = LinesToFree::new(excess, max_lines);
        self.collect_lines(keys::batch_lines_pk(reference), false, &mut taken)
            .await?;
        if !taken.is_done() {
            // The lines ran out before the product's total: the index has not caught up with the
            // lines of the latest commits yet. Retry on fresh state (the bus pauses first).
            return Err(StoreError::VersionConflict {
                sku: product.sku().to_owned(),
            });
        }
        taken.restore_into(product)
    }

    async fn sku_of_batch(&self, reference: &str) -> Result<Option<String>, StoreError> {
        let found = self.get(items::batchref_key(reference)).await?;
        found.as_ref().map(items::parse_batchref).transpose()
    }

    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        let actions = commit::actions(writes, chrono::Utc::now().timestamp())?;
        if actions.is_empty() {
            return Ok(());
        }
        if actions.len() > MAX_TRANSACTION_ACTIONS {
            return Err(StoreError::CommitTooLarge(format!(
                "{} writes; one DynamoDB transaction holds at most {MAX_TRANSACTION_ACTIONS}",
                actions.len()
            )));
        }
        let transact_items = actions
            .iter()
            .map(|action| action.to_transact_item(&self.table_name))
            .collect::<Result<Vec<_>, _>>()?;
        // The SDK fills in a ClientRequestToken, so its own retries of this call are idempotent.
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(transact_items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => {
                let targets: Vec<Target> = actions.into_iter().map(|a| a.target).collect();
                Err(commit_error(error, &targets))
            }
        }
    }

    fn max_lines_per_commit(&self) -> Option<usize> {
        Some(MAX_LINES_PER_COMMIT)
    }
}

impl AllocationsView for DynamoDbStore {
    async fn allocations_for_order(
        &self,
        orderid: &str,
    ) -> Result<Vec<AllocationView>, StoreError> {
        let found = self
            .query_partition(keys::order_pk(orderid), Some(LINE_SK_PREFIX))
            .await?;
        let mut views = found
            .iter()
            .map(|item| {
                items::parse_line(item).map(|line| AllocationView {
                    sku: line.sku,
                    batchref: line.batchref,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        views.sort();
        Ok(views)
    }
}

impl RecordsRead for DynamoDbStore {
    fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }
}

impl OutboxAudit for DynamoDbStore {
    async fn outbox(&self, sku: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        let found = self.query_partition(keys::outbox_pk(sku), None).await?;
        found.iter().map(items::parse_outbox).collect()
    }
}
