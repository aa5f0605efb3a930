//! The store contract, run against the in-memory store.

use std::sync::Arc;

use allocation::adapters::InMemoryStore;

crate::contract_suite!(async { Arc::new(InMemoryStore::new()) });
