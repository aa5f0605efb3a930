//! Local mode (`docs/local.md`): the whole service in one process, with the cloud's semantics.
//!
//! ```text
//! HTTP (axum) ─> entrypoints::http::handle ─> bus ─> store commit (+ outbox, same transaction)
//!                                                         │ commit signal / start-up / tick
//!                                                         v
//!                                          outbox relay ─> the event type's route
//!                          AllocationRequired ─> reallocation queue ─> bus.handle(envelope)
//!                          OutOfStock         ─> mailbox ─> bus.handle(envelope) (the mailbox file)
//!                          Allocated          ─> event log
//! ```
//! A consumer's worker retries a failing event with exponential backoff; after `max_attempts`
//! failures the event becomes a dead letter. An outbox event is marked delivered only once its consumer
//! took it (handled or dead-lettered), so delivery is at least once across crashes; the consumers are
//! idempotent.

pub mod consumers;
pub mod flow;
pub mod relay;
pub mod routes;
pub mod server;
pub mod worker;

pub use consumers::{BusHandler, EventLog};
pub use flow::{EventFlow, FlowConfig};
pub use relay::{Relay, RelayStats};
pub use routes::{Ack, QueuedEvent, Routes, EVENT_LOG, MAILBOX, REALLOCATION_QUEUE};
pub use server::{
    router, serve, shutdown_signal, url, DEAD_LETTERS_PATH, REQUEST_ID_HEADER, SHUTDOWN_GRACE,
};
pub use worker::{Consumer, DeliveryPolicy, Worker};
