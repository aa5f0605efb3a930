//! Shared test support, one module for every test binary: `contract` (the store contract suite),
//! `store_delegate` (test store wrappers), `local` (the `local` server in a workspace; feature
//! `local`), `memory_feed` (an in-memory store with an outbox feed, for the event flow's tests), `tools` (the Python tools venv), `moto` (one moto server per test binary) and `queues` (SQS queues subscribed to SNS
//! topics on it; feature `aws`). Each binary uses part of it.

#![allow(dead_code)]

pub mod commands;
pub mod contract;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "local")]
pub mod memory_feed;
#[cfg(feature = "aws")]
pub mod moto;
#[cfg(feature = "aws")]
pub mod queues;
pub mod store_delegate;
pub mod tools;
