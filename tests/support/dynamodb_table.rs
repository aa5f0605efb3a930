//! Creates the table as `template.yaml` declares it, for the tests on DynamoDB Local (deployed, SAM
//! creates it).

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use allocation::adapters::dynamodb::errors::unavailable;
use allocation::adapters::dynamodb::keys::{
    CREATED_AT, EXPIRES_AT, LINES_INDEX, LINES_PK, LINES_SK, PENDING_INDEX, PENDING_SHARD, PK, SK,
};
use allocation::service::StoreError;

/// How long `create_table` waits for the table to become ACTIVE.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates the table (layout 3): on demand, `pk`/`sk` strings, GSI `lines` on `lines_pk`/`lines_sk`
/// and GSI `pending` on `pending_shard`/`created_at` (a number), both projecting all attributes, no
/// local index, a NEW_IMAGE stream, TTL on `expires_at`; waits until it is ACTIVE.
/// (The template also enables point-in-time recovery and deletion protection, which tests do not
/// want.)
pub async fn create_table(client: &Client, table_name: &str) -> Result<(), StoreError> {
    let invalid = |e: aws_sdk_dynamodb::error::BuildError| {
        StoreError::Unavailable(format!("cannot build the CreateTable request: {e}"))
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(invalid)
    };
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(invalid)
    };
    let all_attributes = || {
        Projection::builder()
            .projection_type(ProjectionType::All)
            .build()
    };
    let lines = GlobalSecondaryIndex::builder()
        .index_name(LINES_INDEX)
        .key_schema(key(LINES_PK, KeyType::Hash)?)
        .key_schema(key(LINES_SK, KeyType::Range)?)
        .projection(all_attributes())
        .build()
        .map_err(invalid)?;
    let pending = GlobalSecondaryIndex::builder()
        .index_name(PENDING_INDEX)
        .key_schema(key(PENDING_SHARD, KeyType::Hash)?)
        .key_schema(key(CREATED_AT, KeyType::Range)?)
        .projection(all_attributes())
        .build()
        .map_err(invalid)?;
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewImage)
        .build()
        .map_err(invalid)?;
    client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK)?)
        .attribute_definitions(attribute(SK)?)
        .attribute_definitions(attribute(LINES_PK)?)
        .attribute_definitions(attribute(LINES_SK)?)
        .attribute_definitions(attribute(PENDING_SHARD)?)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(CREATED_AT)
                .attribute_type(ScalarAttributeType::N)
                .build()
                .map_err(invalid)?,
        )
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(lines)
        .global_secondary_indexes(pending)
        .stream_specification(stream)
        .send()
        .await
        .map_err(|e| unavailable("CreateTable", &e))?;
    wait_until_active(client, table_name).await?;
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(EXPIRES_AT)
        .build()
        .map_err(invalid)?;
    client
        .update_time_to_live()
        .table_name(table_name)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| unavailable("UpdateTimeToLive", &e))?;
    Ok(())
}

async fn wait_until_active(client: &Client, table_name: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let described = client
            .describe_table()
            .table_name(table_name)
            .send()
            .await
            .map_err(|e| unavailable("DescribeTable", &e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {table_name} is not ACTIVE after {ACTIVE_TIMEOUT:?} (status {status:?})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
