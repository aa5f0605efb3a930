//! The embedded store: a durable file-backed store (redb) with the same guarantees as DynamoDB.
//!
//! - Same records as every store (`adapters::records`), in tables keyed like the DynamoDB layout
//!   (see [`tables`] and `docs/embedded-store.md`).
//! - A commit checks every product's expected version and every new batch reference BEFORE writing,
//!   then writes all records and outbox events in one redb transaction, and is acknowledged only once
//!   that transaction is fsynced (`Durability::Immediate`): an acknowledged commit survives kill -9
//!   and power loss.
//! - Group commit: one writer thread applies all waiting commits in one transaction with one fsync.
//! - Reads are redb read transactions (snapshots of the last durable commit), run concurrently.

mod apply;
mod feed;
mod journal;
mod journal_record;
mod migrate;
mod read;
mod slot;
pub mod tables;
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, ReadableTable};
use tokio::sync::{oneshot, watch};

pub use journal::JOURNAL_FILE;
pub use tables::OutboxCheck;
pub use tables::DATABASE_FILE;

use crate::adapters::records::record_writes;
use crate::domain::{EventEnvelope, Product};
use crate::service::{
    AllocationView, AllocationsView, OutboxAudit, ProductRepository, ProductWrite, RecordsRead,
    StoreError,
};
use slot::DbSlot;
use tables::{unavailable, Op};
use writer::{Counters, Request, Shared, Writer};

/// Where reads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// On the calling task (a read is a few microseconds of mostly cached page access).
    #[default]
    Inline,
    /// On tokio's blocking pool (`spawn_blocking`).
    Blocking,
}

/// Tuning of an [`EmbeddedStore`]; `Default` is what `open` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// redb's page cache, in bytes.
    pub cache_size: usize,
    pub read_mode: ReadMode,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_size: 8 * 1024 * 1024,
            read_mode: ReadMode::Inline,
        }
    }
}

/// Counters of the writer thread since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Durable write transactions, each one fsync (one per group).
    pub group_commits: u64,
    /// Requests received by the writer (commits, delivery marks, dead letters).
    pub requests: u64,
    /// Commits written.
    pub commits: u64,
    /// Commits refused by their checks (version conflict, duplicate batch reference).
    pub rejected: u64,
    /// Groups whose transaction failed (every request answered `Unavailable`).
    pub failed_groups: u64,
    /// The most requests one group held.
    pub largest_group: u64,
    /// Time spent in durable commits (writing the group's pages and the fsync).
    pub durable_commit_time: std::time::Duration,
    /// Product, batch and line records read by loads.
    pub records_read: u64,
}

/// A durable store in one redb file in a directory of its own. See the module documentation.
pub struct EmbeddedStore {
    slot: Arc<DbSlot>,
    path: PathBuf,
    options: EmbeddedOptions,
    /// `None` once dropped (so the writer thread sees the channel close).
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    records_read: AtomicU64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating it and its directory if needed) the store in `dir`, with default options.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(&format!("cannot create directory {}", dir.display()), e))?;
        let path = dir.join(DATABASE_FILE);
        let slot = Arc::new(DbSlot::open(&path, options.cache_size)?);
        initialize(&*slot.current()?)?;
        // Every group answered before the last stop or crash is in the database from here on.
        let (journal, next_seq, next_dead_letter) = apply::recover(&*slot.current()?, dir, true)?;
        let (outbox_head, _) = watch::channel(next_seq - 1);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            outbox_head,
        });
        let (requests, receiver) = mpsc::channel();
        let writer = Writer {
            slot: Arc::clone(&slot),
            requests: receiver,
            shared: Arc::clone(&shared),
            next_seq,
            next_dead_letter,
            last_answered: 0,
            commit_time: std::time::Duration::ZERO,
            failing: None,
            journal,
            dir: dir.to_owned(),
            replay_pending: false,
            database_file: std::fs::File::open(&path).ok(),
            writeback_started: std::time::Instant::now(),
        };
        let writer = std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| unavailable("cannot start the writer thread", e))?;
        Ok(Self {
            slot,
            path,
            options,
            requests: Some(requests),
            writer: Some(writer),
            shared,
            records_read: AtomicU64::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> EmbeddedStats {
        let c = &self.shared.counters;
        let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        EmbeddedStats {
            records_read: self.records_read.load(Ordering::Relaxed),
            group_commits: get(&c.group_commits),
            requests: get(&c.requests),
            commits: get(&c.commits),
            rejected: get(&c.rejected),
            failed_groups: get(&c.failed_groups),
            largest_group: get(&c.largest_group),
            durable_commit_time: std::time::Duration::from_nanos(get(&c.durable_commit_nanos)),
        }
    }

    /// Finishes the writes already sent, then stops the writer: later writes answer `Unavailable`,
    /// reads still work. Dropping the store does the same (and waits for the thread).
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.request(|done| Request::Shutdown { done }).await
    }

    /// Sends a request to the writer thread and waits for its answer (after its group's fsync).
    async fn request<T>(
        &self,
        make: impl FnOnce(writer::Answer<T>) -> Request,
    ) -> Result<T, StoreError> {
        let stopped =
            || StoreError::Unavailable("embedded store: the writer thread has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(make(reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn count(&self, records: usize) {
        self.records_read
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    /// Runs a read on a snapshot, where [`EmbeddedOptions::read_mode`] says.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self.options.read_mode {
            ReadMode::Inline => read(&*self.slot.current()?),
            ReadMode::Blocking => {
                let db = self.slot.current()?;
                tokio::task::spawn_blocking(move || read(&db))
                    .await
                    .map_err(|e| unavailable("read task", e))?
            }
        }
    }
}

/// Creates the tables of a new file, and checks the schema version and the counters of an existing
/// one (migrating a layout-2 file). The counters are read by `apply::recover`, after the replay.
fn initialize(db: &Database) -> Result<(), StoreError> {
    use tables::*;
    let txn = db
        .begin_write()
        .map_err(|e| unavailable("begin write", e))?;
    {
        let open = |e: redb::TableError| unavailable("open table", e);
        // The layout version first: an older file's tables may not even open with today's types.
        let mut meta = txn.open_table(META).map_err(open)?;
        let storage = |e: redb::StorageError| unavailable("initialize", e);
        let get = |key: &str| -> Result<Option<u64>, StoreError> {
            Ok(meta.get(key).map_err(storage)?.map(|v| v.value()))
        };
        let schema = get(META_SCHEMA)?;
        let next_seq = get(META_NEXT_SEQ)?.unwrap_or(1);
        let next_dead_letter = get(META_NEXT_DEAD_LETTER)?.unwrap_or(1);
        match schema {
            Some(SCHEMA_VERSION) => {}
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(storage)?;
            }
            Some(2) => {
                drop(meta);
                migrate::from_layout_2(&txn)?;
                meta = txn.open_table(META).map_err(open)?;
                meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(storage)?;
            }
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "embedded store: the file has layout version {other}, this build reads \
                     {SCHEMA_VERSION} (see docs/embedded-store.md); start with another data \
                     directory, or move this one away"
                )))
            }
        }
        txn.open_table(PRODUCTS).map_err(open)?;
        txn.open_table(BATCHES).map_err(open)?;
        txn.open_table(LINES).map_err(open)?;
        txn.open_table(BATCH_LINES).map_err(open)?;
        txn.open_table(WAITING_LINES).map_err(open)?;
        txn.open_table(BATCH_REFS).map_err(open)?;
        txn.open_table(OUTBOX).map_err(open)?;
        txn.open_table(PENDING).map_err(open)?;
        txn.open_table(DEAD_LETTERS).map_err(open)?;
        if next_seq == 0 || next_dead_letter == 0 {
            return Err(StoreError::Corrupt(
                "embedded store: meta counters are zero".into(),
            ));
        }
    }
    txn.commit().map_err(|e| unavailable("commit", e))
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer after the requests already sent; wait for it so the
        // file is closed (and its lock released) when `drop` returns.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl ProductRepository for EmbeddedStore {
    async fn load(&self, sku: &str, orderids: &[&str]) -> Result<Option<Product>, StoreError> {
        let sku = sku.to_owned();
        let orderids: Vec<String> = orderids.iter().map(|o| (*o).to_owned()).collect();
        let (product, read) = self
            .read(move |db| {
                let orderids: Vec<&str> = orderids.iter().map(String::as_str).collect();
                read::load(db, &sku, &orderids)
            })
            .await?;
        self.count(read);
        Ok(product)
    }

    async fn load_lines(&self, product: &mut Product, orderids: &[&str]) -> Result<(), StoreError> {
        // Point reads of a few records: always on the calling task.
        let read = read::load_lines(&*self.slot.current()?, product, orderids)?;
        self.count(read);
        Ok(())
    }

    async fn load_lines_to_free(
        &self,
        product: &mut Product,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let read = read::load_lines_to_free(
            &*self.slot.current()?,
            product,
            reference,
            excess,
            max_lines,
        )?;
        self.count(read);
        Ok(())
    }

    async fn load_waiting_lines(
        &self,
        product: &mut Product,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let read = read::load_waiting_lines(&*self.slot.current()?, product, max_lines)?;
        self.count(read);
        Ok(())
    }

    async fn sku_of_batch(&self, reference: &str) -> Result<Option<String>, StoreError> {
        let reference = reference.to_owned();
        self.read(move |db| read::sku_of_batch(db, &reference))
            .await
    }

    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        let mut ops = Vec::new();
        for write in writes {
            for record in record_writes(write) {
                ops.push(Op::encode(record)?);
            }
        }
        self.request(|done| Request::Commit { ops, done }).await
    }
}

impl AllocationsView for EmbeddedStore {
    async fn allocations_for_order(
        &self,
        orderid: &str,
    ) -> Result<Vec<AllocationView>, StoreError> {
        let orderid = orderid.to_owned();
        self.read(move |db| read::allocations_for_order(db, &orderid))
            .await
    }
}

impl RecordsRead for EmbeddedStore {
    fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }
}

impl OutboxAudit for EmbeddedStore {
    async fn outbox(&self, sku: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        let sku = sku.to_owned();
        self.read(move |db| read::outbox(db, &sku)).await
    }
}
