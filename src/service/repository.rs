//! The repository port (book ch. 2): loads a product with the lines a command needs, and commits
//! changed products atomically on their version numbers. The unit of work is its one user.

use std::future::Future;

use super::StoreError;
use crate::domain::{Changes, EventEnvelope, Product};

/// One product's part of a commit.
#[derive(Debug)]
pub struct ProductWrite<'a> {
    /// The product's current state (its `version_number` is the new version).
    pub product: &'a Product,
    /// The version it was loaded at, or `None` for a product that is new to the store.
    pub expected_version: Option<u64>,
    /// What changed since it was loaded.
    pub changes: &'a Changes,
    /// Events that leave the process through the outbox, in order.
    pub outbox: &'a [EventEnvelope],
}

/// Products, loaded in part and committed whole. Every adapter passes the contract suite in
/// `tests/support/contract.rs`.
///
/// A product is never read whole: a load reads its head (the product and batch records, with each
/// batch's allocated total) and only the order lines the command names, so its cost does not grow
/// with the SKU's history. All reads are strongly consistent.
pub trait ProductRepository: Send + Sync + 'static {
    /// The product of this SKU with the lines of these orders (each: its line, or known to have
    /// none), or `None`.
    fn load(
        &self,
        sku: &str,
        orderids: &[&str],
    ) -> impl Future<Output = Result<Option<Product>, StoreError>> + Send;

    /// Adds to a loaded product the lines of these orders (each: its line, or known to have none).
    fn load_lines(
        &self,
        product: &mut Product,
        orderids: &[&str],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds to a loaded product the lines batch `reference` gives up first (greatest order id first),
    /// enough to free `excess` units, at most `max_lines`: reading about as many lines as it returns.
    fn load_lines_to_free(
        &self,
        product: &mut Product,
        reference: &str,
        excess: u64,
        max_lines: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds to a loaded product its oldest waiting lines (back-orders), oldest first: those the
    /// stock available now may take, and the first one it cannot, at most `max_lines`
    /// (`records::WaitingLines`), reading about as many lines as it returns.
    fn load_waiting_lines(
        &self,
        product: &mut Product,
        max_lines: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The SKU of the batch with this reference, or `None`.
    fn sku_of_batch(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Writes all products atomically, each only if its stored version is still `expected_version`
    /// (else `VersionConflict`), together with their outbox events. All or nothing.
    fn commit(
        &self,
        writes: &[ProductWrite<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The most order lines one commit may move, if the store limits the size of a commit.
    fn max_lines_per_commit(&self) -> Option<usize> {
        None
    }
}
