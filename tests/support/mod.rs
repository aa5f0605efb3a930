//! Shared test support. `moto`: one moto server per test binary; `queues`: SQS queues
//! subscribed to SNS topics on it (feature `aws`).

#![allow(dead_code)]

#[cfg(feature = "aws")]
pub mod moto;
#[cfg(feature = "aws")]
pub mod queues;
