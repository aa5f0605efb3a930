//! The SNS relay: publishes outbox events to the events topic.
//!
//! Events go in `PublishBatch` calls of up to 10, each entry with `MessageStructure=json`: `default` and `sqs` carry the event envelope
//! JSON (what the reallocation queue receives with raw delivery), `email` a text a person can read
//! (for `OutOfStock`: [`out_of_stock_message`]); the `event_type` message attribute is what the
//! subscriptions' filter policies match; `Subject` is the email's subject line.

use crate::domain::OutOfStock;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sns::Client;
use serde_json::json;

use crate::domain::{Event, EventEnvelope};
use crate::service::notifications::escaped;
use crate::service::{out_of_stock_message, EventPublisher, PublishError};

/// The message attribute the subscriptions filter on.
pub const EVENT_TYPE_ATTRIBUTE: &str = "event_type";

/// SNS rejects subjects of 100 characters or more.
const MAX_SUBJECT_CHARS: usize = 99;

/// What one `Publish` sends for an event (built without I/O, so it can be checked in unit tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsMessage {
    /// The `MessageStructure=json` document: `{"default": ..., "sqs": ..., "email": ...}`.
    pub message: String,
    pub subject: String,
    /// The value of the `event_type` message attribute (a `String`).
    pub event_type: &'static str,
}

impl SnsMessage {
    pub fn for_event(envelope: &EventEnvelope) -> Result<Self, serde_json::Error> {
        let event_json = serde_json::to_string(envelope)?;
        let (email, subject) = match &envelope.event {
            Event::OutOfStock(OutOfStock { sku, .. }) => (
                out_of_stock_message(envelope),
                format!("Out of stock for SKU {}", escaped(sku)),
            ),
            other => (
                event_json.clone(),
                format!("{} for SKU {}", other.type_name(), escaped(other.sku())),
            ),
        };
        let message = json!({ "default": event_json, "sqs": event_json, "email": email });
        Ok(Self {
            message: message.to_string(),
            subject: subject_line(&subject),
            event_type: envelope.event.type_name(),
        })
    }
}

/// A valid SNS subject: printable ASCII (anything else becomes `?`: identifiers come escaped, see
/// `notifications::escaped`), under 100 characters; an invalid subject would make every retry of the
/// publish fail.
pub(crate) fn subject_line(text: &str) -> String {
    let mut subject: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        subject.truncate(MAX_SUBJECT_CHARS - 3);
        subject.push_str("...");
    }
    subject
}

/// Publishes events to one topic. Cheap to clone (the SDK client is).
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: Client,
    topic_arn: String,
}

impl SnsPublisher {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// Publishes these events (at most `MAX_PUBLISH_BATCH`) with one `PublishBatch`; answers one
    /// result per event, in order: SNS's message id, or why that entry (or the whole call) failed.
    pub async fn publish_batch(
        &self,
        envelopes: &[&EventEnvelope],
    ) -> Vec<Result<String, PublishError>> {
        let failed = |envelope: &EventEnvelope, detail: String| PublishError {
            event_id: envelope.id.clone(),
            detail,
        };
        // Entry ids are the events' places in the batch.
        let mut answers: Vec<Option<Result<String, PublishError>>> = vec![None; envelopes.len()];
        let mut entries = Vec::with_capacity(envelopes.len());
        for (place, envelope) in envelopes.iter().enumerate() {
            match entry(place, envelope) {
                Ok(entry) => entries.push(entry),
                Err(detail) => answers[place] = Some(Err(failed(envelope, detail))),
            }
        }
        if !entries.is_empty() {
            match self
                .client
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    for done in output.successful() {
                        if let Some(place) = place_of(done.id(), envelopes.len()) {
                            let message_id = done.message_id().unwrap_or_default().to_owned();
                            answers[place] = Some(Ok(message_id));
                        }
                    }
                    for refused in output.failed() {
                        if let Some(place) = place_of(Some(refused.id()), envelopes.len()) {
                            let detail = format!(
                                "{}: {}",
                                refused.code(),
                                refused.message().unwrap_or_default()
                            );
                            answers[place] = Some(Err(failed(envelopes[place], detail)));
                        }
                    }
                }
                Err(error) => {
                    let detail = DisplayErrorContext(&error).to_string();
                    for (place, answer) in answers.iter_mut().enumerate() {
                        answer.get_or_insert_with(|| Err(failed(envelopes[place], detail.clone())));
                    }
                }
            }
        }
        answers
            .into_iter()
            .zip(envelopes)
            .map(|(answer, envelope)| {
                answer.unwrap_or_else(|| {
                    Err(failed(
                        envelope,
                        "PublishBatch did not answer for this entry".into(),
                    ))
                })
            })
            .collect()
    }
}

/// The batch entry of the event at `place`.
fn entry(place: usize, envelope: &EventEnvelope) -> Result<PublishBatchRequestEntry, String> {
    let message = SnsMessage::for_event(envelope).map_err(|e| e.to_string())?;
    let event_type = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(message.event_type)
        .build()
        .map_err(|e| e.to_string())?;
    PublishBatchRequestEntry::builder()
        .id(place.to_string())
        .message_structure("json")
        .message(message.message)
        .subject(message.subject)
        .message_attributes(EVENT_TYPE_ATTRIBUTE, event_type)
        .build()
        .map_err(|e| e.to_string())
}

/// The place in the batch an entry id names.
fn place_of(id: Option<&str>, len: usize) -> Option<usize> {
    id?.parse().ok().filter(|place| *place < len)
}

impl EventPublisher for SnsPublisher {
    fn publish_batch(
        &self,
        envelopes: &[&EventEnvelope],
    ) -> impl std::future::Future<Output = Vec<Result<String, PublishError>>> + Send {
        SnsPublisher::publish_batch(self, envelopes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AllocationRequired;

    fn envelope(event: Event) -> EventEnvelope {
        EventEnvelope {
            id: "SKU-1:4:0".into(),
            correlation_id: Some("req-1".into()),
            occurred_at: None,
            event,
        }
    }

    fn parts(message: &SnsMessage) -> serde_json::Value {
        serde_json::from_str(&message.message).unwrap()
    }

    #[test]
    fn out_of_stock_has_readable_email_and_json_for_machines() {
        let env = envelope(Event::OutOfStock(OutOfStock {
            sku: "SKU-1".into(),
            orderid: Some("o-1".into()),
            qty: Some(1),
        }));
        let message = SnsMessage::for_event(&env).unwrap();
        let parts = parts(&message);
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(parts["default"], json.as_str());
        assert_eq!(parts["sqs"], json.as_str());
        assert_eq!(parts["email"], out_of_stock_message(&env).as_str());
        assert_eq!(message.subject, "Out of stock for SKU SKU-1");
        assert_eq!(message.event_type, "OutOfStock");
    }

    #[test]
    fn other_events_send_their_json_to_email_too() {
        let env = envelope(Event::AllocationRequired(AllocationRequired {
            orderid: "o1".into(),
            sku: "SKU-1".into(),
            qty: 3,
        }));
        let message = SnsMessage::for_event(&env).unwrap();
        let parts = parts(&message);
        assert_eq!(parts["email"], parts["default"]);
        let decoded: EventEnvelope = serde_json::from_str(parts["sqs"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, env);
        assert_eq!(message.event_type, "AllocationRequired");
        assert_eq!(message.subject, "AllocationRequired for SKU SKU-1");
    }

    #[test]
    fn subject_is_ascii_and_short_whatever_the_sku() {
        let sku = "T\u{e9}l\u{e9}\u{1F600}".to_owned() + &"x".repeat(200);
        let message = SnsMessage::for_event(&envelope(Event::OutOfStock(OutOfStock {
            sku: sku.into(),
            orderid: None,
            qty: None,
        })))
        .unwrap();
        // The SKU exactly, in ASCII: its non-ASCII characters as escapes.
        assert!(
            message
                .subject
                .starts_with("Out of stock for SKU T\\u{e9}l\\u{e9}\\u{1f600}xx"),
            "{}",
            message.subject
        );
        assert!(message.subject.len() < 100);
        assert!(message
            .subject
            .chars()
            .all(|c| c.is_ascii() && !c.is_control()));
    }
}
