//! Event wiring: for each event type, whether it is handled in this process or leaves through the outbox.

use crate::domain::Event;

/// Where an event is handled. Each event is handled in exactly one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// By this process's message bus, right after the commit that recorded it, in its own unit of work.
    InProcess,
    /// Written to the outbox in the same commit, and handled by another function after delivery.
    Outbox,
}

/// The delivery of each event type. Handlers never decide this; the entrypoint's wiring does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWiring {
    pub allocated: Delivery,
    pub allocation_required: Delivery,
    pub out_of_stock: Delivery,
}

impl EventWiring {
    /// Every event leaves through the outbox (the Lambda functions and the local server).
    pub const fn outbox() -> Self {
        Self {
            allocated: Delivery::Outbox,
            allocation_required: Delivery::Outbox,
            out_of_stock: Delivery::Outbox,
        }
    }

    /// Every event is handled in the same bus run (the book's ch. 9 tests).
    pub const fn in_process() -> Self {
        Self {
            allocated: Delivery::InProcess,
            allocation_required: Delivery::InProcess,
            out_of_stock: Delivery::InProcess,
        }
    }

    pub fn delivery(&self, event: &Event) -> Delivery {
        match event {
            Event::Allocated(_) => self.allocated,
            Event::AllocationRequired(_) => self.allocation_required,
            Event::OutOfStock(_) => self.out_of_stock,
        }
    }

    pub fn is_outbound(&self, event: &Event) -> bool {
        self.delivery(event) == Delivery::Outbox
    }
}
