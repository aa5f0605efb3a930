//! One out-of-stock email per event, whatever the timing: the notification claim on DynamoDB Local
//! (`adapters::dynamodb::notified`), and `notify_out_of_stock`'s bus with the email topic on moto.

use allocation::adapters::dynamodb::notified::CLAIM_SECONDS;
use allocation::adapters::dynamodb::{Claim, NotificationLog};
use allocation::domain::{Event, EventEnvelope, OutOfStock};
use allocation::entrypoints::lambda::init;
use allocation::service::ServiceError;
use std::sync::Arc;

use crate::support::contract::unique;
use crate::support::moto::moto;

#[tokio::test]
async fn a_claim_holds_until_it_expires_then_one_delivery_takes_it_over() {
    let moto = moto().await;
    let table = moto.create_table("claims").await;
    let log = NotificationLog::new(moto.dynamodb(), &table);
    let event = unique("LAMP:2:0");
    let now = 1_800_000_000;
    assert_eq!(log.claim(&event, now).await.unwrap(), Claim::First);
    let held = Claim::Held {
        until: now + CLAIM_SECONDS,
    };
    assert_eq!(log.claim(&event, now + 1).await.unwrap(), held);
    assert_eq!(log.claim(&event, now + CLAIM_SECONDS).await.unwrap(), held);
    // Expired: one delivery takes it over, and holds it in turn.
    let later = now + CLAIM_SECONDS + 1;
    assert_eq!(log.claim(&event, later).await.unwrap(), Claim::Unfinished);
    assert_eq!(
        log.claim(&event, later + 1).await.unwrap(),
        Claim::Held {
            until: later + CLAIM_SECONDS
        }
    );
    log.mark_sent(&event).await.unwrap();
    assert_eq!(
        log.claim(&event, later + 10 * CLAIM_SECONDS).await.unwrap(),
        Claim::AlreadySent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_deliveries_of_one_out_of_stock_at_once_send_one_email() {
    let moto = moto().await;
    let table = moto.create_table("notify").await;
    let topic = moto.create_topic("emails").await;
    // Two execution environments of notify_out_of_stock, each with its own clients.
    let first = Arc::new(init::notifier_app_over(moto.sdk_config(), &table, &topic));
    let second = Arc::new(init::notifier_app_over(moto.sdk_config(), &table, &topic));
    let runs = 5;
    let mut retried = 0;
    for run in 0..runs {
        let envelope = EventEnvelope {
            id: format!("LAMP-{run}:2:0"),
            correlation_id: None,
            occurred_at: None,
            event: Event::OutOfStock(OutOfStock {
                sku: Arc::from(format!("LAMP-{run}").as_str()),
                orderid: Some(Arc::from("order-1")),
                qty: Some(3),
            }),
        };
        let (a, b) = tokio::join!(
            first.bus.handle(&envelope, None),
            second.bus.handle(&envelope, None)
        );
        for outcome in [a, b] {
            match outcome {
                Ok(()) => {}
                // The live claim of the other: SQS offers this delivery again later.
                Err(ServiceError::Notification(e)) if e.0.contains("another delivery") => {
                    retried += 1;
                    first.bus.handle(&envelope, None).await.unwrap();
                }
                Err(other) => panic!("run {run}: {other}"),
            }
        }
    }
    let emails = moto.published_to(&topic);
    assert_eq!(emails.len(), runs, "one email per event: {emails:?}");
    let mut subjects: Vec<&str> = emails.iter().map(|(_, s)| s.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(subjects.len(), runs);
    println!(
        "{runs} events delivered twice at once: {runs} emails, {retried} deliveries retried later"
    );
}
