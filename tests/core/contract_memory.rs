//! The store contract, run against the in-memory store.

use std::sync::Arc;

use crate::support::memory_store::InMemoryStore;

crate::contract_suite!(async { Arc::new(InMemoryStore::new()) });
