//! Per-product queues: a hot SKU is served, not fought over.
//!
//! Every command on a product joins that product's queue (`Allocate`, `Reallocate`, and the batch
//! commands: `MessageBus::handle` puts them there). If the product has no drain task, one starts; it
//! takes what is waiting, in arrival order, and applies each run of consecutive allocations as ONE
//! group (one load, each allocation in turn, one commit: `handlers::AllocateGroup`; at most
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
use super::{MessageBus, ProductRepository, ServiceError, StoreError};

/// A command that takes its turn alone (`CreateBatch`, `ChangeBatchQuantity`): the drain task runs
/// it, and it answers its caller itself.
pub(crate) type RunAlone = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One waiting command.
enum Queued {
    Allocate(
        QueuedAllocation,
        oneshot::Sender<Result<String, ServiceError>>,
    ),
    Alone(RunAlone),
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
    pub(crate) async fn allocate<R: ProductRepository>(
        &self,
        bus: &MessageBus<R>,
        allocation: QueuedAllocation,
    ) -> Result<String, ServiceError> {
        let sku = allocation.sku().to_string();
        let (answer, answered) = oneshot::channel();
        self.push(bus, sku, Queued::Allocate(allocation, answer));
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Queues a command that runs alone (`run` answers through the channel it captured) and waits.
    pub(crate) async fn run_alone<R: ProductRepository, T>(
        &self,
        bus: &MessageBus<R>,
        sku: String,
        run: RunAlone,
        answered: oneshot::Receiver<Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        self.push(bus, sku, Queued::Alone(run));
        answered.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Adds the command to its SKU's queue and starts the SKU's drain task if none runs.
    fn push<R: ProductRepository>(&self, bus: &MessageBus<R>, sku: String, queued: Queued) {
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

    /// The SKU's next turn: a run of consecutive allocations (at most `max`), or one other
    /// command. When nothing waits, removes the SKU's entry (the drain task then ends).
    fn next(&self, sku: &str, max: usize) -> Option<Turn> {
        let mut waiting = self.lock();
        let queue = waiting.get_mut(sku)?;
        match queue.pop_front() {
            None => {
                waiting.remove(sku);
                None
            }
            Some(Queued::Alone(run)) => Some(Turn::Alone(run)),
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
                Some(Turn::Allocations(group))
            }
        }
    }

    fn abandon(&self, sku: &str) {
        // Dropping the waiting commands' answer channels tells their callers the queue stopped.
        self.lock().remove(sku);
    }
}

/// What the drain task does next: a group of allocations, or one command alone.
enum Turn {
    Allocations(
        Vec<(
            QueuedAllocation,
            oneshot::Sender<Result<String, ServiceError>>,
        )>,
    ),
    Alone(RunAlone),
}

/// Removes the SKU's entry if the drain task ends early (a panic), so later commands start anew.
struct DrainGuard<R: ProductRepository> {
    bus: WeakBus<R>,
    sku: String,
    finished: bool,
}

impl<R: ProductRepository> Drop for DrainGuard<R> {
    fn drop(&mut self) {
        if let (false, Some(bus)) = (self.finished, self.bus.upgrade()) {
            bus.queues().abandon(&self.sku);
        }
    }
}

/// Applies the SKU's waiting commands, in order, until none wait.
///
/// The task holds the bus only while it takes and applies a turn, never while it answers: a caller
/// that has its answer and drops its bus knows the bus (and its store) is gone, so a store can be
/// reopened at once. Every waiting caller holds the bus, so the bus outlives any work queued.
async fn drain<R: ProductRepository>(bus: WeakBus<R>, sku: String) {
    let mut guard = DrainGuard {
        bus: bus.clone(),
        sku: sku.clone(),
        finished: false,
    };
    loop {
        let Some(strong) = bus.upgrade() else { break };
        let Some(turn) = strong.queues().next(&sku, strong.max_group()) else {
            break;
        };
        match turn {
            Turn::Alone(run) => {
                drop(strong);
                run().await;
            }
            Turn::Allocations(group) => {
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
