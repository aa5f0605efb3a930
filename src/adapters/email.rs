//! The out-of-stock email on AWS: the `Notifications` port over an SNS topic with email
//! subscriptions, sent once per event id (`dynamodb::NotificationLog`).
//!
//! The events topic delivers `OutOfStock` to a queue; the `notify_out_of_stock` function hands each
//! to the bus, whose handler calls this notifier. A redelivered event (relay retry, republish, queue
//! redelivery) finds its record `sent` and sends nothing. A delivery that finds another's live claim
//! (the same event delivered twice at once) sends nothing and fails, so the queue offers it again
//! later. A claim left `sending` (the send or the mark failed, the function stopped) expires and is
//! sent again: at least once, and never twice at once.

use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::Client;
use chrono::Utc;
use tracing::info;

use super::dynamodb::{Claim, NotificationLog};
use super::sns::subject_line;
use crate::domain::EventEnvelope;
use crate::service::notifications::escaped;
use crate::service::notifications::NotifyFuture;
use crate::service::{out_of_stock_message, NotificationError, Notifications};

/// Sends each out-of-stock notification once, as plain text, to the email topic.
#[derive(Debug, Clone)]
pub struct EmailNotifications {
    client: Client,
    topic_arn: String,
    log: NotificationLog,
}

impl EmailNotifications {
    pub fn new(client: Client, topic_arn: impl Into<String>, log: NotificationLog) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
            log,
        }
    }

    async fn send_once(&self, envelope: &EventEnvelope) -> Result<(), NotificationError> {
        let failed =
            |what: String| NotificationError(format!("email for event {}: {what}", envelope.id));
        let claim = self
            .log
            .claim(&envelope.id, Utc::now().timestamp())
            .await
            .map_err(|e| failed(e.to_string()))?;
        match claim {
            Claim::AlreadySent => {
                info!(event_id = %envelope.id, "out-of-stock email already sent for this event");
                return Ok(());
            }
            // Another delivery of the same event is sending it right now: sending here too would
            // be a second email. Fail this delivery; the queue offers it again later, when the
            // claim is either marked sent or expired.
            Claim::Held { until } => {
                return Err(failed(format!(
                    "another delivery is sending it (claimed until {until}); try again later"
                )));
            }
            Claim::First | Claim::Unfinished => {}
        }
        let sku = envelope.event.sku();
        let output = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject_line(&format!(
                "Out of stock for SKU {}",
                escaped(sku)
            )))
            .message(out_of_stock_message(envelope))
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(&e).to_string()))?;
        self.log
            .mark_sent(&envelope.id)
            .await
            .map_err(|e| failed(e.to_string()))?;
        info!(event_id = %envelope.id, sku, again = (claim == Claim::Unfinished),
            sns_message_id = output.message_id().unwrap_or_default(),
            "email: Out of stock for SKU {sku}");
        Ok(())
    }
}

impl Notifications for EmailNotifications {
    fn out_of_stock<'a>(&'a self, envelope: &'a EventEnvelope) -> NotifyFuture<'a> {
        Box::pin(self.send_once(envelope))
    }
}
