//! The store contract, run against `DynamoDbStore` on a fresh table in DynamoDB Local (see
//! `tests/support/dynamodb_local.rs`).

use std::sync::Arc;

use allocation::adapters::dynamodb::DynamoDbStore;

async fn store() -> Arc<DynamoDbStore> {
    let local = crate::support::dynamodb_local::dynamodb_local().await;
    let table = local.create_table("contract").await;
    Arc::new(DynamoDbStore::new(local.client(), table))
}

crate::contract_suite!(store());
