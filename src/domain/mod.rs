//! The domain model: products, batches and order lines, plus the messages they exchange. No I/O, no async.

pub mod batch;
pub mod changes;
pub mod commands;
pub mod errors;
pub mod events;
pub mod order_line;
pub mod product;

pub use batch::Batch;
pub use changes::Changes;
pub use commands::{Allocate, ChangeBatchQuantity, CreateBatch};
pub use errors::DomainError;
pub use events::{Allocated, AllocationRequired, Event, EventEnvelope, OutOfStock};
pub use order_line::OrderLine;
pub use product::{LineStatus, Product};

/// Longest identifier (order id, SKU, batch reference) the domain accepts, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 128;

/// Largest quantity of a batch or a line, so sums can never overflow (a product's allocated total is
/// a `u64`; a batch's purchased quantity a `u32`).
pub const MAX_QUANTITY: u64 = 1_000_000_000;

/// Checks an identifier is non-empty, not blank, at most [`MAX_IDENTIFIER_LEN`] bytes and free of
/// control characters: the one rule, which the HTTP edge applies to its input too.
pub fn validate_identifier(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::EmptyIdentifier(field));
    }
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(DomainError::IdentifierTooLong {
            field,
            max: MAX_IDENTIFIER_LEN,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(DomainError::InvalidIdentifier(field));
    }
    Ok(())
}
