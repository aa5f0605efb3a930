//! The writer thread: owns the write side and group-commits every waiting request in one fsync.
//!
//! Callers send a [`Request`] with a oneshot reply. The thread takes the first waiting request, drains
//! all others that are waiting (up to [`MAX_REQUESTS_PER_GROUP`]), under load waits briefly for the callers it just
//! answered (`Writer::gather`), and applies them in ONE redb write transaction:
//! each commit's conditions are checked against the state including the earlier requests of the group,
//! and only a commit whose checks all pass writes anything. Then the group's applied writes are
//! appended to the commit journal with one fsync (`journal.rs`), the transaction is committed to redb
//! without one (`Durability::None`), and every request is answered. Nothing is answered before its
//! group is on disk; if the group's transaction fails, every request of the group gets `Unavailable`.
//! Now and then a checkpoint makes the database itself durable and empties the journal.
//!
//! A failed group means the storage failed (a full disk, an I/O error): redb then refuses everything
//! until the file is reopened, so the writer reopens it at once (reads go on) and answers writes
//! `Unavailable` without trying them for a backoff (100 ms, doubling to 5 s); then one group is tried
//! again. The first group that commits ends the failure: no restart is needed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::apply::{apply, checkpoint, recover, Applied, Journaling};
use super::journal::{Entry, Journal};
use super::slot::DbSlot;
use super::tables::Op;
use crate::service::{exponential_backoff, StoreError};

/// The most requests applied in one transaction (bounds a group's latency).
pub(super) const MAX_REQUESTS_PER_GROUP: usize = 512;

/// The longest a group waits for more requests (see `Writer::gather`).
const MAX_LINGER: Duration = Duration::from_millis(2);
/// The database's writeback is started at most this often. Each group's journal fdatasync also
/// flushes whatever of the database the disk is writing at that moment, so starting the writeback
/// after every group made every fdatasync carry that group's pages; at most every 10 ms, most
/// fdatasyncs carry only their journal record, and a checkpoint still finds most pages written
/// (measured in `docs/performance.md`, "The commit journal").
const WRITEBACK_INTERVAL: Duration = Duration::from_millis(10);

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

/// Where a request's caller waits for its answer (after its group's fsync).
pub(super) type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the writer thread does for callers.
pub(super) enum Request {
    /// Check and write one commit's operations.
    Commit { ops: Vec<Op>, done: Answer<()> },
    /// Remove these sequence numbers from the pending outbox; answers how many were pending.
    MarkDelivered {
        seqs: Vec<u64>,
        pending: Answer<u64>,
    },
    /// Store a dead letter, already encoded; answers its id.
    DeadLetter { value: Vec<u8>, id: Answer<u64> },
    /// Finish the current group, then stop. Later requests answer `Unavailable`.
    Shutdown { done: Answer<()> },
}

impl Request {
    /// A request rebuilt from the journal (nobody waits for its answer).
    pub(super) fn replayed(entry: Entry) -> Self {
        match entry {
            Entry::Commit(ops) => Request::Commit {
                ops,
                done: oneshot::channel().0,
            },
            Entry::MarkDelivered(seqs) => Request::MarkDelivered {
                seqs,
                pending: oneshot::channel().0,
            },
            Entry::DeadLetter(value) => Request::DeadLetter {
                value,
                id: oneshot::channel().0,
            },
        }
    }

    /// Answers the caller with the outcome of applying the request (`apply::Applied::outcomes`:
    /// the count or the id, for the requests that answer one).
    fn answer(self, outcome: Result<u64, StoreError>) {
        // The caller may have stopped waiting; what was applied stands all the same.
        match self {
            Request::Commit { done, .. } | Request::Shutdown { done } => {
                let _ = done.send(outcome.map(|_| ()));
            }
            Request::MarkDelivered { pending, .. } => {
                let _ = pending.send(outcome);
            }
            Request::DeadLetter { id, .. } => {
                let _ = id.send(outcome);
            }
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
    /// Where each group is made durable before it is answered.
    pub journal: Journal,
    /// The store's directory (the journal is reopened from it after a storage failure).
    pub dir: PathBuf,
    /// The database was reopened but the journal could not be replayed into it: writes wait.
    pub replay_pending: bool,
    /// The database file, opened a second time to start its writeback (`start_writeback`).
    pub database_file: Option<std::fs::File>,
    /// When the writeback was last started.
    pub writeback_started: Instant,
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

    /// Takes every request already waiting (up to [`MAX_REQUESTS_PER_GROUP`]).
    fn drain(&mut self, requests: &Receiver<Request>) {
        while !self.stop && self.requests.len() < MAX_REQUESTS_PER_GROUP {
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
                Err(TryRecvError::Disconnected) => {
                    self.checkpoint();
                    return;
                }
            };
            let mut group = Group::new(first);
            group.drain(&self.requests);
            // Callers are queueing behind the disk, or several were answered together: gather.
            if waiting || self.last_answered > 1 {
                let waited = if waiting { group.requests.len() } else { 0 };
                self.gather(
                    &mut group,
                    (waited + self.last_answered).min(MAX_REQUESTS_PER_GROUP),
                );
            }
            let stop = group.stop;
            self.commit_group(group.requests);
            if self.writeback_started.elapsed() >= WRITEBACK_INTERVAL {
                self.start_writeback();
            }
            if stop {
                self.checkpoint();
                return;
            }
            if self.journal.is_due() {
                self.checkpoint();
            }
        }
    }

    /// Asks the kernel to start writing the database's dirty pages now, without waiting: the groups
    /// committed since wrote their pages without syncing them, and a checkpoint that found them all
    /// still in memory would hold the writer (and every caller) for the whole flush.
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        self.writeback_started = Instant::now();
        if let Some(file) = &self.database_file {
            // SAFETY: a plain system call on a file descriptor this struct owns; it only hints
            // the kernel (an error changes nothing: the checkpoint's fsync still writes it all).
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }

    /// Makes the database durable up to the journal's last record, then empties the journal. A
    /// failure is a storage failure (the journal keeps every answered group meanwhile).
    fn checkpoint(&mut self) {
        if self.journal.is_empty() || self.failing.is_some() {
            return;
        }
        let done = self
            .slot
            .current()
            .and_then(|db| checkpoint(&db, self.journal.last()));
        match done {
            Ok(()) => self.journal.checkpointed(),
            Err(error) => self.recover(error),
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
            if self.slot.is_open() && (self.journal.is_empty() || self.failing.is_some()) {
                return self.requests.recv().ok();
            }
            if self.slot.is_open() {
                // Idle with records in the journal: checkpoint once they are due.
                match self.requests.recv_timeout(self.journal.due_in()) {
                    Ok(request) => return Some(request),
                    Err(RecvTimeoutError::Timeout) => self.checkpoint(),
                    Err(RecvTimeoutError::Disconnected) => {
                        self.checkpoint();
                        return None;
                    }
                }
                continue;
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

    /// Reopens the database (which repairs it) and, before anything reads it, replays the journal into it: redb lost
    /// the groups it had not checkpointed, which were answered.
    ///
    /// If the replay itself fails (the disk is still full: replaying needs room), the database is
    /// served to reads all the same, without the groups of the journal's last moments (at most
    /// one checkpoint interval), and writes stay refused until a later reopen replays them.
    fn reopen(&mut self) {
        let dir = self.dir.clone();
        let (mut recovered, mut replay_failed) = (None, None);
        let reopened = self.slot.reopen(|db| match recover(db, &dir, false) {
            Ok(done) => {
                recovered = Some(done);
                Ok(())
            }
            Err(error) => {
                replay_failed = Some(error.clone());
                Err(error)
            }
        });
        match (reopened, recovered) {
            (Ok(()), Some((journal, next_seq, next_dead_letter))) => {
                self.journal = journal;
                self.next_seq = next_seq;
                self.next_dead_letter = next_dead_letter;
                self.replay_pending = false;
                tracing::warn!("embedded store: reopened the database after a storage failure");
            }
            (Ok(()), None) => {}
            (Err(error), _) if replay_failed.is_some() => {
                // The file opened but the replay failed, which left that handle refusing
                // everything: open it once more, without the replay, for reads.
                self.replay_pending = true;
                tracing::error!(%error, "embedded store: the journal's last groups cannot be \
                    replayed yet; reads go on without them, writes wait");
                if let Err(error) = self.slot.reopen(|_| Ok(())) {
                    tracing::error!(%error, "embedded store: cannot reopen the database yet");
                }
            }
            (Err(error), _) => {
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
        if self.failing.is_none() {
            return false;
        }
        let retry_now = self
            .failing
            .as_ref()
            .is_some_and(|failing| Instant::now() >= failing.retry_at);
        if !self.slot.is_open() || (retry_now && self.replay_pending) {
            self.reopen();
            if retry_now && self.replay_pending {
                // Still no room to replay: wait a longer backoff before the next try.
                if let Some(failing) = &mut self.failing {
                    failing.failures += 1;
                    failing.retry_at = Instant::now() + failing.backoff();
                }
            }
        }
        let Some(failing) = &self.failing else {
            return false;
        };
        if retry_now && self.slot.is_open() && !self.replay_pending {
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
            request.answer(answer);
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
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
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
                    request.answer(outcome);
                }
            }
            Err(error) => {
                counters.failed_groups.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, requests = size, "embedded store: group commit failed");
                self.last_answered = 0;
                for request in group {
                    request.answer(Err(error.clone()));
                }
                self.recover(error);
            }
        }
    }

    /// Applies the group in one write transaction, journals what it wrote and commits it. An `Err`
    /// means nothing of the group is written (the transaction is aborted when dropped).
    fn apply(&mut self, group: &[Request]) -> Result<Applied, StoreError> {
        let db = self.slot.current()?;
        apply(
            &db,
            group,
            self.next_seq,
            self.next_dead_letter,
            Journaling::Append(&mut self.journal),
        )
    }
}
