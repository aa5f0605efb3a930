//! The store contract, run against `DynamoDbStore` on a fresh table in moto (see `tests/support/moto.rs`).

use std::sync::Arc;

use allocation::adapters::dynamodb::DynamoDbStore;

async fn store() -> Arc<DynamoDbStore> {
    let moto = crate::support::moto::moto().await;
    let table = moto.create_table("contract").await;
    Arc::new(DynamoDbStore::new(moto.dynamodb(), table))
}

crate::contract_suite!(store());
