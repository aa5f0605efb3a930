//! Which notifications were sent, by event id: what makes the out-of-stock email idempotent when its
//! event is delivered again (a relay retry, a republish, a queue redelivery).
//!
//! One item per event: `pk = NOTIFIED#<event id>`, `sk = NOTIFIED`, `status` = `sending` (claimed, not
//! yet known to be sent) or `sent`; it expires 30 days later (`expires_at`), long after any
//! redelivery.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::errors::unavailable;
use super::keys::{ENTITY, EXPIRES_AT, PK, SK};
use crate::service::StoreError;

/// How long a notification's record is kept: 30 days.
pub const NOTIFIED_TTL_SECONDS: i64 = 30 * 24 * 60 * 60;

const SENDING: &str = "sending";
const SENT: &str = "sent";

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody claimed this event before: send.
    First,
    /// Claimed before, but not known to be sent (the sender failed or stopped before marking it):
    /// send again (at least once).
    Unfinished,
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

    /// Claims the notification of this event at `now` (epoch seconds).
    pub async fn claim(&self, event_id: &str, now: i64) -> Result<Claim, StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table_name)
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .item(ENTITY, AttributeValue::S("notification".to_owned()))
            .item("event_id", AttributeValue::S(event_id.to_owned()))
            .item("status", AttributeValue::S(SENDING.to_owned()))
            .item(
                EXPIRES_AT,
                AttributeValue::N(now.saturating_add(NOTIFIED_TTL_SECONDS).to_string()),
            );
        for (name, value) in key(event_id) {
            put = put.item(name, value);
        }
        match put.send().await {
            Ok(_) => Ok(Claim::First),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.status(event_id).await
            }
            Err(e) => Err(unavailable("PutItem", &e)),
        }
    }

    /// The claim an existing record stands for.
    async fn status(&self, event_id: &str) -> Result<Claim, StoreError> {
        let mut get = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .consistent_read(true);
        for (name, value) in key(event_id) {
            get = get.key(name, value);
        }
        let item = get.send().await.map_err(|e| unavailable("GetItem", &e))?;
        Ok(match item.item().and_then(|item| item.get("status")) {
            Some(AttributeValue::S(status)) if status == SENT => Claim::AlreadySent,
            _ => Claim::Unfinished,
        })
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
