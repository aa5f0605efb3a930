//! The republisher: publishes outbox events whose stream record was lost, and, on an operator's
//! request, a SKU's events of a time range again.
//!
//! - **Sweep** (the schedule's event, or `{"all": true}`): every outbox item still pending
//!   `grace` after its commit. The stream relay publishes and marks an item within seconds, so one
//!   still pending later had its stream record dropped (the relay's retries exhausted, the record
//!   too old, the mapping recreated) or its mark failed. Each is published, then marked published.
//! - **By SKU** (`{"sku": "...", "from": "<RFC 3339>", "to": "<RFC 3339>"}`, `from`/`to` optional):
//!   every outbox item of the SKU committed in the range, published or not, published again. The SKU
//!   must be a valid identifier.
//!
//! Any other payload (`{}` included: a full sweep is asked for explicitly) is refused with the two
//! shapes it may take, and publishes nothing.
//!
//! Consumers are idempotent by event id, so publishing an event twice is harmless; losing one is not.
//! Work stops before the invocation's deadline (the next run goes on); the answer says how far it got.
//! Events that failed to publish stay pending and make the invocation fail (the function's error
//! alarm), after the others were tried.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info, warn};

use super::metrics::InvocationMetrics;
use crate::domain::Sku;
use crate::service::{EventPublisher, OutboxItem, PublicationRecord};

/// The most items one invocation reads.
pub const MAX_ITEMS: usize = 1_000;

/// What is left of the invocation when no further event is started: one publish and one mark,
/// each bounded by the clients' operation timeout (3 s).
pub const MARGIN: Duration = Duration::from_secs(7);

/// The republisher's parts, built once per execution environment.
pub struct Republisher<P, O> {
    pub publisher: P,
    /// The outbox's publication record (the table's, deployed).
    pub outbox: O,
    /// How long after its commit a pending item counts as lost by the stream relay.
    pub grace: Duration,
}

/// An operator's request: the events of one SKU committed in a time range.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BySku {
    pub sku: Sku,
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
}

/// What one invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepublishReport {
    /// Items read (pending ones for a sweep; the SKU's range for a request by SKU).
    pub found: usize,
    pub published: usize,
    /// Could not be published: they stay pending.
    pub failed: usize,
    /// Items whose payload is not an event (left pending, logged as errors).
    pub unreadable: usize,
    /// False when the invocation stopped before the deadline or at `MAX_ITEMS` with items left:
    /// the next run (or the same request again) goes on.
    pub complete: bool,
}

/// The two shapes of a request, for the error that refuses any other.
const SHAPES: &str = "a republish request is {\"all\": true} (a sweep of every pending event) or \
     {\"sku\": \"...\", \"from\": \"<RFC 3339>\", \"to\": \"<RFC 3339>\"} (from and to optional)";

/// The request in an invocation's payload: `Some` for a request by SKU, `None` for a sweep (the
/// schedule's event, or `{"all": true}`). Anything else is refused.
pub fn request(payload: &Value) -> Result<Option<BySku>, String> {
    let scheduled = payload.get("source") == Some(&Value::from("aws.events"))
        && payload.get("detail-type") == Some(&Value::from("Scheduled Event"));
    if scheduled || *payload == serde_json::json!({"all": true}) {
        return Ok(None);
    }
    if payload.get("sku").is_none() {
        return Err(format!("{SHAPES}; got {payload}"));
    }
    let by_sku: BySku =
        serde_json::from_value(payload.clone()).map_err(|e| format!("{SHAPES}: {e}"))?;
    if let (Some(from), Some(to)) = (by_sku.from, by_sku.to) {
        if from > to {
            return Err(format!("from ({from}) is after to ({to})"));
        }
    }
    Ok(Some(by_sku))
}

/// The function `republish_events` runs.
pub async fn handle<P: EventPublisher, O: PublicationRecord>(
    republisher: &Republisher<P, O>,
    event: LambdaEvent<Value>,
) -> Result<RepublishReport, Error> {
    let (payload, context) = event.into_parts();
    // A context without a deadline (0: tests, emulators) sets no limit.
    let deadline = (context.deadline != 0).then(|| context.deadline());
    let now = Utc::now();
    let items = match request(&payload)? {
        None => {
            let cutoff = now - chrono::Duration::from_std(republisher.grace).unwrap_or_default();
            info!(created_before = %cutoff, "sweep: publishing the outbox items still pending");
            republisher
                .outbox
                .pending(cutoff.timestamp(), MAX_ITEMS + 1)
                .await?
        }
        Some(by_sku) => {
            let from = by_sku.from.map_or(0, |t| t.timestamp());
            let to = by_sku.to.map_or(now.timestamp(), |t| t.timestamp());
            info!(sku = %by_sku.sku, from, to, "publishing a SKU's events again");
            republisher
                .outbox
                .recorded(&by_sku.sku, from, to, MAX_ITEMS + 1)
                .await?
        }
    };
    let report = publish_all(republisher, items, deadline).await;
    InvocationMetrics {
        events_published: report.published as u64,
        ..InvocationMetrics::default()
    }
    .emit(&context);
    info!(
        found = report.found,
        published = report.published,
        failed = report.failed,
        unreadable = report.unreadable,
        complete = report.complete,
        "republish done"
    );
    if report.failed > 0 || report.unreadable > 0 {
        return Err(format!(
            "{} events could not be published and {} items could not be read; they stay pending: {}",
            report.failed,
            report.unreadable,
            serde_json::to_string(&report).unwrap_or_default()
        )
        .into());
    }
    Ok(report)
}

/// Publishes and marks each item in turn, while the deadline leaves room.
async fn publish_all<P: EventPublisher, O: PublicationRecord>(
    republisher: &Republisher<P, O>,
    mut items: Vec<OutboxItem>,
    deadline: Option<std::time::SystemTime>,
) -> RepublishReport {
    let more_than_max = items.len() > MAX_ITEMS;
    items.truncate(MAX_ITEMS);
    let mut report = RepublishReport {
        found: items.len(),
        complete: !more_than_max,
        ..RepublishReport::default()
    };
    for item in items {
        let left = deadline.map_or(Duration::MAX, |deadline| {
            deadline
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        });
        if left < MARGIN {
            warn!(
                left_ms = left.as_millis() as u64,
                "stopping before the deadline; the next run goes on"
            );
            report.complete = false;
            break;
        }
        let envelope = match item.envelope {
            Ok(envelope) => envelope,
            Err(error) => {
                error!(%error, pk = item.pk, sk = item.sk, "an outbox item is not an event");
                report.unreadable += 1;
                continue;
            }
        };
        match republisher.publisher.publish(&envelope).await {
            Ok(message_id) => {
                report.published += 1;
                info!(event_id = %envelope.id, event_type = envelope.event.type_name(),
                    correlation_id = envelope.correlation_id.as_deref().unwrap_or_default(),
                    sns_message_id = %message_id, "event published");
                let marked = republisher.outbox.mark_published(&item.pk, &item.sk).await;
                if let Err(error) = marked {
                    warn!(%error, event_id = %envelope.id, "cannot mark the event published: it stays pending");
                }
            }
            Err(error) => {
                report.failed += 1;
                error!(%error, event_id = %envelope.id, "event not published: it stays pending");
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sweep_is_asked_for_explicitly_or_by_the_schedule() {
        assert_eq!(request(&json!({"all": true})), Ok(None));
        let scheduled =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(request(&scheduled), Ok(None));
        for not_a_request in [
            json!({}),
            json!({"all": false}),
            json!({"all": true, "sku": "X"}),
            json!([]),
        ] {
            let error = request(&not_a_request).unwrap_err();
            assert!(
                error.starts_with("a republish request is"),
                "{not_a_request}: {error}"
            );
        }
    }

    #[test]
    fn a_request_by_sku_takes_an_optional_time_range() {
        assert_eq!(
            request(&json!({"sku": "LAMP"})),
            Ok(Some(BySku {
                sku: Sku::parse("LAMP").unwrap(),
                from: None,
                to: None
            }))
        );
        let ranged = request(
            &json!({"sku": "LAMP", "from": "2026-11-30T10:00:00Z", "to": "2026-11-30T12:00:00Z"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            ranged.from.unwrap().to_rfc3339(),
            "2026-11-30T10:00:00+00:00"
        );
    }

    #[test]
    fn a_malformed_request_is_refused_with_its_shape() {
        let error = request(&json!({"sku": "LAMP", "from": "yesterday"})).unwrap_err();
        assert!(error.contains("RFC 3339"), "{error}");
        assert!(request(&json!({"sku": "LAMP", "until": "x"})).is_err());
        let reversed =
            json!({"sku": "LAMP", "from": "2026-11-30T12:00:00Z", "to": "2026-11-30T10:00:00Z"});
        assert!(request(&reversed).unwrap_err().contains("after"));
        for bad_sku in [json!(""), json!("LAMP "), json!(7)] {
            assert!(request(&json!({"sku": bad_sku})).is_err(), "{bad_sku}");
        }
    }
}
