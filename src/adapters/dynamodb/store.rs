//! `DynamoDbStore`: the `Store` port over one DynamoDB table (reads by Query, commits by one transaction).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use futures_util::future::try_join_all;

use super::commit::{self, Target, MAX_LINES_PER_COMMIT, MAX_TRANSACTION_ACTIONS};
use super::errors::{commit_error, unavailable};
use super::items::{self, Item, ProductPart};
use super::keys::{
    self, BATCH_SK_PREFIX, BY_BATCH_INDEX, BY_ORDER_INDEX, GSI1PK, LSI1SK, PK, PRODUCT_SK, SK,
};
use crate::adapters::records::{
    restore_lines, restore_product, AllocationRecord, LineCollector, LinesToFree, WaitingLines,
};
use crate::domain::{EventEnvelope, Product};
use crate::service::{AllocationView, ProductWrite, Store, StoreError};

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

    /// The product's head: its product item and batch items, one strongly consistent Query of the
    /// sort keys from `BATCH#` to `PRODUCT` (allocation items, `ALLOCATION#...`, sort before).
    async fn query_head(&self, sku: &str) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table_name)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", AttributeValue::S(keys::product_pk(sku)))
            .expression_attribute_values(":from", AttributeValue::S(BATCH_SK_PREFIX.to_owned()))
            .expression_attribute_values(":to", AttributeValue::S(PRODUCT_SK.to_owned()))
            .consistent_read(true);
        let found = all_pages(query).await?;
        self.count(found.len());
        Ok(found)
    }

    /// The allocation items of these orders in the SKU (those that exist): one strongly consistent
    /// GetItem each, concurrently.
    async fn get_lines(
        &self,
        sku: &str,
        orderids: &[&str],
    ) -> Result<Vec<AllocationRecord>, StoreError> {
        let gets = orderids
            .iter()
            .map(|orderid| self.get(items::allocation_key(sku, orderid)));
        let found = try_join_all(gets).await?;
        let lines = found
            .iter()
            .flatten()
            .map(items::parse_allocation)
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

    /// The stored version of the product, strongly consistent (`None`: no product item).
    async fn stored_version(&self, sku: &str) -> Result<Option<u64>, StoreError> {
        let found = self.get(items::product_key(sku)).await?;
        match found.as_ref().map(items::parse_product_part).transpose()? {
            Some(ProductPart::Product(record)) => Ok(Some(record.version_number)),
            Some(_) => Err(StoreError::Corrupt(format!(
                "item {} PRODUCT is not a product item",
                keys::product_pk(sku)
            ))),
            None => Ok(None),
        }
    }

    /// Reads the SKU's lines whose `by_batch` key starts with `prefix` (strongly consistent), in
    /// `lsi1sk` order (`forward`) or backwards, in the pages the collector asks for, until it has
    /// enough or the lines run out.
    async fn collect_by_batch(
        &self,
        sku: &str,
        prefix: String,
        forward: bool,
        collector: &mut impl LineCollector,
    ) -> Result<(), StoreError> {
        let mut start: Option<Item> = None;
        while !collector.is_done() {
            let page = self
                .client
                .query()
                .table_name(&self.table_name)
                .index_name(BY_BATCH_INDEX)
                .key_condition_expression("#pk = :pk AND begins_with(#lsk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#lsk", LSI1SK)
                .expression_attribute_values(":pk", AttributeValue::S(keys::product_pk(sku)))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.clone()))
                .scan_index_forward(forward)
                .consistent_read(true)
                .limit(i32::try_from(collector.page()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query", &e))?;
            self.count(page.items().len());
            for item in page.items() {
                collector.take(items::parse_allocation(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !page.items().is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(())
    }

    /// Every item of a partition (of the table, or of `index`), all pages, in sort key order.
    async fn query_partition(
        &self,
        index: Option<&str>,
        key_attribute: &str,
        key: String,
    ) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table_name)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", key_attribute)
            .expression_attribute_values(":k", AttributeValue::S(key))
            // Strong consistency where DynamoDB offers it (not on a GSI).
            .consistent_read(index.is_none());
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

impl Store for DynamoDbStore {
    async fn load(&self, sku: &str, orderids: &[&str]) -> Result<Option<Product>, StoreError> {
        // The lines are read after the head, never at the same time: a line read is then at least
        // as new as the version read, so a line absent here was absent at that version and the
        // commit's version check covers anything written since. (Read concurrently, a line read
        // before a commit that added it, with a head read after it, let one order be allocated twice.)
        let found = self.query_head(sku).await?;
        let (mut product, mut batches) = (None, Vec::new());
        for item in &found {
            match items::parse_product_part(item)? {
                ProductPart::Product(record) => product = Some(record),
                ProductPart::Batch(record) => batches.push(record),
                ProductPart::Allocation(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "partition {}: an allocation item among the batch items",
                        keys::product_pk(sku)
                    )))
                }
            }
        }
        let Some(product) = product else {
            if found.is_empty() {
                return Ok(None);
            }
            return Err(StoreError::Corrupt(format!(
                "partition {}: {} items but no product item",
                keys::product_pk(sku),
                found.len()
            )));
        };
        if product.sku != sku {
            return Err(StoreError::Corrupt(format!(
                "partition {}: product item of sku {}",
                keys::product_pk(sku),
                product.sku
            )));
        }
        let mut product = restore_product(product, batches)?;
        let lines = self.get_lines(sku, orderids).await?;
        restore_lines(&mut product, orderids, lines)?;
        Ok(Some(product))
    }

    async fn load_lines(&self, product: &mut Product, orderids: &[&str]) -> Result<(), StoreError> {
        let lines = self.get_lines(product.sku(), orderids).await?;
        restore_lines(product, orderids, lines)
    }

    async fn load_waiting_lines(
        &self,
        product: &mut Product,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let mut taken = WaitingLines::new(product, max_lines);
        let prefix = keys::WAITING_LINES_PREFIX.to_owned();
        self.collect_by_batch(product.sku(), prefix, true, &mut taken)
            .await?;
        taken.restore_into(product)
    }

    /// Reads the batch's lines backwards on the `by_batch` LSI (strongly consistent), in small pages,
    /// until they free `excess` units or `max_lines` are read.
    async fn load_lines_to_free(
        &self,
        product: &mut Product,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let mut taken = LinesToFree::new(excess, max_lines);
        let prefix = keys::batch_lines_prefix(reference);
        self.collect_by_batch(product.sku(), prefix, false, &mut taken)
            .await?;
        if !taken.is_done() {
            // The lines ran out first. The head and the lines are two reads: if the product moved
            // in between, retry on fresh state; if not, its stored total is wrong.
            return Err(match self.stored_version(product.sku()).await? {
                Some(version) if version == product.version_number() => {
                    taken.shortfall(product, reference)
                }
                _ => StoreError::VersionConflict {
                    sku: product.sku().to_owned(),
                },
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

    async fn allocations_for_order(
        &self,
        orderid: &str,
    ) -> Result<Vec<AllocationView>, StoreError> {
        let found = self
            .query_partition(Some(BY_ORDER_INDEX), GSI1PK, keys::order_gsi_pk(orderid))
            .await?;
        let mut views = found
            .iter()
            .map(|item| {
                items::parse_allocation(item).map(|line| AllocationView {
                    sku: line.sku,
                    batchref: line.batchref,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        views.sort();
        Ok(views)
    }

    async fn outbox(&self, sku: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        let found = self.query_partition(None, PK, keys::outbox_pk(sku)).await?;
        found.iter().map(items::parse_outbox).collect()
    }

    fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }

    fn max_lines_per_commit(&self) -> Option<usize> {
        Some(MAX_LINES_PER_COMMIT)
    }
}
