//! The embedded store's tables (keyed like the DynamoDB layout) and the encoding of their values.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use redb::TableDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::adapters::records::RecordWrite;
use crate::domain::EventEnvelope;
use crate::service::DeadLetter;
use crate::service::StoreError;

/// Name of the database file inside the store's directory.
pub const DATABASE_FILE: &str = "allocation.redb";

/// Layout version written in [`META`]; a store refuses a file with another one.
pub(super) const SCHEMA_VERSION: u64 = 3;

/// sku → `ProductRecord` (JSON).
pub(super) const PRODUCTS: TableDefinition<&str, &[u8]> = TableDefinition::new("products");
/// (sku, batch reference) → `BatchRecord` (JSON).
pub(super) const BATCHES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("batches");
/// (order id, sku) → `AllocationRecord` (JSON): an order's lines together, as in DynamoDB (a load
/// reads each order's line; `allocations_for_order` reads the order's range).
pub(super) const LINES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("lines");
/// (sku, batch reference, order id) → line quantity: a batch's lines in order id order (serves
/// `load_lines_to_free`, greatest order id first).
pub(super) const BATCH_LINES: TableDefinition<(&str, &str, &str), u32> =
    TableDefinition::new("batch_lines");
/// (sku, waiting since, order id) → line quantity: a product's waiting lines, oldest first (serves
/// `load_waiting_lines`).
pub(super) const WAITING_LINES: TableDefinition<(&str, u64, &str), u32> =
    TableDefinition::new("waiting_lines");
/// batch reference → sku: makes references unique across SKUs and serves `sku_of_batch`.
pub(super) const BATCH_REFS: TableDefinition<&str, &str> = TableDefinition::new("batch_refs");
/// Layout 2's lines, keyed (sku, order id), and its order read model ((order id, sku) → batch
/// reference or ""): read once, by the migration to layout 3 (`migrate`), then deleted.
pub(super) const LAYOUT2_ALLOCATIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("allocations");
pub(super) const LAYOUT2_ORDERS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("orders");
/// (sku, version, slot) → (global outbox sequence number, `OutboxRecord` JSON); kept after
/// delivery.
pub(super) const OUTBOX: TableDefinition<(&str, u64, &str), (u64, &[u8])> =
    TableDefinition::new("outbox");
/// global outbox sequence number → outbox key, for events not yet delivered, in commit order.
pub(super) const PENDING: TableDefinition<u64, (&str, u64, &str)> =
    TableDefinition::new("outbox_pending");
/// dead-letter id → dead letter (JSON), in the order they were added.
pub(super) const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
/// Counters: [`META_SCHEMA`], [`META_NEXT_SEQ`], [`META_NEXT_DEAD_LETTER`].
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(super) const META_SCHEMA: &str = "schema_version";
pub(super) const META_NEXT_SEQ: &str = "next_outbox_seq";
pub(super) const META_NEXT_DEAD_LETTER: &str = "next_dead_letter_id";
/// The last journal record the database holds (written by each group's transaction: `journal.rs`).
pub(super) const META_JOURNAL_APPLIED: &str = "journal_applied";

/// A backend failure (I/O, redb) as the service layer sees it.
pub(super) fn unavailable(context: &str, error: impl Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {context}: {error}"))
}

pub(super) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| unavailable(&format!("cannot encode {what}"), e))
}

/// Decodes a stored value; what does not decode is `Corrupt`, naming the table and key.
pub(super) fn decode<T: DeserializeOwned>(
    table: &str,
    key: impl std::fmt::Debug,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("embedded store: {table} {key:?}: {e}")))
}

/// One [`RecordWrite`] with its keys split out and its value already encoded, so the writer thread
/// only checks and inserts (encoding runs on the callers' tasks, in parallel).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Op {
    Product {
        sku: String,
        expected_version: Option<u64>,
        value: Vec<u8>,
    },
    /// A new batch: its reference must be unused in every SKU.
    NewBatch {
        sku: String,
        reference: String,
        value: Vec<u8>,
    },
    UpdateBatch {
        sku: String,
        reference: String,
        value: Vec<u8>,
    },
    PutAllocation {
        sku: String,
        orderid: String,
        batchref: Option<String>,
        waiting_since: Option<u64>,
        qty: u32,
        value: Vec<u8>,
    },
    DeleteAllocation {
        sku: String,
        orderid: String,
    },
    Outbox {
        sku: String,
        version_number: u64,
        slot: String,
        value: Vec<u8>,
    },
}

impl Op {
    /// Encodes one record write of the shared mapping (`records::record_writes`).
    pub(super) fn encode(write: RecordWrite) -> Result<Op, StoreError> {
        Ok(match write {
            RecordWrite::Product {
                record,
                expected_version,
            } => Op::Product {
                value: encode("product", &record)?,
                sku: record.sku,
                expected_version,
            },
            RecordWrite::NewBatch(batch) => Op::NewBatch {
                value: encode("batch", &batch)?,
                sku: batch.sku,
                reference: batch.reference,
            },
            RecordWrite::UpdateBatch(batch) => Op::UpdateBatch {
                value: encode("batch", &batch)?,
                sku: batch.sku,
                reference: batch.reference,
            },
            RecordWrite::PutAllocation { line, .. } => Op::PutAllocation {
                value: encode("allocation", &line)?,
                sku: line.sku,
                orderid: line.orderid,
                batchref: line.batchref,
                waiting_since: line.waiting_since,
                qty: line.qty,
            },
            RecordWrite::DeleteAllocation { sku, orderid, .. } => {
                Op::DeleteAllocation { sku, orderid }
            }
            RecordWrite::Outbox(record) => Op::Outbox {
                value: encode("outbox record", &record)?,
                sku: record.sku,
                version_number: record.version_number,
                slot: record.slot,
            },
        })
    }
}

/// A dead letter as stored (its id is the key).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredDeadLetter {
    pub envelope: EventEnvelope,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
    pub attempts: u32,
}

impl StoredDeadLetter {
    pub(super) fn with_id(self, id: u64) -> DeadLetter {
        DeadLetter {
            id,
            envelope: self.envelope,
            reason: self.reason,
            failed_at: self.failed_at,
            attempts: self.attempts,
        }
    }
}

/// The result of `EmbeddedStore::check_outbox`: every event is either pending or delivered, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxCheck {
    /// Events in the outbox (they are kept after delivery).
    pub events: u64,
    /// Events not yet marked delivered.
    pub pending: u64,
    /// `events - pending`.
    pub delivered: u64,
    /// The sequence number the next event will get.
    pub next_seq: u64,
}
