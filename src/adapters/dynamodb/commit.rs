//! A commit as DynamoDB transaction actions: the `RecordWrite`s of every product turned into conditional
//! puts and deletes, each with what its failure means.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use super::items::{self, Item};
use super::keys::PK;
use crate::adapters::records::{record_writes, RecordWrite};
use crate::service::{ProductWrite, StoreError};

/// The most actions one `TransactWriteItems` may hold (a DynamoDB limit).
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// The most order lines one commit may move so a quantity change stays within one transaction: every
/// deallocated line costs an allocation delete and an outbox put, and the commit also writes the product
/// item and the changed batch item: (100 - 2) / 2 = 49.
pub const MAX_LINES_PER_COMMIT: usize = (MAX_TRANSACTION_ACTIONS - 2) / 2;
const _: () = assert!(2 + 2 * MAX_LINES_PER_COMMIT <= MAX_TRANSACTION_ACTIONS);

/// The condition of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The stored item's `version_number` is this one (optimistic concurrency on the product).
    VersionIs(u64),
    /// No item with this key exists yet (a new product; a new batch reference).
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Put {
        item: Item,
        condition: Option<Condition>,
    },
    Delete {
        key: Item,
    },
}

/// Which item an action writes, so that a cancellation reason can be mapped back to its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The product item of this SKU (the version check).
    Product { sku: String },
    /// The batch-reference item (global uniqueness of the reference).
    BatchRef { reference: String, sku: String },
    /// Any other item of this SKU's commit (batch, allocation, outbox).
    Other { sku: String },
}

impl Target {
    pub fn sku(&self) -> &str {
        match self {
            Target::Product { sku } | Target::BatchRef { sku, .. } | Target::Other { sku } => sku,
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
                let mut put = Put::builder()
                    .table_name(table)
                    .set_item(Some(item.clone()));
                match condition {
                    Some(Condition::VersionIs(expected)) => {
                        put = put
                            .condition_expression("#version = :expected")
                            .expression_attribute_names("#version", "version_number")
                            .expression_attribute_values(
                                ":expected",
                                AttributeValue::N(expected.to_string()),
                            );
                    }
                    Some(Condition::NotExists) => {
                        put = put
                            .condition_expression("attribute_not_exists(#pk)")
                            .expression_attribute_names("#pk", PK);
                    }
                    None => {}
                }
                TransactWriteItem::builder()
                    .put(put.build().map_err(invalid)?)
                    .build()
            }
            Operation::Delete { key } => {
                let delete = Delete::builder()
                    .table_name(table)
                    .set_key(Some(key.clone()));
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(invalid)?)
                    .build()
            }
        })
    }
}

/// The actions of a commit of these products, in order; `now` (epoch seconds) dates outbox TTLs.
pub fn actions(writes: &[ProductWrite<'_>], now: i64) -> Result<Vec<Action>, StoreError> {
    let mut actions = Vec::new();
    for write in writes {
        for record in record_writes(write) {
            push_actions(&mut actions, record, now)?;
        }
    }
    Ok(actions)
}

fn push_actions(
    actions: &mut Vec<Action>,
    record: RecordWrite,
    now: i64,
) -> Result<(), StoreError> {
    let put = |item, condition| Operation::Put { item, condition };
    match record {
        RecordWrite::Product {
            record,
            expected_version,
        } => actions.push(Action {
            operation: put(
                items::product_item(&record),
                Some(expected_version.map_or(Condition::NotExists, Condition::VersionIs)),
            ),
            target: Target::Product { sku: record.sku },
        }),
        RecordWrite::NewBatch(batch) => {
            actions.push(Action {
                operation: put(items::batch_item(&batch), None),
                target: Target::Other {
                    sku: batch.sku.clone(),
                },
            });
            actions.push(Action {
                operation: put(items::batchref_item(&batch), Some(Condition::NotExists)),
                target: Target::BatchRef {
                    reference: batch.reference,
                    sku: batch.sku,
                },
            });
        }
        RecordWrite::UpdateBatch(batch) => actions.push(Action {
            operation: put(items::batch_item(&batch), None),
            target: Target::Other { sku: batch.sku },
        }),
        RecordWrite::PutAllocation(line) => actions.push(Action {
            operation: put(items::allocation_item(&line), None),
            target: Target::Other { sku: line.sku },
        }),
        RecordWrite::DeleteAllocation { sku, orderid } => actions.push(Action {
            operation: Operation::Delete {
                key: items::allocation_key(&sku, &orderid),
            },
            target: Target::Other { sku },
        }),
        RecordWrite::Outbox(record) => actions.push(Action {
            operation: put(items::outbox_item(&record, now)?, None),
            target: Target::Other { sku: record.sku },
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

    #[test]
    fn a_new_product_checks_absence_and_its_batch_reference() {
        let mut product = Product::new("LAMP").unwrap();
        product
            .add_batch(Batch::new("b1", "LAMP", 10, None).unwrap())
            .unwrap();
        product
            .allocate(&OrderLine::new("o1", "LAMP", 2).unwrap())
            .unwrap();
        let write = ProductWrite {
            product: &product,
            expected_version: None,
            changes: product.changes(),
            outbox: &[],
        };
        let actions = actions(&[write], 0).unwrap();
        let summary: Vec<_> = actions
            .iter()
            .map(|a| match &a.operation {
                Operation::Put { condition, .. } => (a.target.clone(), condition.clone()),
                Operation::Delete { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    Target::Product { sku: "LAMP".into() },
                    Some(Condition::NotExists)
                ),
                (Target::Other { sku: "LAMP".into() }, None),
                (
                    Target::BatchRef {
                        reference: "b1".into(),
                        sku: "LAMP".into()
                    },
                    Some(Condition::NotExists)
                ),
                (Target::Other { sku: "LAMP".into() }, None),
            ]
        );
        for action in &actions {
            action.to_transact_item("t").unwrap();
        }
    }
}
