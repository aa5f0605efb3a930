//! Entrypoints: the edges that turn requests and messages into commands for the bus.

pub mod http;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
pub mod logging;
