//! The store contract, run against the embedded (redb) store, each case in a fresh temporary directory.

use std::sync::Arc;

use allocation::adapters::embedded::{EmbeddedOptions, EmbeddedStore, ReadMode};
use allocation::service::{ProductRepository, ProductWrite, StoreError};
use tempfile::TempDir;

/// An embedded store that owns its temporary directory: the store is closed first (fields drop in
/// order), then the directory is removed.
struct TempStore {
    store: EmbeddedStore,
    _dir: TempDir,
}

async fn fresh_store() -> Arc<TempStore> {
    fresh_store_with(EmbeddedOptions::default()).await
}

async fn fresh_store_with(options: EmbeddedOptions) -> Arc<TempStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store =
        EmbeddedStore::open_with(&dir.path().join("data"), options).expect("open embedded store");
    Arc::new(TempStore { store, _dir: dir })
}

impl ProductRepository for TempStore {
    crate::delegate_loads!(store);

    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        self.store.commit(writes).await
    }

    fn max_lines_per_commit(&self) -> Option<usize> {
        self.store.max_lines_per_commit()
    }
}

crate::delegate_views!(TempStore, store);

crate::contract_suite!(fresh_store());

/// The same cases with reads on the blocking pool.
mod blocking_reads {
    use super::*;

    crate::contract_suite!(fresh_store_with(EmbeddedOptions {
        read_mode: ReadMode::Blocking,
        ..EmbeddedOptions::default()
    }));
}
