//! `DynamoDbStore`: the `Store` port over one DynamoDB table (reads by Query, commits by one transaction).

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::commit::{self, Target, MAX_LINES_PER_COMMIT, MAX_TRANSACTION_ACTIONS};
use super::errors::{commit_error, unavailable};
use super::items::{self, Item, ProductPart};
use super::keys::{self, BY_ORDER_INDEX, GSI1PK, PK};
use crate::adapters::records::restore_product;
use crate::domain::{EventEnvelope, Product};
use crate::service::{AllocationView, ProductWrite, Store, StoreError};

/// A store over one table laid out as `docs/storage.md` describes. Cheap to clone (the SDK client is).
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table_name: String,
}

impl DynamoDbStore {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table_name: table_name.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// Creates this store's table (tests and local setup; see [`super::create_table`]).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        super::create_table(&self.client, &self.table_name).await
    }

    /// Every item of a partition (of the table, or of `index`), all pages, in sort key order.
    async fn query_partition(
        &self,
        index: Option<&str>,
        key_attribute: &str,
        key: String,
    ) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table_name)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", key_attribute)
            .expression_attribute_values(":k", AttributeValue::S(key))
            // Strong consistency where DynamoDB offers it (not on a GSI).
            .consistent_read(index.is_none())
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(item) = pages.next().await {
            found.push(item.map_err(|e| unavailable("Query", &e))?);
        }
        Ok(found)
    }
}

impl Store for DynamoDbStore {
    async fn load(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        let found = self
            .query_partition(None, PK, keys::product_pk(sku))
            .await?;
        let (mut product, mut batches, mut allocations) = (None, Vec::new(), Vec::new());
        for item in &found {
            match items::parse_product_part(item)? {
                ProductPart::Product(record) => product = Some(record),
                ProductPart::Batch(record) => batches.push(record),
                ProductPart::Allocation(record) => allocations.push(record),
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
        restore_product(product, batches, allocations).map(Some)
    }

    async fn sku_of_batch(&self, reference: &str) -> Result<Option<String>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(items::batchref_key(reference)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        found.item().map(items::parse_batchref).transpose()
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

    fn max_lines_per_commit(&self) -> Option<usize> {
        Some(MAX_LINES_PER_COMMIT)
    }
}
