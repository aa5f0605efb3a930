//! Shared test support. `moto`: one moto server per test binary (feature `aws`).

#![allow(dead_code)]

#[cfg(feature = "aws")]
pub mod moto;
