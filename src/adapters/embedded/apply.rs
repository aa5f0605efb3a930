//! Applying a group of requests to the database: the writer's every group, and the journal's records
//! replayed when the store opens or reopens (the same code, so a replay writes what the group wrote),
//! and the checkpoint that makes the database durable by itself (`journal.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, Durability};

use super::journal::{EntryRef, Journal};
use super::tables::{
    unavailable, META, META_JOURNAL_APPLIED, META_NEXT_DEAD_LETTER, META_NEXT_SEQ,
};
use super::writer::Request;
use super::writes::{storage, Tables};
use crate::service::StoreError;

/// What one group's transaction did, once it is durable.
pub(super) struct Applied {
    /// Per request, in order: its outcome (how many were pending for `MarkDelivered`, the id for
    /// `DeadLetter`, 0 for the others), or the error that concerns it alone.
    pub outcomes: Vec<Result<u64, StoreError>>,
    pub next_seq: u64,
    pub next_dead_letter: u64,
    /// How long the durable commit (flush and fsync) took.
    pub commit_time: Duration,
}

/// How a group meets the journal.
pub(super) enum Journaling<'a> {
    /// A new group: its applied writes are appended (the durable part) before the commit.
    Append(&'a mut Journal),
    /// The journal's record of this number, applied again.
    Replay(u64),
}

/// Applies `group` to `db` in one transaction committed without an fsync. The transaction also
/// records in `meta` the number of the journal record that holds the group, so the database always
/// says which records it has, whatever of it redb made durable (a checkpoint, a clean close).
pub(super) fn apply(
    db: &Database,
    group: &[Request],
    next_seq: u64,
    next_dead_letter: u64,
    journaling: Journaling<'_>,
) -> Result<Applied, StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(|e| unavailable("begin write", e))?;
    txn.set_durability(Durability::None);
    let (first_seq, first_dead_letter) = (next_seq, next_dead_letter);
    let mut durable = Duration::ZERO;
    let (mut next_seq, mut next_dead_letter) = (next_seq, next_dead_letter);
    let outcomes = {
        let mut tables = Tables::open(&txn)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for request in group {
            outcomes.push(match request {
                Request::Commit { ops, .. } => match tables.check(ops) {
                    Ok(()) => {
                        tables.write(ops, &mut next_seq)?;
                        Ok(0)
                    }
                    Err(StoreError::Unavailable(detail)) => {
                        return Err(StoreError::Unavailable(detail))
                    }
                    Err(rejected) => Err(rejected),
                },
                Request::MarkDelivered { seqs, .. } => Ok(tables.mark_delivered(seqs)?),
                Request::DeadLetter { value, .. } => {
                    let id = next_dead_letter;
                    tables
                        .dead_letters
                        .insert(id, value.as_slice())
                        .map_err(storage)?;
                    next_dead_letter += 1;
                    Ok(id)
                }
                Request::Shutdown { .. } => Ok(0),
            });
        }
        if next_seq != first_seq {
            tables
                .meta
                .insert(META_NEXT_SEQ, next_seq)
                .map_err(storage)?;
        }
        if next_dead_letter != first_dead_letter {
            tables
                .meta
                .insert(META_NEXT_DEAD_LETTER, next_dead_letter)
                .map_err(storage)?;
        }
        let entries: Vec<EntryRef<'_>> = group
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .filter_map(|(request, _)| match request {
                Request::Commit { ops, .. } => Some(EntryRef::Commit(ops)),
                Request::MarkDelivered { seqs, .. } => Some(EntryRef::MarkDelivered(seqs)),
                Request::DeadLetter { value, .. } => Some(EntryRef::DeadLetter(value)),
                Request::Shutdown { .. } => None,
            })
            .collect();
        let record = match &journaling {
            Journaling::Append(journal) => (!entries.is_empty()).then(|| journal.last() + 1),
            Journaling::Replay(record) => Some(*record),
        };
        if let Some(record) = record {
            tables
                .meta
                .insert(META_JOURNAL_APPLIED, record)
                .map_err(storage)?;
        }
        if let (Journaling::Append(journal), false) = (journaling, entries.is_empty()) {
            let started = Instant::now();
            journal.append(&entries)?;
            durable = started.elapsed();
        }
        outcomes
    };
    let started = Instant::now();
    txn.commit().map_err(|e| unavailable("commit", e))?;
    Ok(Applied {
        commit_time: durable + started.elapsed(),
        outcomes,
        next_seq,
        next_dead_letter,
    })
}

/// Commits durably (one fsync of every page written since the last checkpoint): the database now
/// holds the journal up to record `last` by itself.
pub(super) fn checkpoint(db: &Database, last: u64) -> Result<(), StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(|e| unavailable("begin checkpoint", e))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| unavailable("open table", e))?;
        meta.insert(META_JOURNAL_APPLIED, last).map_err(storage)?;
    }
    txn.commit().map_err(|e| unavailable("checkpoint", e))
}

/// Opens the journal of the store in `dir` and replays into `db` the records it holds beyond what
/// the database has. When the store opens (`durable`), then checkpoints and empties it; when it is
/// reopened after a storage failure, the replay is not synced (the disk may still be full: reads
/// must go on) and the records stay in the journal until the next checkpoint. Returns the journal
/// and the counters (next outbox sequence number, next dead-letter id) as the database now has them.
pub(super) fn recover(
    db: &Database,
    dir: &Path,
    durable: bool,
) -> Result<(Journal, u64, u64), StoreError> {
    let (applied, mut next_seq, mut next_dead_letter) = {
        let txn = db.begin_read().map_err(|e| unavailable("begin read", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| unavailable("open table", e))?;
        let get = |key: &str, default: u64| -> Result<u64, StoreError> {
            Ok(meta
                .get(key)
                .map_err(storage)?
                .map_or(default, |v| v.value()))
        };
        (
            get(META_JOURNAL_APPLIED, 0)?,
            get(META_NEXT_SEQ, 1)?,
            get(META_NEXT_DEAD_LETTER, 1)?,
        )
    };
    let (mut journal, records) = Journal::open(dir, applied)?;
    let replayed: Vec<_> = records
        .into_iter()
        .filter(|(seq, _)| *seq > applied)
        .collect();
    let replaying = !replayed.is_empty();
    if !replayed.is_empty() {
        tracing::warn!(
            records = replayed.len(),
            "embedded store: replaying the journal's groups the database had not made durable"
        );
    }
    for (seq, entries) in replayed {
        let group: Vec<Request> = entries.into_iter().map(Request::replayed).collect();
        let replayed = apply(
            db,
            &group,
            next_seq,
            next_dead_letter,
            Journaling::Replay(seq),
        )?;
        if replayed.outcomes.iter().any(Result::is_err) {
            return Err(StoreError::Corrupt(format!(
                "embedded store: journal record {seq} does not apply to the database"
            )));
        }
        next_seq = replayed.next_seq;
        next_dead_letter = replayed.next_dead_letter;
    }
    if !replaying {
        // Whatever the file holds, the database holds durably: start the journal again.
        journal.checkpointed();
    } else if durable {
        checkpoint(db, journal.last())?;
        journal.checkpointed();
    }
    Ok((journal, next_seq, next_dead_letter))
}
