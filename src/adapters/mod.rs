//! Adapters: implementations of the service layer's ports (stores, notifiers).

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "local")]
pub mod embedded;
pub mod memory;
pub mod records;

pub use memory::InMemoryStore;
