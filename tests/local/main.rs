//! Local mode (feature `local`): the embedded store's contract and durability, and the `local`
//! server end to end over HTTP (the book's API, the event flow, hardening, the OpenAPI document and
//! schemathesis run from it).

#![cfg(feature = "local")]

#[path = "../support/mod.rs"]
mod support;

mod contract_embedded;
mod e2e_local;
mod embedded_durability;
mod event_flow;
mod http_hardening;
mod http_openapi;
mod schemathesis;
