//! The relay recovers in minutes: after an outage, 10,000 committed events are pending (their stream
//! records' retries ran out), and the sweeper (`republish_events`, 60 s invocations as the template
//! gives it) publishes them all, each once, each SKU's in commit order. Prints the invocations and
//! `PublishBatch` calls it took (`docs/functions.md`, "Recovery after an outage").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::contract::unique;
use crate::support::dynamodb_local::bulk_put;
use crate::support::moto::moto;
use allocation::adapters::dynamodb::{items, DynamoDbOutbox};
use allocation::adapters::records::{outbox_slot, OutboxRecord};
use allocation::adapters::sns::SnsPublisher;
use allocation::domain::{AllocationRequired, Event, EventEnvelope};
use allocation::entrypoints::lambda::republish::{self, Republisher};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;

/// Events pending after the outage, over this many SKUs (10 versions each).
const EVENTS: usize = 10_000;
const SKUS: usize = 1_000;
/// The republisher's timeout in template.yaml.
const INVOCATION: Duration = Duration::from_secs(60);

fn event(sku: &str, version: u64) -> EventEnvelope {
    EventEnvelope {
        id: EventEnvelope::event_id(sku, version, 0),
        correlation_id: Some("outage-drill".into()),
        occurred_at: None,
        event: Event::AllocationRequired(AllocationRequired {
            orderid: Arc::from(format!("order-{version}").as_str()),
            sku: Arc::from(sku),
            qty: 1,
        }),
    }
}

/// Writes the pending outbox items as the store commits them, over the 10 minutes of an outage that
/// ended `ended` seconds ago (about 17 events a second, each SKU's versions in time order).
async fn pending_backlog(client: &aws_sdk_dynamodb::Client, table: &str, prefix: &str, ended: i64) {
    let outage = 600;
    let began = chrono::Utc::now().timestamp() - ended - outage;
    let backlog = (0..EVENTS)
        .map(|n| {
            let created_at = began + (n as i64 * outage) / EVENTS as i64;
            let sku = format!("{prefix}-{:04}", n % SKUS);
            let version = (n / SKUS) as u64 + 1;
            let record = OutboxRecord {
                sku: sku.clone(),
                version_number: version,
                slot: outbox_slot(0),
                envelope: event(&sku, version),
            };
            items::outbox_item(&record, created_at).unwrap()
        })
        .collect();
    bulk_put(client, table, backlog).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_events_pending_after_an_outage_are_all_published_once_in_order() {
    let moto = moto().await;
    let table = moto.create_table("drill").await;
    let topic = moto.create_topic("drill-events").await;
    let prefix = unique("SKU");
    pending_backlog(&moto.dynamodb(), &table, &prefix, 300).await;

    let republisher = Republisher {
        publisher: SnsPublisher::new(aws_sdk_sns::Client::new(moto.sdk_config()), &topic),
        outbox: DynamoDbOutbox::new(moto.dynamodb(), &table),
        grace: Duration::from_secs(300),
    };
    let started = Instant::now();
    let (mut invocations, mut calls, mut published) = (0, 0, 0);
    loop {
        invocations += 1;
        let mut context = Context::default();
        context.request_id = format!("sweep-{invocations}");
        let deadline = std::time::SystemTime::now() + INVOCATION;
        context.deadline = deadline
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let event = LambdaEvent::new(json!({"all": true}), context);
        let report = republish::handle(&republisher, event).await.unwrap();
        calls += report.publish_calls;
        published += report.published;
        if report.complete {
            break;
        }
        assert!(
            invocations < 20,
            "the sweeper makes no progress: {report:?}"
        );
    }
    let elapsed = started.elapsed();

    // Each event published once (no consumer sees anything twice), each SKU's in commit order.
    let sent = moto.published_to(&topic);
    assert_eq!(published, EVENTS);
    assert_eq!(sent.len(), EVENTS, "one publish per event");
    let mut versions: HashMap<String, Vec<u64>> = HashMap::new();
    for (message, _) in &sent {
        let envelope: EventEnvelope =
            serde_json::from_str(message["default"].as_str().unwrap()).unwrap();
        let (sku, version) = envelope
            .id
            .rsplit_once(':')
            .unwrap()
            .0
            .rsplit_once(':')
            .unwrap();
        versions
            .entry(sku.to_owned())
            .or_default()
            .push(version.parse().unwrap());
    }
    assert_eq!(versions.len(), SKUS);
    for (sku, seen) in &versions {
        assert_eq!(seen, &(1..=10).collect::<Vec<u64>>(), "{sku}: commit order");
    }
    let left = republisher
        .outbox
        .pending(chrono::Utc::now().timestamp(), 10)
        .await
        .unwrap();
    assert!(left.items.is_empty(), "nothing stays pending");
    println!(
        "outage drill: {EVENTS} pending events over {SKUS} SKUs published in {invocations} sweeper \
         invocation(s) and {calls} PublishBatch calls ({:.1} events per call), {:.1} s on moto and \
         DynamoDB Local ({:.0} events/s)",
        EVENTS as f64 / calls as f64,
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );
}
