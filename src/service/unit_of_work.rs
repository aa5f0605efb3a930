//! The unit of work: tracks the products a handler loads and commits them atomically, or not at all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::Utc;

use super::{EventWiring, ProductWrite, Store, StoreError};
use crate::domain::{Event, EventEnvelope, Product};

/// What handlers talk to. Work is rolled back (simply not written) unless `commit` is called.
pub trait UnitOfWork: Send {
    /// The product of this SKU with the lines of these orders (each: its line, or known to have
    /// none). Loaded once per unit of work and tracked; lines it does not know yet are loaded.
    fn get(
        &mut self,
        sku: &str,
        orderids: &[&str],
    ) -> impl Future<Output = Result<Option<&mut Product>, StoreError>> + Send;

    /// The SKU of the batch with this reference (a tracked product's, or the store's answer).
    fn sku_of_batch(
        &mut self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The product holding the batch with this reference (without lines).
    fn get_by_batchref(
        &mut self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<&mut Product>, StoreError>> + Send;

    /// Loads into the tracked product of `sku` the lines batch `reference` gives up first, enough to
    /// free `excess` units, at most `max_lines` (see `Store::load_lines_to_free`).
    fn load_lines_to_free(
        &mut self,
        sku: &str,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Loads into the tracked product of `sku` its oldest waiting lines that the stock available now
    /// may take, at most `max_lines` (see `Store::load_waiting_lines`).
    fn load_waiting_lines(
        &mut self,
        sku: &str,
        max_lines: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Tracks a product that is new to the store.
    fn add(&mut self, product: Product) -> &mut Product;

    /// The correlation id of the events recorded from now on (a unit of work may serve several
    /// messages, each with its own).
    fn set_correlation_id(&mut self, correlation_id: Option<&str>);

    /// Atomically writes every changed product (with a version check) and its outbox events. The
    /// unit of work stays usable: later changes are committed by a later call.
    fn commit(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Events committed so far that are not yet collected, in order.
    fn collect_new_events(&mut self) -> Vec<EventEnvelope>;

    /// The most order lines one commit may move (see `Store::max_lines_per_commit`).
    fn max_lines_per_commit(&self) -> Option<usize>;
}

/// Starts units of work; the message bus takes a fresh one per message and per retry.
pub trait UnitOfWorkFactory: Send + Sync + 'static {
    type Uow: UnitOfWork;

    /// A new unit of work; its events carry `correlation_id`.
    fn begin(&self, correlation_id: Option<&str>) -> Self::Uow;

    /// The most order lines one commit may move (see `Store::max_lines_per_commit`).
    fn max_lines_per_commit(&self) -> Option<usize>;

    /// Where each event type is handled: the units of work write the outbound ones to the outbox,
    /// and the bus handles the others in process (one wiring for both, so they cannot disagree).
    fn wiring(&self) -> EventWiring;
}

struct Seen {
    product: Product,
    /// The stored version when loaded (`None`: not in the store yet).
    expected_version: Option<u64>,
    /// Events taken from the product, each with the correlation id current when it was recorded.
    events: Vec<(Event, Option<Arc<str>>)>,
}

impl Seen {
    fn tag_events(&mut self, correlation_id: &Option<Arc<str>>) {
        for event in self.product.take_events() {
            self.events.push((event, correlation_id.clone()));
        }
    }
}

/// The unit of work over any [`Store`]: the one implementation every adapter shares.
pub struct StoreUnitOfWork<S: Store> {
    store: Arc<S>,
    wiring: EventWiring,
    correlation_id: Option<Arc<str>>,
    seen: HashMap<String, Seen>,
    committed_events: Vec<EventEnvelope>,
}

impl<S: Store> StoreUnitOfWork<S> {
    pub fn new(store: Arc<S>, wiring: EventWiring, correlation_id: Option<&str>) -> Self {
        Self {
            store,
            wiring,
            correlation_id: correlation_id.map(Arc::from),
            seen: HashMap::new(),
            committed_events: Vec::new(),
        }
    }
}

impl<S: Store> UnitOfWork for StoreUnitOfWork<S> {
    async fn get(
        &mut self,
        sku: &str,
        orderids: &[&str],
    ) -> Result<Option<&mut Product>, StoreError> {
        match self.seen.get_mut(sku) {
            Some(seen) => {
                let missing: Vec<&str> = orderids
                    .iter()
                    .copied()
                    .filter(|orderid| !seen.product.knows_line(orderid))
                    .collect();
                if !missing.is_empty() {
                    self.store.load_lines(&mut seen.product, &missing).await?;
                }
            }
            None => {
                let Some(product) = self.store.load(sku, orderids).await? else {
                    return Ok(None);
                };
                let expected_version = Some(product.version_number());
                self.seen.insert(
                    sku.to_owned(),
                    Seen {
                        product,
                        expected_version,
                        events: Vec::new(),
                    },
                );
            }
        }
        Ok(self.seen.get_mut(sku).map(|seen| &mut seen.product))
    }

    async fn sku_of_batch(&mut self, reference: &str) -> Result<Option<String>, StoreError> {
        let tracked = self
            .seen
            .values()
            .find(|seen| seen.product.batch(reference).is_some())
            .map(|seen| seen.product.sku().to_owned());
        match tracked {
            Some(sku) => Ok(Some(sku)),
            None => self.store.sku_of_batch(reference).await,
        }
    }

    async fn get_by_batchref(
        &mut self,
        reference: &str,
    ) -> Result<Option<&mut Product>, StoreError> {
        let Some(sku) = self.sku_of_batch(reference).await? else {
            return Ok(None);
        };
        Ok(self
            .get(&sku, &[])
            .await?
            .filter(|product| product.batch(reference).is_some()))
    }

    async fn load_lines_to_free(
        &mut self,
        sku: &str,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let Some(seen) = self.seen.get_mut(sku) else {
            return Ok(());
        };
        self.store
            .load_lines_to_free(&mut seen.product, reference, excess, max_lines)
            .await
    }

    async fn load_waiting_lines(&mut self, sku: &str, max_lines: usize) -> Result<(), StoreError> {
        let Some(seen) = self.seen.get_mut(sku) else {
            return Ok(());
        };
        self.store
            .load_waiting_lines(&mut seen.product, max_lines)
            .await
    }

    fn add(&mut self, product: Product) -> &mut Product {
        let sku = product.sku().to_owned();
        let seen = self.seen.entry(sku).or_insert(Seen {
            product,
            expected_version: None,
            events: Vec::new(),
        });
        &mut seen.product
    }

    fn set_correlation_id(&mut self, correlation_id: Option<&str>) {
        for seen in self.seen.values_mut() {
            seen.tag_events(&self.correlation_id);
        }
        self.correlation_id = correlation_id.map(Arc::from);
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        let mut pending: Vec<(&mut Seen, Vec<EventEnvelope>)> = Vec::new();
        let occurred_at = Utc::now();
        for seen in self.seen.values_mut() {
            seen.tag_events(&self.correlation_id);
            let version = seen.product.version_number();
            // The domain records events only with a change, so a product without a new version has
            // none (an event recorded without one could not have a unique id).
            if seen.expected_version == Some(version) {
                debug_assert!(seen.events.is_empty(), "events without a new version");
                continue;
            }
            let sku = seen.product.sku().to_owned();
            let envelopes = std::mem::take(&mut seen.events)
                .into_iter()
                .enumerate()
                .map(|(index, (event, correlation_id))| EventEnvelope {
                    id: EventEnvelope::event_id(&sku, version, index),
                    correlation_id: correlation_id.map(|id| id.to_string()),
                    occurred_at: Some(occurred_at),
                    event,
                })
                .collect();
            pending.push((seen, envelopes));
        }
        if pending.is_empty() {
            return Ok(());
        }
        let outboxes: Vec<Vec<EventEnvelope>> = pending
            .iter()
            .map(|(_, envelopes)| {
                envelopes
                    .iter()
                    .filter(|e| self.wiring.is_outbound(&e.event))
                    .cloned()
                    .collect()
            })
            .collect();
        let writes: Vec<ProductWrite<'_>> = pending
            .iter()
            .zip(&outboxes)
            .map(|((seen, _), outbox)| ProductWrite {
                product: &seen.product,
                expected_version: seen.expected_version,
                changes: seen.product.changes(),
                outbox,
            })
            .collect();
        self.store.commit(&writes).await?;
        for (seen, envelopes) in pending {
            seen.expected_version = Some(seen.product.version_number());
            seen.product.clear_changes();
            self.committed_events.extend(envelopes);
        }
        Ok(())
    }

    fn collect_new_events(&mut self) -> Vec<EventEnvelope> {
        std::mem::take(&mut self.committed_events)
    }

    fn max_lines_per_commit(&self) -> Option<usize> {
        self.store.max_lines_per_commit()
    }
}

/// Builds [`StoreUnitOfWork`]s over one shared store.
pub struct StoreUnitOfWorkFactory<S: Store> {
    store: Arc<S>,
    wiring: EventWiring,
}

impl<S: Store> StoreUnitOfWorkFactory<S> {
    pub fn new(store: Arc<S>, wiring: EventWiring) -> Self {
        Self { store, wiring }
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }
}

impl<S: Store> UnitOfWorkFactory for StoreUnitOfWorkFactory<S> {
    type Uow = StoreUnitOfWork<S>;

    fn begin(&self, correlation_id: Option<&str>) -> Self::Uow {
        StoreUnitOfWork::new(Arc::clone(&self.store), self.wiring, correlation_id)
    }

    fn max_lines_per_commit(&self) -> Option<usize> {
        self.store.max_lines_per_commit()
    }

    fn wiring(&self) -> EventWiring {
        self.wiring
    }
}
