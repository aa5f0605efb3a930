//! Entrypoints: the edges that turn requests and messages into commands for the bus.

pub mod http;
pub mod logging;
