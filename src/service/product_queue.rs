//! Per-product queues: a hot SKU is served, not fought over.
//!
//! Every command on a product joins that product's queue (`Allocate`, `Reallocate`, and the batch
//! commands: `MessageBus::handle` puts them there). If the product has no drain task, one starts; it
//! takes what is waiting, in arrival order, and applies each run of consecutive allocations as ONE
//! group (one load, each allocation in turn, one commit: `handlers::allocate`; at most
//! `MessageBus::max_group` per group) and each other command alone, answers each caller, and repeats
//! until the queue is empty. Commands on one product thus never race each other in this process,
//! while other products' queues drain in parallel. Version conflicts come only from other processes, and the bus still retries them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::handlers::QueuedAllocation;
use super::message_bus::WeakBus;
use super::{MessageBus, ServiceError, StoreError, UnitOfWorkFactory};

/// A command run alone by the drain task (it answers its caller itself).
pub(crate) type Exclusive = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One waiting command.
enum Queued {
    Allocate(
        QueuedAllocation,
        oneshot::Sender<Result<String, ServiceError>>,
    ),
    Exclusive(Exclusive),
}

/// The commands waiting, by SKU. A SKU has an entry exactly while its drain task runs.
#[derive(Default)]
pub struct ProductQueues {
    waiting: Mutex<HashMap<String, VecDeque<Queued>>>,
}

/// The answer of a caller whose command's drain task stopped without answering (it panicked).
fn stopped() -> ServiceError {
    ServiceError::Store(StoreError::Unavailable(
        "the product's queue stopped before answering".into(),
    ))
}

impl ProductQueues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Queued>>> {
        // Nothing is left half-done under this lock (pushes and pops only).
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an allocation and waits for its answer.
    pub(crate) async fn allocate<F: UnitOfWorkFactory>(
        &self,
        bus: &MessageBus<F>,
        allocation: QueuedAllocation,
    ) -> Result<String, ServiceError> {
        let sku = allocation.sku().to_string();
        let (answer, answered) = oneshot::channel();
        self.push(bus, sku, Queued::Allocate(allocation, answer));
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Queues a command that runs alone (`run` answers through the channel it captured) and waits.
    pub(crate) async fn exclusive<F: UnitOfWorkFactory, T>(
        &self,
        bus: &MessageBus<F>,
        sku: String,
        run: Exclusive,
        answered: oneshot::Receiver<Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        self.push(bus, sku, Queued::Exclusive(run));
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Adds the command to its SKU's queue and starts the SKU's drain task if none runs.
    fn push<F: UnitOfWorkFactory>(&self, bus: &MessageBus<F>, sku: String, queued: Queued) {
        let start_drain = {
            let mut waiting = self.lock();
            match waiting.get_mut(&sku) {
                Some(queue) => {
                    queue.push_back(queued);
                    false
                }
                None => {
                    waiting.insert(sku.clone(), VecDeque::from([queued]));
                    true
                }
            }
        };
        if start_drain {
            tokio::spawn(drain(bus.downgrade(), sku));
        }
    }

    /// The next work of the SKU: a run of consecutive allocations (at most `max`), or one other
    /// command. When nothing waits, removes the SKU's entry (the drain task then ends).
    fn next(&self, sku: &str, max: usize) -> Option<Work> {
        let mut waiting = self.lock();
        let queue = waiting.get_mut(sku)?;
        match queue.pop_front() {
            None => {
                waiting.remove(sku);
                None
            }
            Some(Queued::Exclusive(run)) => Some(Work::Exclusive(run)),
            Some(Queued::Allocate(first, answer)) => {
                let mut group = vec![(first, answer)];
                while group.len() < max {
                    match queue.pop_front() {
                        Some(Queued::Allocate(allocation, answer)) => {
                            group.push((allocation, answer))
                        }
                        Some(other) => {
                            queue.push_front(other);
                            break;
                        }
                        None => break,
                    }
                }
                Some(Work::Allocations(group))
            }
        }
    }

    fn abandon(&self, sku: &str) {
        // Dropping the waiting commands' answer channels tells their callers the queue stopped.
        self.lock().remove(sku);
    }
}

enum Work {
    Allocations(
        Vec<(
            QueuedAllocation,
            oneshot::Sender<Result<String, ServiceError>>,
        )>,
    ),
    Exclusive(Exclusive),
}

/// Removes the SKU's entry if the drain task ends early (a panic), so later commands start anew.
struct DrainGuard<F: UnitOfWorkFactory> {
    bus: WeakBus<F>,
    sku: String,
    finished: bool,
}

impl<F: UnitOfWorkFactory> Drop for DrainGuard<F> {
    fn drop(&mut self) {
        if let (false, Some(bus)) = (self.finished, self.bus.upgrade()) {
            bus.queues().abandon(&self.sku);
        }
    }
}

/// Applies the SKU's waiting commands, in order, until none wait.
///
/// The task holds the bus only while it takes and applies work, never while it answers: a caller
/// that has its answer and drops its bus knows the bus (and its store) is gone, so a store can be
/// reopened at once. Every waiting caller holds the bus, so the bus outlives any work queued.
async fn drain<F: UnitOfWorkFactory>(bus: WeakBus<F>, sku: String) {
    let mut guard = DrainGuard {
        bus: bus.clone(),
        sku: sku.clone(),
        finished: false,
    };
    loop {
        let Some(strong) = bus.upgrade() else { break };
        let Some(work) = strong.queues().next(&sku, strong.max_group()) else {
            break;
        };
        match work {
            Work::Exclusive(run) => {
                drop(strong);
                run().await;
            }
            Work::Allocations(group) => {
                let (allocations, answers): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                let results = strong.allocate_group(&sku, &allocations).await;
                drop(strong);
                for (answer, result) in answers.into_iter().zip(results) {
                    // A caller that stopped waiting still had its allocation applied.
                    let _ = answer.send(result);
                }
            }
        }
    }
    guard.finished = true;
}
