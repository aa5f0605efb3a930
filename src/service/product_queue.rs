//! Per-product queues of allocations: a hot SKU is served, not fought over.
//!
//! An allocation of a SKU joins that SKU's queue. If no group of that SKU is being applied, a drain
//! task starts; it takes everything waiting (up to the group limit), applies it as one group (one
//! load, each allocation in turn, one commit: `MessageBus::allocate_together`), answers each caller,
//! and repeats until the queue is empty. Allocations of one SKU thus never race each other in this
//! process; other SKUs' queues drain in parallel. Version conflicts come only from other processes,
//! and the bus still retries them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::handlers::QueuedAllocation;
use super::{MessageBus, ServiceError, StoreError, UnitOfWorkFactory};

type Answer = oneshot::Sender<Result<String, ServiceError>>;

/// The allocations waiting, by SKU. A SKU has an entry exactly while its drain task runs.
#[derive(Default)]
pub struct ProductQueues {
    waiting: Mutex<HashMap<String, Vec<(QueuedAllocation, Answer)>>>,
}

impl ProductQueues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<(QueuedAllocation, Answer)>>> {
        // Nothing is left half-done under this lock (pushes and swaps only).
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the allocation, starts its SKU's drain task if none runs, and waits for the answer.
    pub async fn allocate<F: UnitOfWorkFactory>(
        &self,
        bus: &MessageBus<F>,
        allocation: QueuedAllocation,
    ) -> Result<String, ServiceError> {
        let sku = allocation.cmd.sku.clone();
        let (answer, answered) = oneshot::channel();
        let start_drain = {
            let mut waiting = self.lock();
            match waiting.get_mut(&sku) {
                Some(queue) => {
                    queue.push((allocation, answer));
                    false
                }
                None => {
                    waiting.insert(sku.clone(), vec![(allocation, answer)]);
                    true
                }
            }
        };
        if start_drain {
            tokio::spawn(drain(bus.clone(), sku));
        }
        answered.await.unwrap_or_else(|_| {
            Err(ServiceError::Store(StoreError::Unavailable(
                "the allocation's group stopped before answering".into(),
            )))
        })
    }

    /// Takes up to `max` waiting allocations of the SKU; when none wait, removes the SKU's entry (the
    /// drain task then ends).
    fn take(&self, sku: &str, max: usize) -> Vec<(QueuedAllocation, Answer)> {
        let mut waiting = self.lock();
        let Some(queue) = waiting.get_mut(sku) else {
            return Vec::new();
        };
        if queue.is_empty() {
            waiting.remove(sku);
            return Vec::new();
        }
        let rest = queue.split_off(queue.len().min(max));
        std::mem::replace(queue, rest)
    }

    fn abandon(&self, sku: &str) {
        // Dropping the answers tells their callers the group stopped.
        self.lock().remove(sku);
    }
}

/// Removes the SKU's entry if the drain task ends early (a panic), so later allocations start anew.
struct DrainGuard<F: UnitOfWorkFactory> {
    bus: MessageBus<F>,
    sku: String,
    finished: bool,
}

impl<F: UnitOfWorkFactory> Drop for DrainGuard<F> {
    fn drop(&mut self) {
        if !self.finished {
            self.bus.queues().abandon(&self.sku);
        }
    }
}

/// Applies the SKU's waiting allocations, group after group, until none wait.
async fn drain<F: UnitOfWorkFactory>(bus: MessageBus<F>, sku: String) {
    let mut guard = DrainGuard {
        bus: bus.clone(),
        sku: sku.clone(),
        finished: false,
    };
    let max = bus.max_group();
    loop {
        let group = bus.queues().take(&sku, max);
        if group.is_empty() {
            guard.finished = true;
            return;
        }
        let (allocations, answers): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let results = bus.allocate_together(&sku, &allocations).await;
        for (answer, result) in answers.into_iter().zip(results) {
            // A caller that stopped waiting still had its allocation applied.
            let _ = answer.send(result);
        }
    }
}
