//! The writer thread: owns the write side and group-commits every waiting request in one fsync.
//!
//! Callers send a [`Request`] with a oneshot reply. The thread takes the first waiting request, drains
//! all others that are waiting (up to [`MAX_GROUP`]), under load waits briefly for the callers it just
//! answered (`Writer::gather`), and applies them in ONE redb write transaction:
//! each commit's conditions are checked against the state including the earlier requests of the group,
//! and only a commit whose checks all pass writes anything. Then the transaction is committed once
//! (one fsync, `Durability::Immediate`) and every request is answered. Nothing is answered before its
//! group is on disk; if the group's transaction fails, every request of the group gets `Unavailable`.
//!
//! A failed group means the storage failed (a full disk, an I/O error): redb then refuses everything
//! until the file is reopened, so the writer reopens it at once (reads go on) and answers writes
//! `Unavailable` without trying them for a backoff (100 ms, doubling to 5 s); then one group is tried
//! again. The first group that commits ends the failure: no restart is needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::Durability;
use tokio::sync::{oneshot, watch};

use super::slot::DbSlot;
use super::tables::{unavailable, Op, META_NEXT_DEAD_LETTER, META_NEXT_SEQ};
use super::writes::{storage, Tables};
use crate::service::{exponential_backoff, StoreError};

/// The most requests applied in one transaction (bounds a group's latency).
pub(super) const MAX_GROUP: usize = 512;

/// The longest a group waits for more requests (see `Writer::gather`).
const MAX_LINGER: Duration = Duration::from_millis(2);

/// After a storage failure, how long writes are answered `Unavailable` before one is tried again:
/// doubling from the first to the last.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The storage failed: writes wait for `retry_at`.
#[derive(Debug, Clone)]
pub(super) struct Failing {
    error: StoreError,
    retry_at: Instant,
    /// Failed groups in a row (the backoff grows with them).
    failures: u32,
}

impl Failing {
    fn backoff(&self) -> Duration {
        exponential_backoff(FIRST_BACKOFF, MAX_BACKOFF, self.failures)
    }
}

/// The answer to a request: a number whose meaning depends on the request.
pub(super) type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// What the writer thread does for callers.
pub(super) enum Request {
    /// Check and write one commit's operations (answers 0).
    Commit { ops: Vec<Op>, reply: Reply },
    /// Remove these sequence numbers from the pending outbox (answers how many were pending).
    MarkDelivered { seqs: Vec<u64>, reply: Reply },
    /// Store a dead letter, already encoded (answers its id).
    DeadLetter { value: Vec<u8>, reply: Reply },
    /// Finish the current group, then stop (answers 0). Later requests answer `Unavailable`.
    Shutdown { reply: Reply },
}

impl Request {
    fn into_reply(self) -> Reply {
        match self {
            Request::Commit { reply, .. }
            | Request::MarkDelivered { reply, .. }
            | Request::DeadLetter { reply, .. }
            | Request::Shutdown { reply } => reply,
        }
    }
}

/// Counters shared by the writer thread and the store's handle.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub group_commits: AtomicU64,
    pub requests: AtomicU64,
    pub commits: AtomicU64,
    pub rejected: AtomicU64,
    pub failed_groups: AtomicU64,
    pub largest_group: AtomicU64,
    /// Nanoseconds spent in durable commits (flush and fsync).
    pub durable_commit_nanos: AtomicU64,
}

/// State shared with the store's handle: counters, and the commit signal for relays.
#[derive(Debug)]
pub(super) struct Shared {
    pub counters: Counters,
    /// The sequence number of the newest durable outbox event (0: none yet).
    pub outbox_head: watch::Sender<u64>,
}

pub(super) struct Writer {
    pub slot: Arc<DbSlot>,
    pub requests: Receiver<Request>,
    pub shared: Arc<Shared>,
    /// The next global outbox sequence number (as committed).
    pub next_seq: u64,
    pub next_dead_letter: u64,
    /// Requests the previous group answered with success (their callers are likely to come back).
    pub last_answered: usize,
    /// A moving average of the durable commit's duration (mostly the fsync).
    pub commit_time: Duration,
    /// Set while the storage is failing.
    pub failing: Option<Failing>,
}

/// What one group's transaction did, once it is durable.
struct Applied {
    outcomes: Vec<Result<u64, StoreError>>,
    next_seq: u64,
    next_dead_letter: u64,
    /// How long the durable commit (flush and fsync) took.
    commit_time: Duration,
}

/// The requests of one transaction.
struct Group {
    requests: Vec<Request>,
    /// It holds a `Shutdown`: take nothing more, stop after it.
    stop: bool,
}

impl Group {
    fn new(first: Request) -> Self {
        let mut group = Self {
            requests: Vec::new(),
            stop: false,
        };
        group.push(first);
        group
    }

    fn push(&mut self, request: Request) {
        self.stop |= matches!(request, Request::Shutdown { .. });
        self.requests.push(request);
    }

    /// Takes every request already waiting (up to [`MAX_GROUP`]).
    fn drain(&mut self, requests: &Receiver<Request>) {
        while !self.stop && self.requests.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => self.push(request),
                Err(_) => break,
            }
        }
    }
}

impl Writer {
    /// Serves requests until every sender is gone or a `Shutdown` arrives.
    pub fn run(mut self) {
        loop {
            // Requests already waiting were sent by callers other than those just answered.
            let (first, waiting) = match self.requests.try_recv() {
                Ok(request) => (request, true),
                Err(TryRecvError::Empty) => match self.next_request() {
                    Some(request) => (request, false),
                    None => return,
                },
                Err(TryRecvError::Disconnected) => return,
            };
            let mut group = Group::new(first);
            group.drain(&self.requests);
            // Callers are queueing behind the disk, or several were answered together: gather.
            if waiting || self.last_answered > 1 {
                let waited = if waiting { group.requests.len() } else { 0 };
                self.gather(&mut group, (waited + self.last_answered).min(MAX_GROUP));
            }
            let stop = group.stop;
            self.commit_group(group.requests);
            if stop {
                return;
            }
        }
    }

    /// Waits a little for the callers answered by the previous group, who usually come straight back
    /// with their next commit: without this, under load, callers split into cohorts that take turns,
    /// each group holding only part of them. Stops when the group holds `target` requests (those that
    /// were waiting plus the previous group's successful ones), when the next request does not come
    /// within the group's time per request so far (waiting longer would lower the throughput), or
    /// after one recent durable commit's duration (at most [`MAX_LINGER`]). A lone caller never waits.
    fn gather(&self, group: &mut Group, target: usize) {
        let start = Instant::now();
        let deadline = start + self.commit_time.min(MAX_LINGER);
        while !group.stop && group.requests.len() < target {
            let now = Instant::now();
            let size = u32::try_from(group.requests.len())
                .unwrap_or(u32::MAX)
                .max(1);
            let per_request = (now - start + self.commit_time) / size;
            let Some(left) = deadline.min(now + per_request).checked_duration_since(now) else {
                break;
            };
            match self.requests.recv_timeout(left) {
                Ok(request) => {
                    group.push(request);
                    group.drain(&self.requests);
                }
                Err(_) => break,
            }
        }
    }

    /// Waits for the next request. While the database is closed (a reopen failed), tries to open it
    /// again after each backoff, so reads come back even when no write arrives.
    fn next_request(&mut self) -> Option<Request> {
        loop {
            if self.slot.is_open() {
                return self.requests.recv().ok();
            }
            let wait = self
                .failing
                .as_ref()
                .map_or(FIRST_BACKOFF, Failing::backoff);
            match self.requests.recv_timeout(wait) {
                Ok(request) => return Some(request),
                Err(RecvTimeoutError::Timeout) => self.reopen(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Reopens the database (which repairs it); logs the outcome.
    fn reopen(&self) {
        match self.slot.reopen() {
            Ok(()) => {
                tracing::warn!("embedded store: reopened the database after a storage failure")
            }
            Err(error) => {
                tracing::error!(%error, "embedded store: cannot reopen the database yet")
            }
        }
    }

    /// After a failed group: reopen the database so reads go on, and hold writes for a backoff.
    fn recover(&mut self, error: StoreError) {
        let failures = self
            .failing
            .as_ref()
            .map_or(1, |failing| failing.failures + 1);
        let backoff = exponential_backoff(FIRST_BACKOFF, MAX_BACKOFF, failures);
        tracing::error!(%error, ?backoff,
            "embedded store: storage failed; writes answer 503 until it recovers");
        self.failing = Some(Failing {
            error,
            retry_at: Instant::now() + backoff,
            failures,
        });
        self.reopen();
    }

    /// Answers the group without trying it while the storage is failing and its backoff runs (or
    /// the database is closed); `false` if the group should be tried.
    fn refuse_while_failing(&mut self, group: &mut Vec<Request>) -> bool {
        let Some(failing) = &self.failing else {
            return false;
        };
        if !self.slot.is_open() {
            self.reopen();
        }
        if Instant::now() >= failing.retry_at && self.slot.is_open() {
            return false;
        }
        let error = StoreError::Unavailable(format!(
            "embedded store: storage failing, writes resume once it recovers ({})",
            failing.error
        ));
        self.last_answered = 0;
        for request in group.drain(..) {
            let answer = match request {
                Request::Shutdown { .. } => Ok(0),
                _ => Err(error.clone()),
            };
            let _ = request.into_reply().send(answer);
        }
        true
    }

    fn commit_group(&mut self, mut group: Vec<Request>) {
        let counters = &self.shared.counters;
        let size = group.len() as u64;
        counters.requests.fetch_add(size, Ordering::Relaxed);
        counters.largest_group.fetch_max(size, Ordering::Relaxed);
        if self.refuse_while_failing(&mut group) {
            return;
        }
        let counters = &self.shared.counters;
        match self.apply(&group) {
            Ok(applied) => {
                if self.failing.take().is_some() {
                    tracing::warn!("embedded store: storage recovered; writes resume");
                }
                counters.group_commits.fetch_add(1, Ordering::Relaxed);
                let nanos = u64::try_from(applied.commit_time.as_nanos()).unwrap_or(u64::MAX);
                counters
                    .durable_commit_nanos
                    .fetch_add(nanos, Ordering::Relaxed);
                if applied.next_seq != self.next_seq {
                    self.shared.outbox_head.send_replace(applied.next_seq - 1);
                }
                self.next_seq = applied.next_seq;
                self.next_dead_letter = applied.next_dead_letter;
                // Moving average over about 8 groups.
                self.commit_time = (self.commit_time * 7 + applied.commit_time) / 8;
                self.last_answered = applied.outcomes.iter().filter(|o| o.is_ok()).count();
                for (request, outcome) in group.into_iter().zip(applied.outcomes) {
                    match (&request, &outcome) {
                        (Request::Commit { .. }, Ok(_)) => {
                            counters.commits.fetch_add(1, Ordering::Relaxed);
                        }
                        (Request::Commit { .. }, Err(_)) => {
                            counters.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    // The caller may have stopped waiting; its commit stands all the same.
                    let _ = request.into_reply().send(outcome);
                }
            }
            Err(error) => {
                counters.failed_groups.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, requests = size, "embedded store: group commit failed");
                self.last_answered = 0;
                for request in group {
                    let _ = request.into_reply().send(Err(error.clone()));
                }
                self.recover(error);
            }
        }
    }

    /// Applies the group in one write transaction and commits it durably. An `Err` means nothing of
    /// the group is written (the transaction is aborted when dropped).
    fn apply(&self, group: &[Request]) -> Result<Applied, StoreError> {
        let db = self.slot.current()?;
        let mut txn = db
            .begin_write()
            .map_err(|e| unavailable("begin write", e))?;
        txn.set_durability(Durability::Immediate);
        let mut next_seq = self.next_seq;
        let mut next_dead_letter = self.next_dead_letter;
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
            if next_seq != self.next_seq {
                tables
                    .meta
                    .insert(META_NEXT_SEQ, next_seq)
                    .map_err(storage)?;
            }
            if next_dead_letter != self.next_dead_letter {
                tables
                    .meta
                    .insert(META_NEXT_DEAD_LETTER, next_dead_letter)
                    .map_err(storage)?;
            }
            outcomes
        };
        let started = Instant::now();
        txn.commit().map_err(|e| unavailable("commit", e))?;
        Ok(Applied {
            commit_time: started.elapsed(),
            outcomes,
            next_seq,
            next_dead_letter,
        })
    }
}
