//! The store contract, run against `DynamoDbStore` on a fresh table in moto (see `tests/support/moto.rs`).

#![cfg(feature = "aws")]

mod contract;
mod support;

use std::sync::Arc;

use allocation::adapters::dynamodb::DynamoDbStore;

async fn store() -> Arc<DynamoDbStore> {
    let moto = support::moto::moto().await;
    let table = moto.create_table("contract").await;
    Arc::new(DynamoDbStore::new(moto.dynamodb(), table))
}

contract_suite!(store());
