//! SQS (the reallocation queue, raw SNS delivery) → the bus, with partial batch responses.
//!
//! Each record's body is an [`EventEnvelope`] JSON, handed to the bus (`MessageBus::handle`); the
//! reallocations of one SKU are applied together (see [`handle`]). A record
//! that fails (bad JSON, unknown SKU, store down...) is reported in `batchItemFailures` and only it is
//! retried (`ReportBatchItemFailures`): the others of the batch are deleted from the queue. A record
//! that can never succeed (bad JSON) is retried too, until the queue's `maxReceiveCount` moves it to
//! the dead-letter queue, where the alarm and an operator see it: nothing is dropped silently.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use lambda_runtime::{Context, Error, LambdaEvent};
use tracing::{error, field, info, info_span, Instrument, Span};

use super::metrics::{BusCounts, InvocationMetrics};
use crate::domain::EventEnvelope;
use crate::service::{App, MessageBus, ProductRepository, RecordsRead, ServiceError};

/// Why a record failed.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the message has no body")]
    NoBody,
    #[error("the body is not an event envelope: {0}")]
    BadBody(serde_json::Error),
    #[error(transparent)]
    Handler(ServiceError),
    #[error("not started: too little of the invocation is left to finish it")]
    NoTimeLeft,
}

/// Time kept free at the end of an invocation, beyond the bus's retry budget.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// Whether work that may take the bus's whole retry budget can still end before the invocation's
/// deadline (with the margin). A context without a deadline (0: tests, emulators) sets no limit.
fn time_left_for<S: ProductRepository>(bus: &MessageBus<S>, context: &Context) -> bool {
    if context.deadline == 0 {
        return true;
    }
    let needed = bus.retry_policy().budget + DEADLINE_MARGIN;
    context
        .deadline()
        .duration_since(SystemTime::now())
        .is_ok_and(|left| left >= needed)
}

/// Handles a batch: the function the `reallocate` binary runs under `lambda_runtime::run_concurrent`.
///
/// Every record's envelope goes to the bus at once (`MessageBus::handle`), so the reallocations of one
/// SKU meet in its product's queue and are applied together (one load, one commit). Failures are
/// reported per message: a group that cannot commit fails each of its messages. A batch that could
/// not end before the invocation's deadline is not started: its records are reported as failures and
/// the queue redelivers them, so a slow batch never times out as a whole.
pub async fn handle<S: ProductRepository + RecordsRead>(
    app: &App<S>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let (event, context) = event.into_parts();
    let before = BusCounts::of(app);
    let bus = &app.bus;
    let started = time_left_for(bus, &context);
    let handled = event.records.iter().map(|record| {
        let span = record_span(&context, record);
        async move {
            if !started {
                return Err(MessageError::NoTimeLeft);
            }
            let envelope = parse_record(record, &span)?;
            bus.handle(&envelope, None)
                .instrument(span)
                .await
                .map_err(MessageError::Handler)
        }
    });
    // Boxed: the bus's future is deep enough to overflow rustc's layout query depth in a binary.
    let outcomes: Vec<Result<(), MessageError>> = Box::pin(join_all(handled)).await;
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in event.records.iter().zip(outcomes) {
        let span = record_span(&context, record);
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
    InvocationMetrics {
        reallocation_failures: response.batch_item_failures.len() as u64,
        ..BusCounts::of(app).since(before)
    }
    .emit(&context);
    Ok(response)
}

fn record_span(context: &Context, record: &SqsMessage) -> Span {
    info_span!(
        "sqs_message",
        request_id = %context.request_id,
        message_id = record.message_id.as_deref().unwrap_or_default(),
        receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str)
            .unwrap_or_default(),
        trace_id = context.xray_trace_id.as_deref().unwrap_or_default(),
        event_id = field::Empty,
        event_type = field::Empty,
        correlation_id = field::Empty,
    )
}

/// Parses one record's envelope and records its identity in the record's span.
fn parse_record(record: &SqsMessage, span: &Span) -> Result<EventEnvelope, MessageError> {
    let body = record.body.as_deref().ok_or(MessageError::NoBody)?;
    let envelope: EventEnvelope = serde_json::from_str(body).map_err(MessageError::BadBody)?;
    span.record("event_id", envelope.id.as_str());
    span.record("event_type", envelope.event.type_name());
    if let Some(correlation_id) = &envelope.correlation_id {
        span.record("correlation_id", correlation_id.as_str());
    }
    Ok(envelope)
}
