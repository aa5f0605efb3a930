//! Which notifications were sent, by event id: what makes the out-of-stock email idempotent when its
//! event is delivered again (a relay retry, a republish, a queue redelivery), or twice at once.
//!
//! One item per event: `pk = NOTIFIED#<event id>`, `sk = NOTIFIED`, `status` = `sending` (claimed, not
//! yet known to be sent) or `sent`; a `sending` claim holds until `claimed_until` (epoch seconds,
//! [`CLAIM_SECONDS`] after it was taken); the item expires 30 days later (`expires_at`), long after any
//! redelivery.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::errors::unavailable;
use super::keys::{ENTITY, EXPIRES_AT, PK, SK};
use crate::service::StoreError;

/// How long a notification's record is kept: 30 days.
pub const NOTIFIED_TTL_SECONDS: i64 = 30 * 24 * 60 * 60;

/// How long a claim holds: longer than a function may run (10 s, template.yaml), so a claim
/// expires only when its holder has surely stopped; shorter than the queue's visibility timeout
/// (60 s), so the redelivery of a record failed for a live claim finds it sent or expired.
pub const CLAIM_SECONDS: i64 = 30;

/// Until when a `sending` claim holds (epoch seconds).
const CLAIMED_UNTIL: &str = "claimed_until";
const SENDING: &str = "sending";
const SENT: &str = "sent";

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody claimed this event before: send.
    First,
    /// Claimed before, and the claim expired without the email known to be sent (its sender failed
    /// or stopped before marking it): send again (at least once).
    Unfinished,
    /// Another delivery holds a live claim: it is sending now. Send nothing; try again later.
    Held { until: i64 },
    /// Sent already: do nothing.
    AlreadySent,
}

/// The notification records of one table.
#[derive(Debug, Clone)]
pub struct NotificationLog {
    client: Client,
    table_name: String,
}

fn key(event_id: &str) -> [(String, AttributeValue); 2] {
    [
        (
            PK.to_owned(),
            AttributeValue::S(format!("NOTIFIED#{event_id}")),
        ),
        (SK.to_owned(), AttributeValue::S("NOTIFIED".to_owned())),
    ]
}

impl NotificationLog {
    pub fn new(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table_name: table_name.into(),
        }
    }

    /// Claims the notification of this event at `now` (epoch seconds): one conditional write that
    /// takes a new claim or an expired one, and otherwise says who has it.
    pub async fn claim(&self, event_id: &str, now: i64) -> Result<Claim, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .update_expression(
                "SET #entity = :entity, #event_id = :event_id, #status = :sending, \
                 #until = :until, #expires = :expires",
            )
            .condition_expression(
                "attribute_not_exists(#pk) OR (#status = :sending AND #until < :now)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_names("#event_id", "event_id")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#until", CLAIMED_UNTIL)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":entity", AttributeValue::S("notification".to_owned()))
            .expression_attribute_values(":event_id", AttributeValue::S(event_id.to_owned()))
            .expression_attribute_values(":sending", AttributeValue::S(SENDING.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(
                ":until",
                AttributeValue::N(now.saturating_add(CLAIM_SECONDS).to_string()),
            )
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(now.saturating_add(NOTIFIED_TTL_SECONDS).to_string()),
            )
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in key(event_id) {
            update = update.key(name, value);
        }
        match update.send().await {
            Ok(taken) => Ok(match taken.attributes() {
                Some(old) if !old.is_empty() => Claim::Unfinished,
                _ => Claim::First,
            }),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let item = failed.item();
                    let text = |name: &str| match item.and_then(|i| i.get(name)) {
                        Some(AttributeValue::S(text)) => Some(text.as_str()),
                        Some(AttributeValue::N(text)) => Some(text.as_str()),
                        _ => None,
                    };
                    Ok(match text("status") {
                        Some(SENT) => Claim::AlreadySent,
                        _ => Claim::Held {
                            until: text(CLAIMED_UNTIL)
                                .and_then(|until| until.parse().ok())
                                .unwrap_or(now),
                        },
                    })
                }
                _ => Err(unavailable("UpdateItem", &e)),
            },
        }
    }

    /// Records that the notification of this event was sent.
    pub async fn mark_sent(&self, event_id: &str) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .update_expression("SET #status = :sent")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sent", AttributeValue::S(SENT.to_owned()));
        for (name, value) in key(event_id) {
            update = update.key(name, value);
        }
        update
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("UpdateItem", &e))
    }
}
