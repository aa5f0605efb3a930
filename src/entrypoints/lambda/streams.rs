//! DynamoDB Streams (outbox inserts) → the SNS relay, with partial batch responses.
//!
//! For each `INSERT` of an outbox item (`entity = "outbox"`), the item's `payload` (an [`EventEnvelope`]
//! JSON) is published: in `PublishBatch` calls of up to 10, several at once, keeping each SKU's order
//! (`service::publish_in_order`: an event goes only after every earlier event of its SKU in the batch
//! was published). The first record, in stream order, that was not published is reported by its
//! `SequenceNumber`: Lambda retries the shard from it (later records of the batch are retried with
//! it, so none is lost; those already published are published again, which consumers, idempotent by
//! event id, ignore), and after the event source mapping's retries sends the batch to its failure
//! queue. An outbox item whose payload cannot be read is such a failure too (nothing after it is
//! published). Records that are not outbox inserts are skipped and logged: the event source
//! mapping's filter should not let them through.
//!
//! Each published item is then marked published (it leaves the outbox's `pending` index and gets its
//! TTL). If marking fails the event stays pending and the republisher (`lambda::republish`) publishes
//! it again later: at least once, never lost.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures_util::future::join_all;
use lambda_runtime::{Error, LambdaEvent};
use serde::Serialize;
use tracing::{error, info, warn};

use super::metrics::InvocationMetrics;
use crate::domain::EventEnvelope;
use crate::service::{publish_in_order, EventPublisher, Publication, PublishedMarks};

/// How many `PublishBatch` calls the relay makes at once (a stream batch holds up to 100 records).
pub const PARALLEL_CALLS: usize = 4;

/// Why a record cannot be relayed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the outbox item has no string attribute payload")]
    NoPayload,
    #[error("the outbox payload is not an event envelope: {0}")]
    BadPayload(serde_json::Error),
}

/// Relays a batch: the function the `publish_events` binary runs under `lambda_runtime::run`.
pub async fn handle<P: EventPublisher, M: PublishedMarks>(
    publisher: &P,
    marks: &M,
    event: LambdaEvent<DynamoDbEvent>,
) -> Result<DynamoDbEventResponse, Error> {
    let (event, context) = event.into_parts();
    let records = &event.records;
    // The events to publish, each with its record's place; reading stops at an unreadable record.
    let mut events: Vec<(usize, EventEnvelope)> = Vec::new();
    let mut unreadable = None;
    for (place, record) in records.iter().enumerate() {
        match read_record(record) {
            Ok(Some(envelope)) => events.push((place, envelope)),
            Ok(None) => {}
            Err(failure) => {
                error!(request_id = %context.request_id, error = %failure,
                    sequence_number = record.change.sequence_number.as_deref().unwrap_or_default(),
                    "event not published; the stream will retry from this record");
                unreadable = Some(place);
                break;
            }
        }
    }
    let envelopes: Vec<&EventEnvelope> = events.iter().map(|(_, e)| e).collect();
    let (outcomes, calls) = publish_in_order(publisher, &envelopes, PARALLEL_CALLS, || true).await;
    let (mut to_mark, mut unpublished) = (Vec::new(), Vec::new());
    for ((place, envelope), outcome) in events.iter().zip(outcomes) {
        let record = &records[*place];
        let sequence_number = record.change.sequence_number.as_deref().unwrap_or_default();
        match outcome {
            Publication::Published(message_id) => {
                info!(request_id = %context.request_id, sequence_number, event_id = %envelope.id,
                    event_type = envelope.event.type_name(),
                    correlation_id = envelope.correlation_id.as_deref().unwrap_or_default(),
                    sns_message_id = %message_id, "event published");
                to_mark.push(record);
            }
            Publication::Failed(failure) => {
                error!(request_id = %context.request_id, sequence_number, event_id = %envelope.id,
                    error = %failure, "event not published; the stream will retry from this record");
                unpublished.push(*place);
            }
            Publication::NotTried => unpublished.push(*place),
        }
    }
    // Events come in stream order and reading stopped at the unreadable record, if any.
    let first_unpublished = unpublished.first().copied().or(unreadable);
    let published = to_mark.len() as u64;
    join_all(
        to_mark
            .into_iter()
            .map(|record| mark_published(marks, record)),
    )
    .await;
    info!(request_id = %context.request_id, records = records.len(), published, calls,
        "stream batch relayed");
    InvocationMetrics {
        events_published: published,
        ..InvocationMetrics::default()
    }
    .emit(&context);
    let mut response = DynamoDbEventResponse::default();
    if let Some(place) = first_unpublished {
        let Some(sequence_number) = records[place].change.sequence_number.as_deref() else {
            // Cannot be reported alone: fail the whole batch (the relay is at-least-once anyway).
            return Err("a failed stream record has no SequenceNumber".into());
        };
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence_number.to_owned());
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

/// Marks a published record's outbox item; a failure leaves it pending (the republisher publishes it
/// again later), so it is logged, not reported.
async fn mark_published<M: PublishedMarks>(marks: &M, record: &EventRecord) {
    let keys = &*record.change.keys;
    let (Some(pk), Some(sk)) = (string_attribute(keys, "pk"), string_attribute(keys, "sk")) else {
        warn!("the stream record has no pk/sk keys: its outbox item stays pending");
        return;
    };
    if let Err(error) = marks.mark_published(&pk, &sk).await {
        warn!(%error, pk, sk, "cannot mark the outbox item published: it stays pending and will be published again");
    }
}

/// The event of a record if it is an outbox insert (`None`: another record, skipped and logged).
pub fn read_record(record: &EventRecord) -> Result<Option<EventEnvelope>, RelayError> {
    let image = &*record.change.new_image;
    let entity = string_attribute(image, "entity");
    if record.event_name != "INSERT" || entity.as_deref() != Some("outbox") {
        warn!(
            event_name = %record.event_name,
            entity = entity.as_deref().unwrap_or_default(),
            "skipping a stream record that is not an outbox insert (check the stream filter)"
        );
        return Ok(None);
    }
    let payload = string_attribute(image, "payload").ok_or(RelayError::NoPayload)?;
    let envelope: EventEnvelope = serde_json::from_str(&payload).map_err(RelayError::BadPayload)?;
    let item_type = string_attribute(image, "event_type");
    if item_type.as_deref() != Some(envelope.event.type_name()) {
        warn!(
            event_id = %envelope.id,
            item_event_type = item_type.as_deref().unwrap_or_default(),
            "the outbox item's event_type differs from its payload's; publishing the payload's"
        );
    }
    Ok(Some(envelope))
}

/// The value of a string (`S`) attribute of a stream image.
fn string_attribute<V: Serialize>(image: &HashMap<String, V>, name: &str) -> Option<String> {
    let value = serde_json::to_value(image.get(name)?).ok()?;
    match value {
        serde_json::Value::Object(mut typed) => match typed.remove("S")? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}
