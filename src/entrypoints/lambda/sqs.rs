//! SQS (the reallocation queue, raw SNS delivery) → the bus, with partial batch responses.
//!
//! Each record's body is an [`EventEnvelope`] JSON; reallocations are applied together per SKU (see
//! [`handle`]), other events by `bus.handle_delivered_event`. A record
//! that fails (bad JSON, unknown SKU, store down...) is reported in `batchItemFailures` and only it is
//! retried (`ReportBatchItemFailures`): the others of the batch are deleted from the queue. A record
//! that can never succeed (bad JSON) is retried too, until the queue's `maxReceiveCount` moves it to
//! the dead-letter queue, where the alarm and an operator see it: nothing is dropped silently.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Context, Error, LambdaEvent};
use tracing::{error, field, info, info_span, Instrument, Span};

use super::metrics::{BusCounts, InvocationMetrics};
use crate::domain::EventEnvelope;
use crate::service::{handlers, Bus, QueuedAllocation, ServiceError, Store};

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
fn time_left_for<S: Store>(bus: &Bus<S>, context: &Context) -> bool {
    if context.deadline == 0 {
        return true;
    }
    let needed = bus.retry_policy().budget + DEADLINE_MARGIN;
    context
        .deadline()
        .duration_since(SystemTime::now())
        .is_ok_and(|left| left >= needed)
}

/// Handles a batch: the function the `reallocate` binary runs under `lambda_runtime::run`.
///
/// The `AllocationRequired` events of the batch are grouped by SKU, and each group is applied in one
/// unit of work (one load, one commit: `MessageBus::allocate_together`); any other event is handled
/// alone. Failures are reported per message: a group that cannot commit fails each of its messages.
/// Work that could not end before the invocation's deadline is not started: its records are reported
/// as failures and the queue redelivers them, so a slow batch never times out as a whole.
pub async fn handle<S: Store>(
    bus: &Bus<S>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let (event, context) = event.into_parts();
    let before = BusCounts::of(bus);
    let mut outcomes: Vec<Option<Result<(), MessageError>>> =
        event.records.iter().map(|_| None).collect();
    let mut groups: BTreeMap<String, Vec<(usize, QueuedAllocation)>> = BTreeMap::new();
    for (index, record) in event.records.iter().enumerate() {
        let span = record_span(&context, record);
        match parse_record(record, &span) {
            Err(failure) => outcomes[index] = Some(Err(failure)),
            Ok(envelope) => match handlers::reallocation(&envelope.event) {
                Some(Err(invalid)) => outcomes[index] = Some(Err(MessageError::Handler(invalid))),
                Some(Ok(cmd)) => groups.entry(cmd.sku.to_string()).or_default().push((
                    index,
                    QueuedAllocation {
                        cmd,
                        correlation_id: envelope.correlation_id.clone(),
                        reallocation: true,
                    },
                )),
                None if !time_left_for(bus, &context) => {
                    outcomes[index] = Some(Err(MessageError::NoTimeLeft));
                }
                None => {
                    // Boxed: the bus's future is deep enough to overflow rustc's layout query depth.
                    let outcome = Box::pin(bus.handle_delivered_event(&envelope))
                        .instrument(span)
                        .await
                        .map_err(MessageError::Handler);
                    outcomes[index] = Some(outcome);
                }
            },
        }
    }
    for (sku, group) in groups {
        let (indices, allocations): (Vec<usize>, Vec<QueuedAllocation>) = group.into_iter().unzip();
        if !time_left_for(bus, &context) {
            for index in indices {
                outcomes[index] = Some(Err(MessageError::NoTimeLeft));
            }
            continue;
        }
        let span = info_span!("reallocation_group", request_id = %context.request_id, %sku,
            messages = allocations.len());
        let answers = Box::pin(bus.allocate_together(&sku, &allocations))
            .instrument(span)
            .await;
        for (index, answer) in indices.into_iter().zip(answers) {
            outcomes[index] = Some(match answer {
                Ok(_) | Err(ServiceError::OutOfStock(_)) => Ok(()),
                Err(error) => Err(MessageError::Handler(error)),
            });
        }
    }
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in event.records.iter().zip(outcomes) {
        let span = record_span(&context, record);
        let failed = span.in_scope(|| match outcome {
            Some(Ok(())) => {
                info!("message handled");
                false
            }
            Some(Err(failure)) => {
                error!(error = %failure, "message failed; the queue will redeliver it");
                true
            }
            None => {
                error!("message not handled; the queue will redeliver it");
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
        ..BusCounts::of(bus).since(before)
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

/// Parses one record's envelope and runs its handler (alone).
pub async fn handle_record<S: Store>(
    bus: &Bus<S>,
    record: &SqsMessage,
) -> Result<(), MessageError> {
    let envelope = parse_record(record, &Span::current())?;
    // Boxed: the bus's future is deep enough to overflow rustc's layout query depth in a binary.
    Box::pin(bus.handle_delivered_event(&envelope))
        .await
        .map_err(MessageError::Handler)
}
