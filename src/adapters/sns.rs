//! The SNS relay: publishes outbox events to the events topic.
