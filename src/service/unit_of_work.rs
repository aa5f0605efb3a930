//! The unit of work: tracks the products a handler loads and commits them atomically, or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;

use super::{EventWiring, ProductRepository, ProductWrite, StoreError};
use crate::domain::{Event, EventEnvelope, Product};

/// A product the unit of work loaded or added, with what committing it needs.
struct Tracked {
    product: Product,
    /// The stored version when loaded (`None`: not in the store yet).
    expected_version: Option<u64>,
    /// Events taken from the product, each with the correlation id current when it was recorded.
    events: Vec<(Event, Option<Arc<str>>)>,
}

impl Tracked {
    fn tag_events(&mut self, correlation_id: &Option<Arc<str>>) {
        for event in self.product.take_events() {
            self.events.push((event, correlation_id.clone()));
        }
    }
}

/// What handlers talk to: the products they load, tracked until `commit` writes every changed one
/// atomically (with a version check) with its outbox events. Work is rolled back (simply not
/// written) unless `commit` is called. One per message and per retry (`MessageBus`).
pub struct UnitOfWork<R: ProductRepository> {
    products: Arc<R>,
    wiring: EventWiring,
    correlation_id: Option<Arc<str>>,
    tracked: HashMap<String, Tracked>,
    committed_events: Vec<EventEnvelope>,
}

impl<R: ProductRepository> UnitOfWork<R> {
    /// A unit of work over these products; its events carry `correlation_id`, and those the wiring
    /// sends out are written to the outbox.
    pub fn new(products: Arc<R>, wiring: EventWiring, correlation_id: Option<&str>) -> Self {
        Self {
            products,
            wiring,
            correlation_id: correlation_id.map(Arc::from),
            tracked: HashMap::new(),
            committed_events: Vec::new(),
        }
    }

    /// The product of this SKU with the lines of these orders (each: its line, or known to have
    /// none). Loaded once per unit of work and tracked; lines it does not know yet are loaded.
    pub async fn get(
        &mut self,
        sku: &str,
        orderids: &[&str],
    ) -> Result<Option<&mut Product>, StoreError> {
        match self.tracked.get_mut(sku) {
            Some(tracked) => {
                let missing: Vec<&str> = orderids
                    .iter()
                    .copied()
                    .filter(|orderid| !tracked.product.knows_line(orderid))
                    .collect();
                if !missing.is_empty() {
                    self.products
                        .load_lines(&mut tracked.product, &missing)
                        .await?;
                }
            }
            None => {
                let Some(product) = self.products.load(sku, orderids).await? else {
                    return Ok(None);
                };
                let expected_version = Some(product.version_number());
                self.tracked.insert(
                    sku.to_owned(),
                    Tracked {
                        product,
                        expected_version,
                        events: Vec::new(),
                    },
                );
            }
        }
        Ok(self
            .tracked
            .get_mut(sku)
            .map(|tracked| &mut tracked.product))
    }

    /// The SKU of the batch with this reference (a tracked product's, or the store's answer).
    pub async fn sku_of_batch(&mut self, reference: &str) -> Result<Option<String>, StoreError> {
        let tracked = self
            .tracked
            .values()
            .find(|tracked| tracked.product.batch(reference).is_some())
            .map(|tracked| tracked.product.sku().to_owned());
        match tracked {
            Some(sku) => Ok(Some(sku)),
            None => self.products.sku_of_batch(reference).await,
        }
    }

    /// The product holding the batch with this reference (without lines).
    pub async fn get_by_batchref(
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

    /// Loads into the tracked product of `sku` the lines batch `reference` gives up first, enough to
    /// free `excess` units, at most `max_lines` (see `ProductRepository::load_lines_to_free`).
    pub async fn load_lines_to_free(
        &mut self,
        sku: &str,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let Some(tracked) = self.tracked.get_mut(sku) else {
            return Ok(());
        };
        self.products
            .load_lines_to_free(&mut tracked.product, reference, excess, max_lines)
            .await
    }

    /// Loads into the tracked product of `sku` its oldest waiting lines that the stock available now
    /// may take, at most `max_lines` (see `ProductRepository::load_waiting_lines`).
    pub async fn load_waiting_lines(
        &mut self,
        sku: &str,
        max_lines: usize,
    ) -> Result<(), StoreError> {
        let Some(tracked) = self.tracked.get_mut(sku) else {
            return Ok(());
        };
        self.products
            .load_waiting_lines(&mut tracked.product, max_lines)
            .await
    }

    /// Tracks a product that is new to the store.
    pub fn add(&mut self, product: Product) -> &mut Product {
        let sku = product.sku().to_owned();
        let tracked = self.tracked.entry(sku).or_insert(Tracked {
            product,
            expected_version: None,
            events: Vec::new(),
        });
        &mut tracked.product
    }

    /// The correlation id of the events recorded from now on (a unit of work may serve several
    /// messages, each with its own).
    pub fn set_correlation_id(&mut self, correlation_id: Option<&str>) {
        for tracked in self.tracked.values_mut() {
            tracked.tag_events(&self.correlation_id);
        }
        self.correlation_id = correlation_id.map(Arc::from);
    }

    /// Atomically writes every changed product (with a version check) and its outbox events. The
    /// unit of work stays usable: later changes are committed by a later call.
    pub async fn commit(&mut self) -> Result<(), StoreError> {
        let mut pending: Vec<(&mut Tracked, Vec<EventEnvelope>)> = Vec::new();
        let occurred_at = Utc::now();
        for tracked in self.tracked.values_mut() {
            tracked.tag_events(&self.correlation_id);
            let version = tracked.product.version_number();
            // The domain records events only with a change, so a product without a new version has
            // none (an event recorded without one could not have a unique id).
            if tracked.expected_version == Some(version) {
                debug_assert!(tracked.events.is_empty(), "events without a new version");
                continue;
            }
            let sku = tracked.product.sku().to_owned();
            let envelopes = std::mem::take(&mut tracked.events)
                .into_iter()
                .enumerate()
                .map(|(index, (event, correlation_id))| EventEnvelope {
                    id: EventEnvelope::event_id(&sku, version, index),
                    correlation_id: correlation_id.map(|id| id.to_string()),
                    occurred_at: Some(occurred_at),
                    event,
                })
                .collect();
            pending.push((tracked, envelopes));
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
            .map(|((tracked, _), outbox)| ProductWrite {
                product: &tracked.product,
                expected_version: tracked.expected_version,
                changes: tracked.product.changes(),
                outbox,
            })
            .collect();
        self.products.commit(&writes).await?;
        for (tracked, envelopes) in pending {
            tracked.expected_version = Some(tracked.product.version_number());
            tracked.product.clear_changes();
            self.committed_events.extend(envelopes);
        }
        Ok(())
    }

    /// Events committed so far that are not yet collected, in order.
    pub fn collect_new_events(&mut self) -> Vec<EventEnvelope> {
        std::mem::take(&mut self.committed_events)
    }

    /// The most order lines one commit may move (see `ProductRepository::max_lines_per_commit`).
    pub fn max_lines_per_commit(&self) -> Option<usize> {
        self.products.max_lines_per_commit()
    }
}
