//! A commit as DynamoDB transaction actions: the `RecordWrite`s of every product turned into conditional
//! puts and deletes, each with what its failure means.
//!
//! The product item (with its batches) is put on condition of its version; every line item is put or
//! deleted on condition that it is still as the product was loaded with it. A load reads the product
//! item and the lines in separate requests, which DynamoDB does not isolate from each other, so the
//! lines' conditions are what makes a commit decided on a line older than its product fail instead
//! of applying (`docs/storage.md`).

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use super::items::{self, Item};
use super::keys::PK;
use crate::adapters::records::{batch_record, record_writes, AllocationRecord, RecordWrite};
use crate::service::{ProductWrite, StoreError};

/// The most actions one `TransactWriteItems` may hold (a DynamoDB limit).
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// The most order lines one commit may move so a quantity change stays within one transaction: every
/// deallocated line costs a line put and an outbox put, and the commit also puts the product item
/// (its batches inside): (100 - 1) / 2 = 49.
pub const MAX_LINES_PER_COMMIT: usize = (MAX_TRANSACTION_ACTIONS - 1) / 2;
// The product item and two actions per line fit in one transaction.
const _: () = assert!(2 * MAX_LINES_PER_COMMIT < MAX_TRANSACTION_ACTIONS);

/// The condition of a put or a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The stored item's `version_number` is this one (optimistic concurrency on the product).
    VersionIs(u64),
    /// No item with this key exists yet (a new product, a new batch reference, a line loaded as
    /// absent).
    NotExists,
    /// The stored line is this one: allocated to the same batch, or waiting since the same version,
    /// with the same quantity.
    LineIs(AllocationRecord),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Put {
        item: Item,
        condition: Option<Condition>,
    },
    Delete {
        key: Item,
        condition: Option<Condition>,
    },
}

/// Which item an action writes, so that a cancellation reason can be mapped back to its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The product item of this SKU (the version check).
    Product { sku: String },
    /// The batch-reference item (global uniqueness of the reference).
    BatchRef { reference: String, sku: String },
    /// An order's line of this SKU (checked against the line as loaded).
    Line { sku: String },
    /// An outbox item of this SKU's commit (never conditioned).
    Outbox { sku: String },
}

impl Target {
    pub fn sku(&self) -> &str {
        match self {
            Target::Product { sku }
            | Target::BatchRef { sku, .. }
            | Target::Line { sku }
            | Target::Outbox { sku } => sku,
        }
    }
}

/// One action of the transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub target: Target,
    pub operation: Operation,
}

impl Action {
    /// The item this action puts, if it is a put.
    pub fn put_item(&self) -> Option<&Item> {
        match &self.operation {
            Operation::Put { item, .. } => Some(item),
            Operation::Delete { .. } => None,
        }
    }

    /// The SDK form of this action on `table`.
    pub fn to_transact_item(&self, table: &str) -> Result<TransactWriteItem, StoreError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| {
            StoreError::Unavailable(format!("cannot build a transaction action: {e}"))
        };
        Ok(match &self.operation {
            Operation::Put { item, condition } => {
                let expression = condition.as_ref().map(Expression::of);
                let put = Put::builder()
                    .table_name(table)
                    .set_item(Some(item.clone()))
                    .set_condition_expression(expression.as_ref().map(|e| e.text.clone()))
                    .set_expression_attribute_names(expression.as_ref().map(|e| e.names.clone()))
                    .set_expression_attribute_values(
                        expression.and_then(|e| (!e.values.is_empty()).then_some(e.values)),
                    );
                TransactWriteItem::builder()
                    .put(put.build().map_err(invalid)?)
                    .build()
            }
            Operation::Delete { key, condition } => {
                let expression = condition.as_ref().map(Expression::of);
                let delete = Delete::builder()
                    .table_name(table)
                    .set_key(Some(key.clone()))
                    .set_condition_expression(expression.as_ref().map(|e| e.text.clone()))
                    .set_expression_attribute_names(expression.as_ref().map(|e| e.names.clone()))
                    .set_expression_attribute_values(
                        expression.and_then(|e| (!e.values.is_empty()).then_some(e.values)),
                    );
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(invalid)?)
                    .build()
            }
        })
    }
}

/// A condition as DynamoDB takes it.
struct Expression {
    text: String,
    names: std::collections::HashMap<String, String>,
    values: Item,
}

impl Expression {
    fn of(condition: &Condition) -> Self {
        let name = |n: &str| (format!("#{n}"), n.to_owned());
        let number = |v: u64| AttributeValue::N(v.to_string());
        match condition {
            Condition::VersionIs(expected) => Expression {
                text: "#version_number = :expected".to_owned(),
                names: [name("version_number")].into(),
                values: [(":expected".to_owned(), number(*expected))].into(),
            },
            Condition::NotExists => Expression {
                text: "attribute_not_exists(#pk)".to_owned(),
                names: [name(PK)].into(),
                values: Item::new(),
            },
            Condition::LineIs(line) => {
                let qty = (":qty".to_owned(), number(u64::from(line.qty)));
                match (&line.batchref, line.waiting_since) {
                    (Some(batchref), _) => Expression {
                        text: "#qty = :qty AND #batchref = :batchref".to_owned(),
                        names: [name("qty"), name("batchref")].into(),
                        values: [qty, (":batchref".to_owned(), AttributeValue::S(batchref.clone()))]
                            .into(),
                    },
                    (None, since) => Expression {
                        text: "#qty = :qty AND #waiting_since = :since AND attribute_not_exists(#batchref)"
                            .to_owned(),
                        names: [name("qty"), name("waiting_since"), name("batchref")].into(),
                        values: [qty, (":since".to_owned(), number(since.unwrap_or_default()))]
                            .into(),
                    },
                }
            }
        }
    }
}

/// The actions of a commit of these products, in order; `now` (epoch seconds) dates outbox TTLs.
pub fn actions(writes: &[ProductWrite<'_>], now: i64) -> Result<Vec<Action>, StoreError> {
    let mut actions = Vec::new();
    for write in writes {
        for record in record_writes(write) {
            push_actions(&mut actions, write, record, now)?;
        }
    }
    Ok(actions)
}

fn push_actions(
    actions: &mut Vec<Action>,
    write: &ProductWrite<'_>,
    record: RecordWrite,
    now: i64,
) -> Result<(), StoreError> {
    let put = |item, condition| Operation::Put { item, condition };
    let line_condition = |expected: Option<AllocationRecord>| {
        Some(expected.map_or(Condition::NotExists, Condition::LineIs))
    };
    match record {
        RecordWrite::Product {
            record,
            expected_version,
        } => {
            // The batches live in the product item: every commit writes them all, as they are now.
            let batches: Vec<_> = write.product.batches().iter().map(batch_record).collect();
            actions.push(Action {
                operation: put(
                    items::product_item(&record, &batches),
                    Some(expected_version.map_or(Condition::NotExists, Condition::VersionIs)),
                ),
                target: Target::Product { sku: record.sku },
            });
        }
        RecordWrite::NewBatch(batch) => actions.push(Action {
            operation: put(items::batchref_item(&batch), Some(Condition::NotExists)),
            target: Target::BatchRef {
                reference: batch.reference,
                sku: batch.sku,
            },
        }),
        // In the product item.
        RecordWrite::UpdateBatch(_) => {}
        RecordWrite::PutAllocation { line, expected } => actions.push(Action {
            operation: put(items::line_item(&line), line_condition(expected)),
            target: Target::Line { sku: line.sku },
        }),
        RecordWrite::DeleteAllocation {
            sku,
            orderid,
            expected,
        } => actions.push(Action {
            operation: Operation::Delete {
                key: items::line_key(&orderid, &sku),
                condition: line_condition(expected),
            },
            target: Target::Line { sku },
        }),
        RecordWrite::Outbox(record) => actions.push(Action {
            operation: put(items::outbox_item(&record, now)?, None),
            target: Target::Outbox { sku: record.sku },
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Batch, OrderLine, Product};

    #[test]
    fn the_line_bound_keeps_a_quantity_change_within_one_transaction() {
        assert_eq!(MAX_LINES_PER_COMMIT, 49);
    }

    fn conditions(actions: &[Action]) -> Vec<(Target, Option<Condition>)> {
        actions
            .iter()
            .map(|a| match &a.operation {
                Operation::Put { condition, .. } | Operation::Delete { condition, .. } => {
                    (a.target.clone(), condition.clone())
                }
            })
            .collect()
    }

    #[test]
    fn a_new_product_checks_absence_its_batch_reference_and_its_line() {
        let mut product = Product::parse("LAMP").unwrap();
        product
            .add_batch(Batch::parse("b1", "LAMP", 10, None).unwrap())
            .unwrap();
        product
            .allocate(&OrderLine::parse("o1", "LAMP", 2).unwrap())
            .unwrap();
        let write = ProductWrite {
            product: &product,
            expected_version: None,
            changes: product.changes(),
            outbox: &[],
        };
        let actions = actions(&[write], 0).unwrap();
        let lamp = || "LAMP".to_owned();
        assert_eq!(
            conditions(&actions),
            vec![
                (Target::Product { sku: lamp() }, Some(Condition::NotExists)),
                (
                    Target::BatchRef {
                        reference: "b1".into(),
                        sku: lamp()
                    },
                    Some(Condition::NotExists)
                ),
                (Target::Line { sku: lamp() }, Some(Condition::NotExists)),
            ]
        );
        for action in &actions {
            action.to_transact_item("table").unwrap();
        }
    }

    #[test]
    fn each_line_is_written_on_condition_that_it_is_as_loaded() {
        let batch = Batch::restore("b1", "LAMP", 10, None, 5).unwrap();
        let mut product = Product::restore("LAMP", 4, vec![batch], None).unwrap();
        let held = |orderid: &str, qty| AllocationRecord {
            orderid: orderid.into(),
            sku: "LAMP".into(),
            qty,
            batchref: Some("b1".into()),
            waiting_since: None,
        };
        product
            .restore_line(&OrderLine::parse("o2", "LAMP", 2).unwrap(), "b1")
            .unwrap();
        product
            .restore_line(&OrderLine::parse("o3", "LAMP", 3).unwrap(), "b1")
            .unwrap();
        product.change_batch_quantity("b1", 2).unwrap();
        let write = ProductWrite {
            product: &product,
            expected_version: Some(4),
            changes: product.changes(),
            outbox: &[],
        };
        let lines: Vec<_> = conditions(&actions(&[write], 0).unwrap())
            .into_iter()
            .filter(|(target, _)| matches!(target, Target::Line { .. }))
            .map(|(_, condition)| condition)
            .collect();
        // o3 goes first (greatest order id), which frees enough: it waits, expected as it was held.
        assert_eq!(lines, vec![Some(Condition::LineIs(held("o3", 3)))]);
    }
}
