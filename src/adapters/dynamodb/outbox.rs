//! The outbox's publication record on DynamoDB: which outbox items were published, which are still
//! pending, and the items an operator asks to publish again. See `docs/functions.md` ("Delivery
//! guarantee").
//!
//! An outbox item is committed pending (`pending_shard` set: it is in the sparse `pending` index) and
//! without a TTL. Publishing it (the stream relay, or the republisher) removes `pending_shard` and sets
//! `expires_at`, so an item expires only once it has been published.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::errors::unavailable;
use super::items::{self, Item};
use super::keys::{
    self, CREATED_AT, EXPIRES_AT, OUTBOX_TTL_SECONDS, PENDING_INDEX, PENDING_SHARD, PK, SK,
};
use crate::service::{OutboxItem, PendingPage, PublicationRecord, PublishedMarks, StoreError};

/// Items read per Query page.
const PAGE: i32 = 100;

/// The outbox items of one table.
#[derive(Debug, Clone)]
pub struct DynamoDbOutbox {
    client: Client,
    table_name: String,
}

impl DynamoDbOutbox {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table_name: table_name.into(),
        }
    }

    /// Records that the item was published at `now` (epoch seconds): it leaves the `pending` index
    /// and expires `OUTBOX_TTL_SECONDS` later. An item that no longer exists is left alone.
    pub async fn mark_published(&self, pk: &str, sk: &str, now: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .key(PK, AttributeValue::S(pk.to_owned()))
            .key(SK, AttributeValue::S(sk.to_owned()))
            .update_expression("SET #expires = :expires REMOVE #shard")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_names("#shard", PENDING_SHARD)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(now.saturating_add(OUTBOX_TTL_SECONDS).to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable("UpdateItem", &e)),
        }
    }

    /// Items still pending that were committed at or before `created_before` (epoch seconds): the
    /// shards in turn, an equal share of `max` from each, oldest first (so a backlog in one shard
    /// never starves the others). A shard cut at its share is read to the end of the second its
    /// share ended in, so the page is complete through the earliest such second.
    pub async fn pending(
        &self,
        created_before: i64,
        max: usize,
    ) -> Result<PendingPage, StoreError> {
        let share = max.div_ceil(keys::PENDING_SHARDS as usize).max(1);
        let mut page = PendingPage::default();
        for shard in keys::pending_shards() {
            let (items, cut_at) = self.pending_of_shard(&shard, created_before, share).await?;
            page.items.extend(items);
            if let Some(cut_at) = cut_at {
                page.complete_through =
                    Some(page.complete_through.map_or(cut_at, |c| c.min(cut_at)));
            }
        }
        Ok(page)
    }

    /// Up to `share` pending items of one shard, then the rest of the second the share ended in;
    /// and that second when more items are left.
    async fn pending_of_shard(
        &self,
        shard: &str,
        created_before: i64,
        share: usize,
    ) -> Result<(Vec<OutboxItem>, Option<i64>), StoreError> {
        let query = |to: i64, from: Option<i64>| {
            let mut query = self
                .client
                .query()
                .table_name(&self.table_name)
                .index_name(PENDING_INDEX)
                .expression_attribute_names("#shard", PENDING_SHARD)
                .expression_attribute_names("#created", CREATED_AT)
                .expression_attribute_values(":shard", AttributeValue::S(shard.to_owned()))
                .expression_attribute_values(":to", AttributeValue::N(to.to_string()));
            query = match from {
                Some(from) => query
                    .key_condition_expression("#shard = :shard AND #created BETWEEN :from AND :to")
                    .expression_attribute_values(":from", AttributeValue::N(from.to_string())),
                None => query.key_condition_expression("#shard = :shard AND #created <= :to"),
            };
            query
        };
        let mut found = Vec::new();
        let more = collect_up_to(query(created_before, None), share + 1, &mut found).await?;
        if found.len() <= share && !more {
            return Ok((found, None));
        }
        found.truncate(share);
        let Some(last) = found.last().map(|item| item.created_at) else {
            return Ok((found, None));
        };
        // The rest of that second: items sort by commit time, ties in any order.
        let mut same_second = Vec::new();
        collect_up_to(query(last, Some(last)), usize::MAX, &mut same_second).await?;
        let known: std::collections::HashSet<(String, String)> =
            found.iter().map(|i| (i.pk.clone(), i.sk.clone())).collect();
        found.extend(
            same_second
                .into_iter()
                .filter(|i| !known.contains(&(i.pk.clone(), i.sk.clone()))),
        );
        Ok((found, Some(last)))
    }

    /// Up to `max` outbox items of this SKU committed between `from` and `to` (epoch seconds,
    /// inclusive), published or not, in commit order.
    pub async fn recorded(
        &self,
        sku: &str,
        from: i64,
        to: i64,
        max: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        // DynamoDB refuses a BETWEEN whose bounds are reversed (a range that begins in the future).
        if from > to {
            return Ok(Vec::new());
        }
        let query = self
            .client
            .query()
            .table_name(&self.table_name)
            .key_condition_expression("#pk = :pk")
            .filter_expression("#created BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#created", CREATED_AT)
            .expression_attribute_values(":pk", AttributeValue::S(keys::outbox_pk(sku)))
            .expression_attribute_values(":from", AttributeValue::N(from.to_string()))
            .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
            .consistent_read(true);
        let mut found = Vec::new();
        collect_up_to(query, max, &mut found).await?;
        Ok(found)
    }
}

/// Adds the query's items to `found`, page by page, until it holds `max`.
/// Reads the query's items into `found` until it holds `max`; answers whether items were left.
async fn collect_up_to(
    query: QueryFluentBuilder,
    max: usize,
    found: &mut Vec<OutboxItem>,
) -> Result<bool, StoreError> {
    let mut items = query.limit(PAGE).into_paginator().items().send();
    while found.len() < max {
        match items.next().await {
            Some(item) => found.push(outbox_item(&item.map_err(|e| unavailable("Query", &e))?)),
            None => return Ok(false),
        }
    }
    Ok(true)
}

fn outbox_item(item: &Item) -> OutboxItem {
    let key = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => value.clone(),
        _ => String::new(),
    };
    OutboxItem {
        pk: key(PK),
        sk: key(SK),
        created_at: match item.get(CREATED_AT) {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or_default(),
            _ => 0,
        },
        envelope: items::parse_outbox(item),
    }
}

impl PublishedMarks for DynamoDbOutbox {
    async fn mark_published(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
        DynamoDbOutbox::mark_published(self, pk, sk, chrono::Utc::now().timestamp()).await
    }
}

impl PublicationRecord for DynamoDbOutbox {
    async fn pending(&self, created_before: i64, max: usize) -> Result<PendingPage, StoreError> {
        DynamoDbOutbox::pending(self, created_before, max).await
    }

    async fn recorded(
        &self,
        sku: &str,
        from: i64,
        to: i64,
        max: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        DynamoDbOutbox::recorded(self, sku, from, to, max).await
    }
}
