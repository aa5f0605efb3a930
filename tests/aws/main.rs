//! AWS (feature `aws`), on DynamoDB Local (DynamoDB) and moto (SNS, SQS): the DynamoDB store's
//! contract, costs and snapshot reads, every sample event through its function, the Lambda adapters,
//! and the whole cloud flow.

#![cfg(feature = "aws")]

#[path = "../support/mod.rs"]
mod support;

mod cloud;
mod cloud_flow;
mod contract_dynamodb;
mod dynamodb_cost;
mod dynamodb_size;
mod functions_events;
mod lambda_adapters;
mod lambda_events;
mod notifications;
mod relay_drill;
mod snapshot_reads;
mod telemetry;
