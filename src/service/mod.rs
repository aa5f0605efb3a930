//! The service layer: handlers for each message, the message bus, the unit of work and the store port.

pub mod bootstrap;
pub mod errors;
pub mod handlers;
pub mod message_bus;
pub mod notifications;
pub mod product_queue;
pub mod retry;
pub mod store;
pub mod unit_of_work;
pub mod wiring;

pub use bootstrap::{notifying_outbox_bus, outbox_bus, Bus};
pub use errors::{ServiceError, StoreError};
pub use handlers::QueuedAllocation;
pub use message_bus::{BusStats, CommandResult, Message, MessageBus};
pub use notifications::{out_of_stock_message, NoNotifications, NotificationError, Notifications};
pub use retry::RetryPolicy;
pub use store::{AllocationView, ProductWrite, Store};
pub use unit_of_work::{StoreUnitOfWork, StoreUnitOfWorkFactory, UnitOfWork, UnitOfWorkFactory};
pub use wiring::{Delivery, EventWiring};
