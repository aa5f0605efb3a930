//! Messages keep one stable, type-tagged JSON shape, because they travel through SNS and SQS.

use allocation::domain::{Allocate, ChangeBatchQuantity, CreateBatch, Event, EventEnvelope};
use allocation::domain::{Allocated, AllocationRequired, OutOfStock};
use chrono::NaiveDate;

use crate::support::commands::Command;
use serde_json::{json, Value};

fn round_trips<T>(message: &T, expected: Value)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(message).unwrap();
    assert_eq!(json, expected);
    let back: T = serde_json::from_value(json).unwrap();
    assert_eq!(&back, message);
}

#[test]
fn create_batch_round_trips() {
    let cmd = Command::CreateBatch(
        CreateBatch::new("b1", "LAMP", 20, NaiveDate::from_ymd_opt(2026, 12, 1)).unwrap(),
    );
    round_trips(
        &cmd,
        json!({"type": "CreateBatch", "ref": "b1", "sku": "LAMP", "qty": 20, "eta": "2026-12-01"}),
    );
}

#[test]
fn allocate_round_trips() {
    let cmd = Command::Allocate(Allocate::new("o1", "LAMP", 3).unwrap());
    round_trips(
        &cmd,
        json!({"type": "Allocate", "orderid": "o1", "sku": "LAMP", "qty": 3}),
    );
}

#[test]
fn change_batch_quantity_round_trips() {
    let cmd = Command::ChangeBatchQuantity(ChangeBatchQuantity::new("b1", 5).unwrap());
    round_trips(
        &cmd,
        json!({"type": "ChangeBatchQuantity", "ref": "b1", "qty": 5}),
    );
}

#[test]
fn allocated_round_trips() {
    let event = Event::Allocated(Allocated {
        orderid: "o1".into(),
        sku: "LAMP".into(),
        qty: 3,
        batchref: "b1".into(),
    });
    round_trips(
        &event,
        json!({"type": "Allocated", "orderid": "o1", "sku": "LAMP", "qty": 3, "batchref": "b1"}),
    );
}

#[test]
fn allocation_required_round_trips() {
    let event = Event::AllocationRequired(AllocationRequired {
        orderid: "o1".into(),
        sku: "LAMP".into(),
        qty: 3,
    });
    round_trips(
        &event,
        json!({"type": "AllocationRequired", "orderid": "o1", "sku": "LAMP", "qty": 3}),
    );
}

#[test]
fn out_of_stock_round_trips() {
    round_trips(
        &Event::OutOfStock(OutOfStock {
            sku: "LAMP".into(),
            orderid: None,
            qty: None,
        }),
        json!({"type": "OutOfStock", "sku": "LAMP"}),
    );
}

#[test]
fn an_event_envelope_round_trips_with_its_id_and_correlation_id() {
    let envelope = EventEnvelope {
        id: EventEnvelope::event_id("LAMP", 4, 0),
        correlation_id: Some("req-1".into()),
        occurred_at: None,
        event: Event::OutOfStock(OutOfStock {
            sku: "LAMP".into(),
            orderid: None,
            qty: None,
        }),
    };
    round_trips(
        &envelope,
        json!({"id": "LAMP:4:0", "correlation_id": "req-1", "type": "OutOfStock", "sku": "LAMP"}),
    );
}

#[test]
fn an_envelope_without_correlation_id_still_parses() {
    let parsed: EventEnvelope =
        serde_json::from_value(json!({"id": "X:1:0", "type": "OutOfStock", "sku": "X"})).unwrap();
    assert_eq!(parsed.correlation_id, None);
}

#[test]
fn a_message_of_unknown_type_is_refused() {
    assert!(serde_json::from_value::<Event>(json!({"type": "Exploded", "sku": "X"})).is_err());
}
