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
//! The journal is the run of whole records from the start whose numbers follow each other
//! (`journal_record.rs`: the format): a record cut short or damaged (a crash in the middle of a
//! write: it was never answered), zeros, or an older record left from before the last checkpoint
//! ends it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::journal_record::{encode, parse};
pub(super) use super::journal_record::{Entry, EntryRef, Record};
use super::tables::unavailable;
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
        let record = encode(seq, entries);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::embedded::tables::Op;

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
