//! The commit journal: what makes a group durable with one small sequential write and one fsync.
//!
//! A redb transaction that is durable on its own fsyncs every page it copied (about 20 scattered
//! 4 KiB pages for one allocation: product, batch, line, indexes, outbox, redb's own trees), which
//! costs several times a single page's fsync. So the writer commits each group to redb without
//! syncing (`Durability::None`: visible to reads at once, lost in a crash), and before answering
//! appends the group's writes to this file and fsyncs it: one record, written sequentially. Now and
//! then (`Journal::is_due`, when idle, at shutdown) a *checkpoint* commits to redb durably, records
//! the last journal record it covers in `meta`, and empties the journal. Opening the store (and
//! reopening it after a storage failure) replays the records after the checkpoint, so every group
//! that was answered is in the database again before anything reads it.
//!
//! The file is written in place: it is filled with zeros once ([`CAPACITY`]) and records overwrite it
//! from the start after each checkpoint, so an fsync writes the record's page and never the file's
//! size (an append that grows the file costs a second write, and several times the time).
//!
//! A record: `len: u32`, `crc32(payload): u32`, then the payload: the record's sequence number
//! (`u64`) and the group's applied writes ([`Entry`]), little-endian, strings and bytes prefixed by
//! their length. The journal is the run of whole records from the start whose numbers follow each
//! other: a record cut short or damaged (a crash in the middle of a write: it was never answered),
//! zeros, or an older record left from before the last checkpoint ends it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::tables::{unavailable, Op};
use crate::service::StoreError;

/// Name of the journal file inside the store's directory.
pub const JOURNAL_FILE: &str = "allocation.journal";

/// A checkpoint is due once the journal holds this much, or this long after the last one: bounds
/// both the replay after a crash and the pages one checkpoint syncs.
const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// The journal file's size: room for a due checkpoint's records and a large group beyond them (a
/// record past it still works: the file grows).
pub(super) const CAPACITY: u64 = 8 * 1024 * 1024;
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// One applied write of a group, as the journal holds it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Commit(Vec<Op>),
    MarkDelivered(Vec<u64>),
    DeadLetter(Vec<u8>),
}

/// A record read back: its number and the group's writes.
pub(super) type Record = (u64, Vec<Entry>);

/// A borrowed [`Entry`], to append without copying.
pub(super) enum EntryRef<'a> {
    Commit(&'a [Op]),
    MarkDelivered(&'a [u64]),
    DeadLetter(&'a [u8]),
}

pub(super) struct Journal {
    file: File,
    len: u64,
    /// The sequence number of the last record appended (or checkpointed).
    last: u64,
    checkpointed_at: Instant,
}

fn io(context: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| unavailable(&format!("journal: {context}"), e)
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads its records, in order. `applied` is the
    /// last record the database holds (the numbering goes on from there).
    pub(super) fn open(dir: &Path, applied: u64) -> Result<(Self, Vec<Record>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(JOURNAL_FILE))
            .map_err(io("open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let (records, valid) = parse(&bytes)?;
        if (bytes.len() as u64) < CAPACITY {
            let zeros = vec![0u8; (CAPACITY - bytes.len() as u64) as usize];
            file.write_all_at(&zeros, bytes.len() as u64)
                .and_then(|()| file.sync_all())
                .map_err(io("fill"))?;
        }
        let last = records.last().map_or(applied, |(seq, _)| *seq).max(applied);
        let journal = Self {
            file,
            len: valid as u64,
            last,
            checkpointed_at: Instant::now(),
        };
        Ok((journal, records))
    }

    /// Appends one group's applied writes and syncs them: once this returns, the group survives a
    /// crash. Returns the record's sequence number.
    pub(super) fn append(&mut self, entries: &[EntryRef<'_>]) -> Result<u64, StoreError> {
        let seq = self.last + 1;
        let mut payload = Vec::with_capacity(256);
        put_u64(&mut payload, seq);
        put_u32(&mut payload, entries.len());
        for entry in entries {
            encode_entry(&mut payload, entry);
        }
        let mut record = Vec::with_capacity(payload.len() + 8);
        put_u32(&mut record, payload.len());
        record.extend_from_slice(&crc32(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        // A failed write leaves at most a damaged record where the next one will be written.
        self.file
            .write_all_at(&record, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(io("append"))?;
        self.len += record.len() as u64;
        self.last = seq;
        Ok(seq)
    }

    /// The sequence number of the last record appended: what a checkpoint now covers.
    pub(super) fn last(&self) -> u64 {
        self.last
    }

    /// Whether records wait for a checkpoint.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the journal has grown (or aged) enough that a checkpoint is due.
    pub(super) fn is_due(&self) -> bool {
        !self.is_empty()
            && (self.len >= CHECKPOINT_BYTES
                || self.checkpointed_at.elapsed() >= CHECKPOINT_INTERVAL)
    }

    /// How long until a checkpoint is due by age (zero if it is).
    pub(super) fn due_in(&self) -> Duration {
        CHECKPOINT_INTERVAL.saturating_sub(self.checkpointed_at.elapsed())
    }

    /// After a checkpoint made every record durable in the database: the journal starts again
    /// (the next record overwrites the first; the older ones no longer follow it).
    pub(super) fn checkpointed(&mut self) {
        self.len = 0;
        self.checkpointed_at = Instant::now();
    }
}

/// The journal's records at the start of `bytes` (whole, checksummed, numbered one after the
/// other), and how many bytes they take.
fn parse(bytes: &[u8]) -> Result<(Vec<Record>, usize), StoreError> {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        // Zeros (the file's unused room) are no record: a payload holds at least its number.
        if len < 12 {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else {
            break;
        };
        if crc32(payload) != crc {
            break;
        }
        let seq = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
        if records.last().is_some_and(|(last, _)| seq != last + 1) {
            break;
        }
        // A whole record with a good checksum that does not decode was written by other code.
        let record = decode_record(payload).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "embedded store: journal record at byte {at} does not decode"
            ))
        })?;
        records.push(record);
        at += 8 + len as usize;
    }
    Ok((records, at))
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).unwrap_or(u32::MAX);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    put_u32(out, value.len());
    out.extend_from_slice(value);
}

fn put_opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put_u64(out, value);
        }
    }
}

fn put_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put_bytes(out, value.as_bytes());
        }
    }
}

fn encode_entry(out: &mut Vec<u8>, entry: &EntryRef<'_>) {
    match entry {
        EntryRef::Commit(ops) => {
            out.push(1);
            put_u32(out, ops.len());
            for op in *ops {
                encode_op(out, op);
            }
        }
        EntryRef::MarkDelivered(seqs) => {
            out.push(2);
            put_u32(out, seqs.len());
            for seq in *seqs {
                put_u64(out, *seq);
            }
        }
        EntryRef::DeadLetter(value) => {
            out.push(3);
            put_bytes(out, value);
        }
    }
}

fn encode_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Product {
            sku,
            expected_version,
            value,
        } => {
            out.push(1);
            put_bytes(out, sku.as_bytes());
            put_opt_u64(out, *expected_version);
            put_bytes(out, value);
        }
        Op::NewBatch {
            sku,
            reference,
            value,
        }
        | Op::UpdateBatch {
            sku,
            reference,
            value,
        } => {
            out.push(if matches!(op, Op::NewBatch { .. }) {
                2
            } else {
                3
            });
            put_bytes(out, sku.as_bytes());
            put_bytes(out, reference.as_bytes());
            put_bytes(out, value);
        }
        Op::PutAllocation {
            sku,
            orderid,
            batchref,
            waiting_since,
            qty,
            value,
        } => {
            out.push(4);
            put_bytes(out, sku.as_bytes());
            put_bytes(out, orderid.as_bytes());
            put_opt_str(out, batchref.as_deref());
            put_opt_u64(out, *waiting_since);
            put_u32(out, *qty as usize);
            put_bytes(out, value);
        }
        Op::DeleteAllocation { sku, orderid } => {
            out.push(5);
            put_bytes(out, sku.as_bytes());
            put_bytes(out, orderid.as_bytes());
        }
        Op::Outbox {
            sku,
            version_number,
            slot,
            value,
        } => {
            out.push(6);
            put_bytes(out, sku.as_bytes());
            put_u64(out, *version_number);
            put_bytes(out, slot.as_bytes());
            put_bytes(out, value);
        }
    }
}

/// Reads a payload; `None` if it is not one this code wrote.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        Some(self.take(len)?.to_vec())
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
    fn opt_u64(&mut self) -> Option<Option<u64>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.u64()?)),
            _ => None,
        }
    }
    fn opt_string(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.string()?)),
            _ => None,
        }
    }
}

fn decode_record(payload: &[u8]) -> Option<Record> {
    let mut r = Reader(payload);
    let seq = r.u64()?;
    let count = r.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push(match r.u8()? {
            1 => {
                let n = r.u32()?;
                let mut ops = Vec::new();
                for _ in 0..n {
                    ops.push(decode_op(&mut r)?);
                }
                Entry::Commit(ops)
            }
            2 => {
                let n = r.u32()?;
                let mut seqs = Vec::new();
                for _ in 0..n {
                    seqs.push(r.u64()?);
                }
                Entry::MarkDelivered(seqs)
            }
            3 => Entry::DeadLetter(r.bytes()?),
            _ => return None,
        });
    }
    r.0.is_empty().then_some((seq, entries))
}

fn decode_op(r: &mut Reader<'_>) -> Option<Op> {
    Some(match r.u8()? {
        1 => Op::Product {
            sku: r.string()?,
            expected_version: r.opt_u64()?,
            value: r.bytes()?,
        },
        tag @ (2 | 3) => {
            let (sku, reference, value) = (r.string()?, r.string()?, r.bytes()?);
            if tag == 2 {
                Op::NewBatch {
                    sku,
                    reference,
                    value,
                }
            } else {
                Op::UpdateBatch {
                    sku,
                    reference,
                    value,
                }
            }
        }
        4 => Op::PutAllocation {
            sku: r.string()?,
            orderid: r.string()?,
            batchref: r.opt_string()?,
            waiting_since: r.opt_u64()?,
            qty: r.u32()?,
            value: r.bytes()?,
        },
        5 => Op::DeleteAllocation {
            sku: r.string()?,
            orderid: r.string()?,
        },
        6 => Op::Outbox {
            sku: r.string()?,
            version_number: r.u64()?,
            slot: r.string()?,
            value: r.bytes()?,
        },
        _ => return None,
    })
}

/// CRC-32 (IEEE), table-driven: the table is built at compile time.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::Product {
                sku: "LAMP".into(),
                expected_version: Some(3),
                value: b"{\"p\":1}".to_vec(),
            },
            Op::UpdateBatch {
                sku: "LAMP".into(),
                reference: "b1".into(),
                value: b"{}".to_vec(),
            },
            Op::PutAllocation {
                sku: "LAMP".into(),
                orderid: "o1".into(),
                batchref: None,
                waiting_since: Some(4),
                qty: 2,
                value: b"{}".to_vec(),
            },
            Op::Outbox {
                sku: "LAMP".into(),
                version_number: 4,
                slot: "000000".into(),
                value: b"{}".to_vec(),
            },
        ]
    }

    #[test]
    fn the_crc_is_ieee_crc32() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_and_a_torn_record_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops();
        let marks = [5, 6];
        let end = {
            let (mut journal, records) = Journal::open(dir.path(), 7).unwrap();
            assert!(records.is_empty());
            assert_eq!(journal.append(&[EntryRef::Commit(&ops)]).unwrap(), 8);
            let entries = [EntryRef::MarkDelivered(&marks), EntryRef::DeadLetter(b"x")];
            assert_eq!(journal.append(&entries).unwrap(), 9);
            journal.len
        };
        let path = dir.path().join(JOURNAL_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            CAPACITY,
            "written in place"
        );
        // A crash in the middle of a third write.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[40, 0, 0, 0, 1, 2, 3, 4, 9], end)
            .unwrap();
        drop(file);

        let (journal, records) = Journal::open(dir.path(), 7).unwrap();
        assert_eq!(
            records,
            [
                (8, vec![Entry::Commit(ops)]),
                (
                    9,
                    vec![
                        Entry::MarkDelivered(vec![5, 6]),
                        Entry::DeadLetter(b"x".to_vec())
                    ]
                ),
            ]
        );
        assert_eq!(journal.last(), 9);
    }

    #[test]
    fn after_a_checkpoint_the_older_records_are_no_longer_read() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops();
        {
            let (mut journal, _) = Journal::open(dir.path(), 0).unwrap();
            for _ in 0..3 {
                journal.append(&[EntryRef::Commit(&ops)]).unwrap();
            }
            journal.checkpointed();
            // The same size as the first: records 2 and 3 follow it, whole, in the file.
            assert_eq!(journal.append(&[EntryRef::Commit(&ops)]).unwrap(), 4);
        }
        let (_, records) = Journal::open(dir.path(), 3).unwrap();
        assert_eq!(records, [(4, vec![Entry::Commit(ops)])]);
    }
}
