//! The DynamoDB store: single table, conditional TransactWriteItems on the product version.
//!
//! Layout and behaviour: `docs/storage.md`. `keys` names the keys, `items` maps records to items,
//! `commit` turns a commit into transaction actions, `outbox` records which outbox items were
//! published, `notified` which notifications were sent, `errors` maps SDK errors, `store` implements the store ports (`service::Store`). (The tests create
//! the table as the template declares it: `tests/support/dynamodb_table.rs`.)

pub mod commit;
pub mod errors;
pub mod items;
pub mod keys;
pub mod notified;
pub mod outbox;
pub mod store;

pub use commit::{MAX_LINES_PER_COMMIT, MAX_TRANSACTION_ACTIONS};
pub use notified::{Claim, NotificationLog};
pub use outbox::DynamoDbOutbox;
pub use store::DynamoDbStore;
