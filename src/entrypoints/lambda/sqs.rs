//! SQS (the reallocation queue, raw SNS delivery) → the bus, with partial batch responses.
//!
//! Each record's body is an [`EventEnvelope`] JSON, handled by `bus.handle_delivered_event`. A record
//! that fails (bad JSON, unknown SKU, store down...) is reported in `batchItemFailures` and only it is
//! retried (`ReportBatchItemFailures`): the others of the batch are deleted from the queue. A record
//! that can never succeed (bad JSON) is retried too, until the queue's `maxReceiveCount` moves it to
//! the dead-letter queue, where the alarm and an operator see it: nothing is dropped silently.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use tracing::{error, field, info, info_span, Instrument, Span};

use crate::domain::EventEnvelope;
use crate::service::{Bus, ServiceError, Store};

/// Why a record failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the message has no body")]
    NoBody,
    #[error("the body is not an event envelope: {0}")]
    BadBody(serde_json::Error),
    #[error(transparent)]
    Handler(ServiceError),
}

/// Handles a batch: the function the `reallocate` binary runs under `lambda_runtime::run`.
/// Records are handled one after the other (they often concern the same product).
pub async fn handle<S: Store>(
    bus: &Bus<S>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let (event, context) = event.into_parts();
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        let span = info_span!(
            "sqs_message",
            request_id = %context.request_id,
            message_id = record.message_id.as_deref().unwrap_or_default(),
            receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str)
                .unwrap_or_default(),
            event_id = field::Empty,
            event_type = field::Empty,
            correlation_id = field::Empty,
        );
        let outcome = handle_record(bus, record).instrument(span.clone()).await;
        let failed = span.in_scope(|| match outcome {
            Ok(()) => {
                info!("message handled");
                false
            }
            Err(failure) => {
                error!(error = %failure, "message failed; the queue will redeliver it");
                true
            }
        });
        if failed {
            let Some(message_id) = &record.message_id else {
                // Cannot be reported alone: fail the whole batch (handlers are idempotent).
                return Err("a failed SQS record has no messageId".into());
            };
            response.add_failure(message_id.clone());
        }
    }
    Ok(response)
}

/// Parses one record's envelope and runs its handler.
pub async fn handle_record<S: Store>(bus: &Bus<S>, record: &SqsMessage) -> Result<(), RecordError> {
    let body = record.body.as_deref().ok_or(RecordError::NoBody)?;
    let envelope: EventEnvelope = serde_json::from_str(body).map_err(RecordError::BadBody)?;
    let span = Span::current();
    span.record("event_id", envelope.id.as_str());
    span.record("event_type", envelope.event.type_name());
    if let Some(correlation_id) = &envelope.correlation_id {
        span.record("correlation_id", correlation_id.as_str());
    }
    // Boxed: the bus's future is deep enough to overflow rustc's layout query depth in a binary.
    Box::pin(bus.handle_delivered_event(&envelope))
        .await
        .map_err(RecordError::Handler)
}
