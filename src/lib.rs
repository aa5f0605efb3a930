//! Order-allocation service: the book's allocation domain, service layer and adapters, in Rust.
//!
//! Layers (dependencies point inward): `entrypoints` → `service` → `domain`; `adapters` implement the
//! service layer's ports (`service::Store`). See `docs/` (storage, functions, local mode).

pub mod adapters;
pub mod domain;
pub mod entrypoints;
pub mod service;
