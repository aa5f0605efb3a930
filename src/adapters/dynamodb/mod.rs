//! The DynamoDB store: single table, conditional TransactWriteItems on the product version.
//!
//! Layout and behaviour: `docs/storage.md`. `keys` names the keys, `items` maps records to items,
//! `commit` turns a commit into transaction actions, `outbox` records which outbox items were
//! published, `notified` which notifications were sent, `errors` maps SDK errors, `table` creates the table, `store` implements the `Store` port.

pub mod commit;
pub mod errors;
pub mod items;
pub mod keys;
pub mod notified;
pub mod outbox;
pub mod store;
pub mod table;

pub use commit::{MAX_LINES_PER_COMMIT, MAX_TRANSACTION_ACTIONS};
pub use notified::{Claim, NotificationLog};
pub use outbox::{DynamoDbOutbox, OutboxItem};
pub use store::DynamoDbStore;
pub use table::create_table;
