//! Adapters: implementations of the service layer's ports (stores, notifiers).

pub mod memory;
pub mod records;

pub use memory::InMemoryStore;
