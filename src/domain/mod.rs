//! The domain model: products, batches and order lines, plus the messages they exchange. No I/O, no async.

pub mod batch;
pub mod changes;
pub mod commands;
pub mod errors;
pub mod events;
pub mod order_line;
pub mod product;
pub mod values;

pub use batch::Batch;
pub use changes::Changes;
pub use commands::{Allocate, ChangeBatchQuantity, CreateBatch, Reallocate};
pub use errors::DomainError;
pub use events::{Allocated, AllocationRequired, Event, EventEnvelope, OutOfStock};
pub use order_line::OrderLine;
pub use product::{LineStatus, Product};
pub use values::{BatchRef, OrderId, Quantity, Sku, MAX_IDENTIFIER_LEN, MAX_QUANTITY};
