//! Test doubles of the service's ports, each failing or recording in one chosen way: notifications
//! that record what they were asked to send, and repositories (over the in-memory store) whose
//! commits lose the version race, are throttled, or let another process act between two chunks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::support::memory_store::InMemoryStore;
use allocation::domain::{AllocationRequired, Event, EventEnvelope, OrderLine};
use allocation::service::notifications::NotifyFuture;
use allocation::service::{
    NotificationError, Notifications, ProductRepository, ProductWrite, StoreError,
};

/// Records the out-of-stock notifications it is asked to send (or fails them all).
#[derive(Default)]
pub struct FakeNotifications {
    pub sent: Mutex<Vec<String>>,
    pub fail: bool,
}

impl Notifications for FakeNotifications {
    fn out_of_stock<'a>(&'a self, envelope: &'a EventEnvelope) -> NotifyFuture<'a> {
        Box::pin(async move {
            self.sent
                .lock()
                .unwrap()
                .push(envelope.event.sku().to_owned());
            if self.fail {
                Err(NotificationError("smtp is down".into()))
            } else {
                Ok(())
            }
        })
    }
}

/// A store whose commits always lose the version race.
#[derive(Default)]
pub struct AlwaysConflicting(pub InMemoryStore);

impl ProductRepository for AlwaysConflicting {
    crate::delegate_loads!(0);
    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        Err(StoreError::VersionConflict {
            sku: writes[0].product.sku().to_owned(),
        })
    }
}

/// After each commit that deallocates lines, reallocates them at once, as another process's
/// reallocation would between two chunks.
#[derive(Default)]
pub struct ReallocatingBetweenChunks {
    pub inner: InMemoryStore,
    pub reallocating: AtomicBool,
    pub reallocated: Mutex<Vec<(String, Option<String>)>>,
}

impl ProductRepository for ReallocatingBetweenChunks {
    crate::delegate_loads!(inner);
    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        self.inner.commit(writes).await?;
        if self.reallocating.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        for envelope in writes.iter().flat_map(|w| w.outbox.iter()) {
            let Event::AllocationRequired(AllocationRequired { orderid, sku, qty }) =
                &envelope.event
            else {
                continue;
            };
            let mut product = self.inner.load(sku, &[orderid]).await?.unwrap();
            let loaded = product.version_number();
            let line = OrderLine::parse(orderid, sku, *qty).unwrap();
            let batch = product.allocate(&line).unwrap();
            if batch.is_some() {
                let write = ProductWrite {
                    product: &product,
                    expected_version: Some(loaded),
                    changes: product.changes(),
                    outbox: &[],
                };
                self.inner.commit(&[write]).await?;
            }
            self.reallocated
                .lock()
                .unwrap()
                .push((orderid.to_string(), batch.map(|b| b.to_string())));
        }
        self.reallocating.store(false, Ordering::SeqCst);
        Ok(())
    }
    fn max_lines_per_commit(&self) -> Option<usize> {
        Some(2)
    }
}

crate::delegate_views!(ReallocatingBetweenChunks, inner);

/// Refuses one commit (a version conflict, writing nothing) once armed, `skip` commits later.
#[derive(Default)]
pub struct ConflictOnLaterChunk {
    pub inner: InMemoryStore,
    /// Commits to let through before the refused one; `usize::MAX`: never refuse.
    pub skip: AtomicUsize,
}

impl ProductRepository for ConflictOnLaterChunk {
    crate::delegate_loads!(inner);
    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        let left = self.skip.load(Ordering::SeqCst);
        if left != usize::MAX {
            self.skip.store(left.wrapping_sub(1), Ordering::SeqCst);
            if left == 0 {
                return Err(StoreError::VersionConflict {
                    sku: writes[0].product.sku().to_owned(),
                });
            }
        }
        self.inner.commit(writes).await
    }
    fn max_lines_per_commit(&self) -> Option<usize> {
        Some(2)
    }
}

crate::delegate_views!(ConflictOnLaterChunk, inner);

/// Each commit takes `commit_time` (virtual time), then is refused as throttled while
/// `throttled` is above zero (counting down), or forever with `usize::MAX`.
pub struct SlowThrottled {
    pub inner: InMemoryStore,
    pub commit_time: Duration,
    pub throttled: AtomicUsize,
    pub commits: AtomicUsize,
}

impl SlowThrottled {
    pub fn new(commit_time: Duration, throttled: usize) -> Self {
        Self {
            inner: InMemoryStore::new(),
            commit_time,
            throttled: AtomicUsize::new(throttled),
            commits: AtomicUsize::new(0),
        }
    }
}

impl ProductRepository for SlowThrottled {
    crate::delegate_loads!(inner);
    async fn commit(&self, writes: &[ProductWrite<'_>]) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.commit_time).await;
        let left = self.throttled.load(Ordering::SeqCst);
        if left > 0 {
            if left != usize::MAX {
                self.throttled.store(left - 1, Ordering::SeqCst);
            }
            return Err(StoreError::Throttled(
                "ProvisionedThroughputExceeded".into(),
            ));
        }
        self.inner.commit(writes).await
    }
}
