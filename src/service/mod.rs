//! The service layer: handlers for each message, the message bus, the unit of work, the composition
//! root (`bootstrap`) and the ports the adapters implement (`ProductRepository`, `AllocationsView`,
//! `OutboxFeed`, `Notifications`...; `Store` names a store adapter's whole set).

pub mod bootstrap;
pub mod errors;
pub mod handlers;
pub mod message_bus;
pub mod messages;
pub mod notifications;
pub mod outbox_feed;
pub mod product_queue;
pub mod publishing;
pub mod repository;
pub mod retry;
pub mod store;
pub mod unit_of_work;
pub mod views;
pub mod wiring;

pub use bootstrap::{deployed_app, App, Bootstrap};
pub use errors::{ServiceError, StoreError};
pub use handlers::{AllocationCommand, QueuedAllocation};
pub use message_bus::{BusStats, MessageBus};
pub use messages::Message;
pub use notifications::{
    out_of_stock_message, NoNotifications, NotificationError, Notifications, NotifyFuture,
};
pub use outbox_feed::{DeadLetter, OutboxFeed};
pub use publishing::{
    publish_in_order, EventPublisher, OutboxItem, PendingPage, Publication, PublicationRecord,
    PublishError, PublishedMarks, MAX_PUBLISH_BATCH,
};
pub use repository::{ProductRepository, ProductWrite};
pub use retry::{exponential_backoff, RetryPolicy};
pub use store::{OutboxAudit, RecordsRead, Store};
pub use unit_of_work::UnitOfWork;
pub use views::{AllocationView, AllocationsView};
pub use wiring::{Delivery, EventWiring};
