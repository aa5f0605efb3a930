//! Tests without a server or a cloud: the domain rules, the messages, the bus and its handlers,
//! the in-memory store's contract, the HTTP contract, properties and races, and the template and
//! smoke-script checks (Python tools).

#[path = "../support/mod.rs"]
mod support;

mod api_contract;
mod concurrency;
mod contract_memory;
mod domain_batches;
mod domain_product;
mod fixture;
mod handlers;
mod message_bus;
mod messages;
mod properties;
mod specifications;
mod template_check;
