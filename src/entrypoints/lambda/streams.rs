//! DynamoDB Streams (outbox inserts) → the SNS relay, with partial batch responses.
//!
//! For each `INSERT` of an outbox item (`entity = "outbox"`), the item's `payload` (an [`EventEnvelope`]
//! JSON) is published. Records are published in stream order; at the first failure the handler stops
//! and reports that record's `SequenceNumber`: Lambda retries the shard from it (later records of the
//! batch are retried with it, so none is lost and order is kept), and after the event source mapping's
//! retries sends the batch to its failure queue. An outbox item whose payload cannot be read is such a
//! failure too. Records that are not outbox inserts are skipped and logged: the event source mapping's
//! filter should not let them through.
//!
//! Each published item is then marked published (it leaves the outbox's `pending` index and gets its
//! TTL). If marking fails the event stays pending and the republisher (`lambda::republish`) publishes
//! it again later: at least once, never lost.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Error, LambdaEvent};
use serde::Serialize;
use tracing::{error, field, info, info_span, warn, Instrument, Span};

use super::metrics::InvocationMetrics;
use crate::domain::EventEnvelope;
use crate::service::{EventPublisher, PublishError, PublishedMarks};

/// Why a record failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the outbox item has no string attribute payload")]
    NoPayload,
    #[error("the outbox payload is not an event envelope: {0}")]
    BadPayload(serde_json::Error),
    #[error(transparent)]
    Publish(PublishError),
}

/// What was done with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// Published; SNS's message id.
    Published(String),
    /// Not an outbox insert.
    Skipped,
}

/// Relays a batch: the function the `publish_events` binary runs under `lambda_runtime::run`.
pub async fn handle<P: EventPublisher, M: PublishedMarks>(
    publisher: &P,
    marks: &M,
    event: LambdaEvent<DynamoDbEvent>,
) -> Result<DynamoDbEventResponse, Error> {
    let (event, context) = event.into_parts();
    let mut response = DynamoDbEventResponse::default();
    let mut published = 0;
    for record in &event.records {
        let sequence_number = record.change.sequence_number.as_deref();
        let span = info_span!(
            "stream_record",
            request_id = %context.request_id,
            trace_id = context.xray_trace_id.as_deref().unwrap_or_default(),
            sequence_number = sequence_number.unwrap_or_default(),
            event_id = field::Empty,
            event_type = field::Empty,
            correlation_id = field::Empty,
        );
        let outcome = handle_record(publisher, record)
            .instrument(span.clone())
            .await;
        match outcome {
            Ok(Relayed::Published(message_id)) => {
                published += 1;
                span.in_scope(|| info!(sns_message_id = %message_id, "event published"));
                mark_published(marks, record).instrument(span).await;
            }
            Ok(Relayed::Skipped) => {}
            Err(failure) => {
                span.in_scope(|| {
                    error!(error = %failure, "event not published; the stream will retry from this record");
                });
                let Some(sequence_number) = sequence_number else {
                    // Cannot be reported alone: fail the whole batch (the relay is at-least-once anyway).
                    return Err("a failed stream record has no SequenceNumber".into());
                };
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence_number.to_owned());
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    InvocationMetrics {
        events_published: published,
        ..InvocationMetrics::default()
    }
    .emit(&context);
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

/// Publishes one record's event if it is an outbox insert.
pub async fn handle_record<P: EventPublisher>(
    publisher: &P,
    record: &EventRecord,
) -> Result<Relayed, RelayError> {
    let image = &*record.change.new_image;
    let entity = string_attribute(image, "entity");
    if record.event_name != "INSERT" || entity.as_deref() != Some("outbox") {
        warn!(
            event_name = %record.event_name,
            entity = entity.as_deref().unwrap_or_default(),
            "skipping a stream record that is not an outbox insert (check the stream filter)"
        );
        return Ok(Relayed::Skipped);
    }
    let payload = string_attribute(image, "payload").ok_or(RelayError::NoPayload)?;
    let envelope: EventEnvelope = serde_json::from_str(&payload).map_err(RelayError::BadPayload)?;
    let span = Span::current();
    span.record("event_id", envelope.id.as_str());
    span.record("event_type", envelope.event.type_name());
    if let Some(correlation_id) = &envelope.correlation_id {
        span.record("correlation_id", correlation_id.as_str());
    }
    let item_type = string_attribute(image, "event_type");
    if item_type.as_deref() != Some(envelope.event.type_name()) {
        warn!(
            item_event_type = item_type.as_deref().unwrap_or_default(),
            "the outbox item's event_type differs from its payload's; publishing the payload's"
        );
    }
    publisher
        .publish(&envelope)
        .await
        .map(Relayed::Published)
        .map_err(RelayError::Publish)
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
