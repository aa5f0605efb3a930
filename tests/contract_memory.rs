//! The store contract, run against the in-memory store.

mod contract;

use std::sync::Arc;

use allocation::adapters::InMemoryStore;

contract_suite!(async { Arc::new(InMemoryStore::new()) });
