//! Shared test support, one module for every test binary (each uses part of it): `commands` (any
//! command as one type-tagged enum), `contract` (the store contract suite), `memory_store` (the in-memory store:
//! the reference), `store_delegate` (test
//! store wrappers), `tools` (the Python tools venv); feature `local`: `local` (the `local` server in a
//! workspace), `memory_feed` (an in-memory store with an outbox feed, for the event flow's tests);
//! feature `aws`: `moto` (one moto server per test binary, for SNS and SQS), `dynamodb_local` (Amazon's
//! DynamoDB Local, for DynamoDB), `server` (their processes), `dynamodb_table` (the table as the
//! template declares it), `interposer` (between the SDK and DynamoDB Local: counts requests, injects
//! what DynamoDB allows), `queues` (SQS queues subscribed to SNS topics on moto).

#![allow(dead_code)]

pub mod commands;
pub mod contract;
#[cfg(feature = "aws")]
pub mod dynamodb_local;
#[cfg(feature = "aws")]
pub mod dynamodb_table;
pub mod fakes;
#[cfg(feature = "aws")]
pub mod interposer;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "local")]
pub mod memory_feed;
pub mod memory_store;
#[cfg(feature = "aws")]
pub mod moto;
#[cfg(feature = "aws")]
pub mod queues;
#[cfg(feature = "aws")]
pub mod server;
pub mod store_delegate;
pub mod tools;
