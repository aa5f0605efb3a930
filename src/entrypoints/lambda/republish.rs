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
//! Events go in `PublishBatch` calls of up to 10, [`PARALLEL_CALLS`] at once, keeping each SKU's
//! commit order (`service::publish_in_order`). A sweep reads pages of [`PAGE_ITEMS`] pending items,
//! the shards of the `pending` index in turn, publishes and marks each page, and goes on until none
//! is left or the invocation's deadline is near (the next run goes on); the answer says how far it
//! got. A page with a failure ends the sweep (the topic is still failing): those events stay pending
//! and make the invocation fail (the function's error alarm).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;

use chrono::{DateTime, Utc};
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info, warn};

use super::metrics::InvocationMetrics;
use crate::domain::EventEnvelope;
use crate::domain::Sku;
use crate::service::{
    publish_in_order, EventPublisher, OutboxItem, Publication, PublicationRecord,
};

/// The most items one request by SKU reads (narrow the range for more).
pub const MAX_ITEMS: usize = 1_000;

/// Pending items one page of a sweep reads, over all the shards of the `pending` index.
pub const PAGE_ITEMS: usize = 1_000;

/// `PublishBatch` calls at once: 80 events per round.
pub const PARALLEL_CALLS: usize = 8;

/// What is left of the invocation when no further round is started: one round of publish calls
/// and one of marks, each bounded by the clients' operation timeout (3 s).
pub const MARGIN: Duration = Duration::from_secs(7);

/// How many times in a row a sweep reads a page holding only items it published already (the index
/// not yet showing their marks) before it stops.
const STALE_PAGES: u32 = 3;

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
    /// `PublishBatch` calls made.
    pub publish_calls: usize,
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
    let time_left = move || {
        deadline.map_or(Duration::MAX, |deadline| {
            deadline
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        })
    };
    let now = Utc::now();
    let mut report = RepublishReport::default();
    match request(&payload)? {
        None => {
            let cutoff = now - chrono::Duration::from_std(republisher.grace).unwrap_or_default();
            info!(created_before = %cutoff, "sweep: publishing the outbox items still pending");
            sweep(republisher, cutoff.timestamp(), &time_left, &mut report).await?;
        }
        Some(by_sku) => {
            let from = by_sku.from.map_or(0, |t| t.timestamp());
            let to = by_sku.to.map_or(now.timestamp(), |t| t.timestamp());
            info!(sku = %by_sku.sku, from, to, "publishing a SKU's events again");
            let mut items = republisher
                .outbox
                .recorded(&by_sku.sku, from, to, MAX_ITEMS + 1)
                .await?;
            report.complete = items.len() <= MAX_ITEMS;
            items.truncate(MAX_ITEMS);
            report.found = items.len();
            report.complete &= publish_page(republisher, items, &time_left, &mut report).await;
        }
    }
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
        publish_calls = report.publish_calls,
        "republish done"
    );
    if report.failed > 0 || report.unreadable > 0 {
        return Err(format!(
            "events not published: {} failed, and {} items could not be read; they and the later \
             events of their SKUs stay pending: {}",
            report.failed,
            report.unreadable,
            serde_json::to_string(&report).unwrap_or_default()
        )
        .into());
    }
    Ok(report)
}

/// Publishes pages of pending items until none is left, a page fails, or time runs short.
async fn sweep<P: EventPublisher, O: PublicationRecord>(
    republisher: &Republisher<P, O>,
    created_before: i64,
    time_left: &impl Fn() -> Duration,
    report: &mut RepublishReport,
) -> Result<(), Error> {
    // Items published by this invocation: the index may show them a moment after their marks.
    let mut done: HashSet<(String, String)> = HashSet::new();
    let mut stale_pages = 0;
    loop {
        if time_left() < MARGIN {
            warn!(
                left_ms = time_left().as_millis() as u64,
                "stopping before the deadline; the next run goes on"
            );
            return Ok(());
        }
        let page = republisher
            .outbox
            .pending(created_before, PAGE_ITEMS)
            .await?;
        if page.items.is_empty() {
            report.complete = true;
            return Ok(());
        }
        // Only what the page holds completely: a later item may have an earlier event of its SKU
        // still unread (the next page reads it first).
        let through = page.complete_through;
        let fresh: Vec<OutboxItem> = page
            .items
            .into_iter()
            .filter(|item| through.is_none_or(|through| item.created_at <= through))
            .filter(|item| !done.contains(&(item.pk.clone(), item.sk.clone())))
            .collect();
        if fresh.is_empty() {
            stale_pages += 1;
            if stale_pages >= STALE_PAGES {
                warn!("the pending index still shows only items this sweep published; stopping");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        stale_pages = 0;
        done.extend(fresh.iter().map(|item| (item.pk.clone(), item.sk.clone())));
        report.found += fresh.len();
        if !publish_page(republisher, fresh, time_left, report).await {
            return Ok(());
        }
    }
}

/// Publishes a page of items in each SKU's commit order, then marks the published ones. Answers
/// whether every event of it was published (none failed, none left for lack of time); an unreadable
/// item is counted (the invocation fails at the end) but does not stop the sweep.
async fn publish_page<P: EventPublisher, O: PublicationRecord>(
    republisher: &Republisher<P, O>,
    mut items: Vec<OutboxItem>,
    time_left: &impl Fn() -> Duration,
    report: &mut RepublishReport,
) -> bool {
    // Outbox keys sort each SKU's events in commit order (`OUTBOX#<sku>`, `<version>#<slot>`).
    items.sort_by(|a, b| (&a.pk, &a.sk).cmp(&(&b.pk, &b.sk)));
    let mut readable = Vec::with_capacity(items.len());
    for item in &items {
        match &item.envelope {
            Ok(envelope) => readable.push((item, envelope)),
            Err(error) => {
                error!(%error, pk = item.pk, sk = item.sk, "an outbox item is not an event");
                report.unreadable += 1;
            }
        }
    }
    let envelopes: Vec<&EventEnvelope> = readable.iter().map(|(_, e)| *e).collect();
    let keep_going = || time_left() >= MARGIN;
    let (outcomes, calls) = publish_in_order(
        &republisher.publisher,
        &envelopes,
        PARALLEL_CALLS,
        keep_going,
    )
    .await;
    report.publish_calls += calls;
    let mut all_published = true;
    let mut published = Vec::new();
    for ((item, envelope), outcome) in readable.iter().zip(outcomes) {
        match outcome {
            Publication::Published(message_id) => {
                info!(event_id = %envelope.id, event_type = envelope.event.type_name(),
                    correlation_id = envelope.correlation_id.as_deref().unwrap_or_default(),
                    sns_message_id = %message_id, "event published");
                published.push(*item);
            }
            Publication::Failed(error) => {
                report.failed += 1;
                all_published = false;
                error!(%error, event_id = %envelope.id, "event not published: it stays pending");
            }
            Publication::NotTried => all_published = false,
        }
    }
    report.published += published.len();
    for marks in published.chunks(MARKS_AT_ONCE) {
        let marked = join_all(
            marks
                .iter()
                .map(|item| republisher.outbox.mark_published(&item.pk, &item.sk)),
        )
        .await;
        for (item, marked) in marks.iter().zip(marked) {
            if let Err(error) = marked {
                warn!(%error, pk = item.pk, sk = item.sk, "cannot mark the event published: it stays pending");
            }
        }
    }
    all_published
}

/// Marks written at once.
const MARKS_AT_ONCE: usize = 50;

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
