//! The whole cloud flow on DynamoDB Local and moto, through the function handlers the binaries run:
//! HTTP functions → DynamoDB (state + outbox, one transaction) → the table's stream, read with the
//! DynamoDB Streams API and filtered as the template's event source mapping filters it →
//! `publish_events` → SNS (subscriptions filtered on `event_type`) → SQS → `reallocate` → the line
//! is on the other batch (`GET /allocations` through `allocations`); and out of stock → an
//! `OutOfStock` message with the readable text reaches the topic's subscribers.
//!
//! Lambda's part (polling the stream and the queue, filtering, deleting handled messages) is played
//! by `cloud.rs` with the same APIs and the same event shapes.

use crate::support::moto::moto;
use crate::support::queues::observer_queue;
use allocation::adapters::sns::SnsPublisher;
use allocation::domain::{Event, EventEnvelope};
use allocation::entrypoints::lambda::sqs;
use allocation::service::{out_of_stock_message, OutboxAudit, ProductRepository};
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{json, Value};

const SKU: &str = "RED-CHAIR";

use crate::cloud::*;

#[tokio::test]
async fn a_shrunk_batch_sends_its_line_through_the_outbox_stream_topic_and_queue_to_the_other_batch(
) {
    let moto = moto().await;
    let mut cloud = Cloud::deploy(moto).await;

    // add batches → allocate → change quantity
    let in_stock = json!({"ref": "batch-now", "sku": SKU, "qty": 10, "eta": null});
    let later = json!({"ref": "batch-later", "sku": SKU, "qty": 10, "eta": "2031-01-01"});
    assert_eq!(
        cloud.http("POST", "/add_batch", Some(in_stock)).await.0,
        201
    );
    assert_eq!(cloud.http("POST", "/add_batch", Some(later)).await.0, 201);
    let (status, body) = cloud
        .http(
            "POST",
            "/allocate",
            Some(json!({"orderid": "order-1", "sku": SKU, "qty": 8})),
        )
        .await;
    assert_eq!((status, body), (201, json!({"batchref": "batch-now"})));
    let (status, _) = cloud
        .http(
            "POST",
            "/change_batch_quantity",
            Some(json!({"ref": "batch-now", "qty": 5})),
        )
        .await;
    assert_eq!(status, 200);

    // outbox items, committed with the state changes
    let outbox = cloud.store().outbox(SKU).await.unwrap();
    assert_eq!(outbox_types(&outbox), ["Allocated", "AllocationRequired"]);
    let product = cloud
        .store()
        .load(SKU, &["order-1"])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(product.allocation_of("order-1"), None, "deallocated");

    // stream → publish_events → SNS: only the outbox inserts pass the template's filter
    let (read, relayed) = cloud.relay_outbox().await;
    assert_eq!(relayed, 2, "the two outbox inserts, and no other item");
    assert!(
        read > relayed,
        "the stream also carries the state items ({read} records)"
    );
    let published = moto.published_to(cloud.publisher.topic_arn());
    assert_eq!(published.len(), 2);
    let subjects: Vec<&str> = published.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("Allocated for SKU {SKU}"),
            format!("AllocationRequired for SKU {SKU}")
        ]
    );

    // SNS → SQS (filter: AllocationRequired only) → reallocate
    assert_eq!(cloud.run_reallocate().await, (1, 0));
    assert!(
        receive(moto, &cloud.reallocation_queue.url, 10)
            .await
            .is_empty(),
        "the handled message was deleted, and Allocated was filtered out"
    );
    assert!(receive(moto, &cloud.notifier_queue.url, 10)
        .await
        .is_empty());

    // the line ends on the other batch
    let (status, body) = cloud.http("GET", "/allocations/order-1", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!([{"sku": SKU, "batchref": "batch-later"}]));
    let product = cloud
        .store()
        .load(SKU, &["order-1"])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(product.batch("batch-now").unwrap().available_quantity(), 5);
    assert_eq!(
        product.batch("batch-later").unwrap().available_quantity(),
        2
    );

    // a redelivery of the same message (at-least-once) changes nothing
    let outbox = cloud.store().outbox(SKU).await.unwrap();
    let required = outbox
        .iter()
        .find(|e| matches!(e.event, Event::AllocationRequired(_)))
        .unwrap();
    let record = json!({
        "messageId": "redelivered", "receiptHandle": "r", "attributes": {}, "messageAttributes": {},
        "body": serde_json::to_string(required).unwrap(), "eventSource": "aws:sqs",
    });
    let event: SqsEvent = serde_json::from_value(json!({ "Records": [record] })).unwrap();
    let response = sqs::handle(&cloud.app, invocation(event)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let again = cloud
        .store()
        .load(SKU, &["order-1"])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.version_number(), product.version_number());

    // the reallocation's own Allocated event goes out too, and nothing comes back to the queue
    assert_eq!(cloud.relay_outbox().await.1, 1);
    assert_eq!(cloud.run_reallocate().await, (0, 0));
}

#[tokio::test]
async fn a_line_no_batch_can_take_waits_and_is_allocated_when_stock_arrives() {
    let moto = moto().await;
    let mut cloud = Cloud::deploy(moto).await;
    let only = json!({"ref": "batch-only", "sku": SKU, "qty": 10, "eta": null});
    assert_eq!(cloud.http("POST", "/add_batch", Some(only)).await.0, 201);
    let order = json!({"orderid": "order-1", "sku": SKU, "qty": 8});
    assert_eq!(cloud.http("POST", "/allocate", Some(order)).await.0, 201);
    let shrink = json!({"ref": "batch-only", "qty": 5});
    assert_eq!(
        cloud
            .http("POST", "/change_batch_quantity", Some(shrink))
            .await
            .0,
        200
    );
    // The shrink keeps the line, waiting; its reallocation finds no stock (it keeps waiting, and
    // the stock-out begins).
    let waiting = json!([{"sku": SKU, "batchref": null}]);
    assert_eq!(
        cloud.http("GET", "/allocations/order-1", None).await,
        (200, waiting.clone())
    );
    assert_eq!(cloud.relay_outbox().await.1, 2);
    assert_eq!(cloud.run_reallocate().await, (1, 0));
    assert_eq!(
        cloud.http("GET", "/allocations/order-1", None).await,
        (200, waiting)
    );
    // A client's allocation without stock: 409, nothing stored, no second OutOfStock.
    let refused = json!({"orderid": "order-2", "sku": SKU, "qty": 8});
    assert_eq!(cloud.http("POST", "/allocate", Some(refused)).await.0, 409);
    assert_eq!(cloud.http("GET", "/allocations/order-2", None).await.0, 404);
    assert_eq!(
        cloud.relay_outbox().await.1,
        1,
        "the episode's one OutOfStock"
    );
    assert_eq!(cloud.run_notifier().await, (1, 0));
    assert_eq!(
        moto.published_to(&cloud.email_topic_arn).len(),
        1,
        "one email"
    );

    // Stock arrives: the waiting line is offered, relayed, and reallocated in its own transaction.
    let more = json!({"ref": "batch-more", "sku": SKU, "qty": 10, "eta": null});
    assert_eq!(cloud.http("POST", "/add_batch", Some(more)).await.0, 201);
    assert_eq!(cloud.relay_outbox().await.1, 1, "its AllocationRequired");
    assert_eq!(cloud.run_reallocate().await, (1, 0));
    assert_eq!(
        cloud.http("GET", "/allocations/order-1", None).await,
        (200, json!([{"sku": SKU, "batchref": "batch-more"}]))
    );
    assert_eq!(cloud.relay_outbox().await.1, 1, "its Allocated");
    assert_eq!(cloud.run_reallocate().await, (0, 0));
}

/// The failure drill: publishing fails for a while (the topic is missing), the relay's stream records
/// are dropped as the event source mapping drops them once its retries run out, then publishing comes
/// back: the republisher publishes every committed event, none missing, to an observer subscribed to
/// the topic; items are marked as they are published, so a second sweep publishes nothing.
#[tokio::test]
async fn events_whose_stream_records_were_dropped_are_published_by_the_republisher() {
    let moto = moto().await;
    let mut cloud = Cloud::deploy(moto).await;
    let observer = observer_queue(moto, cloud.publisher.topic_arn()).await;
    for (reference, qty) in [("batch-a", 10), ("batch-b", 4)] {
        let batch = json!({"ref": reference, "sku": SKU, "qty": qty, "eta": null});
        assert_eq!(cloud.http("POST", "/add_batch", Some(batch)).await.0, 201);
    }
    for (order, qty) in [("order-1", 6), ("order-2", 4), ("order-3", 9)] {
        let line = json!({"orderid": order, "sku": SKU, "qty": qty});
        cloud.http("POST", "/allocate", Some(line)).await;
    }
    let shrink = json!({"ref": "batch-a", "qty": 5});
    assert_eq!(
        cloud
            .http("POST", "/change_batch_quantity", Some(shrink))
            .await
            .0,
        200
    );
    let committed: Vec<String> = cloud
        .store()
        .outbox(SKU)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        committed.len(),
        5,
        "2 Allocated, 1 OutOfStock, 2 AllocationRequired"
    );

    // The topic is gone: every relay invocation fails at its first record, and the records are
    // dropped after the mapping's retries.
    let sns = aws_sdk_sns::Client::new(moto.sdk_config());
    let broken = SnsPublisher::new(sns, "arn:aws:sns:us-east-1:123456789012:deleted-topic");
    let (_, passed, failed) = cloud.relay_with(&broken).await;
    assert_eq!(passed, 5);
    assert_eq!(failed.len(), 1, "the batch stops at its first failure");
    // The schedule's sweep fails too while the topic is gone: the invocation errs (the alarm), the
    // events stay pending.
    let outage = cloud
        .republish_with(&broken, json!({"all": true}))
        .await
        .unwrap_err();
    assert!(
        outage.contains("events not published: 1 failed")
            && outage.contains(r#""found":5,"published":0"#),
        "{outage}"
    );
    assert!(drain_event_ids(moto, &observer.url).await.is_empty());

    // Publishing is back. The schedule's sweep publishes every committed event, none missing.
    let report = cloud.republish(json!({"all": true})).await.unwrap();
    assert_eq!((report.found, report.published, report.failed), (5, 5, 0));
    let mut delivered = drain_event_ids(moto, &observer.url).await;
    delivered.sort();
    let mut expected = committed.clone();
    expected.sort();
    assert_eq!(delivered, expected, "every committed event, once");
    assert_eq!(
        cloud.republish(json!({"all": true})).await.unwrap().found,
        0
    );

    // New events go through the relay as usual, which marks them: the sweep has nothing to do.
    let reallocated = cloud.run_reallocate().await;
    assert_eq!(
        reallocated,
        (2, 0),
        "the AllocationRequired events the sweep published"
    );
    let (_, relayed) = cloud.relay_outbox().await;
    assert!(relayed >= 1);
    assert_eq!(drain_event_ids(moto, &observer.url).await.len(), relayed);
    assert_eq!(
        cloud.republish(json!({"all": true})).await.unwrap().found,
        0
    );

    // An operator republishes the SKU's events of a time range: all of them again (consumers are
    // idempotent by event id); a malformed request is refused and publishes nothing.
    let all = cloud.store().outbox(SKU).await.unwrap().len();
    let report = cloud
        .republish(json!({"sku": SKU, "from": "2020-01-01T00:00:00Z"}))
        .await
        .unwrap();
    assert_eq!((report.found, report.published), (all, all));
    assert_eq!(drain_event_ids(moto, &observer.url).await.len(), all);
    let future = cloud
        .republish(json!({"sku": SKU, "from": "2100-01-01T00:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(future.found, 0);
    let refused = cloud
        .republish(json!({"sku": SKU, "from": "last week"}))
        .await;
    assert!(refused.unwrap_err().contains("RFC 3339"));
    // A full sweep is asked for explicitly: an empty payload, or an invalid SKU, publishes nothing.
    for not_a_request in [json!({}), json!({"sku": " SMALL-TABLE"})] {
        let refused = cloud.republish(not_a_request).await.unwrap_err();
        assert!(refused.starts_with("a republish request is"), "{refused}");
    }
    assert!(drain_event_ids(moto, &observer.url).await.is_empty());
}

#[tokio::test]
async fn out_of_stock_reaches_the_topic_with_a_readable_text() {
    let moto = moto().await;
    let mut cloud = Cloud::deploy(moto).await;
    let batch = json!({"ref": "batch-small", "sku": SKU, "qty": 2, "eta": null});
    assert_eq!(cloud.http("POST", "/add_batch", Some(batch)).await.0, 201);
    let (status, body) = cloud
        .http(
            "POST",
            "/allocate",
            Some(json!({"orderid": "order-9", "sku": SKU, "qty": 5})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"message": format!("Out of stock for sku {SKU}")})
    );
    let outbox = cloud.store().outbox(SKU).await.unwrap();
    assert_eq!(outbox_types(&outbox), ["OutOfStock"]);

    assert_eq!(cloud.relay_outbox().await.1, 1);

    // the events topic's OutOfStock goes to the notifier's queue, with the event JSON
    let envelope: EventEnvelope = {
        let messages = receive(moto, &cloud.notifier_queue.url, 10).await;
        assert_eq!(messages.len(), 1, "one OutOfStock on the notifier's queue");
        let envelope = serde_json::from_str(messages[0].body().unwrap()).unwrap();
        // back on the queue for the notifier (as if its visibility timeout had passed)
        aws_sdk_sqs::Client::new(moto.sdk_config())
            .change_message_visibility()
            .queue_url(&cloud.notifier_queue.url)
            .receipt_handle(messages[0].receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        envelope
    };
    assert_eq!(envelope, outbox[0], "an SQS subscriber gets the event JSON");
    assert!(
        envelope.correlation_id.is_some(),
        "the API request id travels with the event"
    );
    assert_eq!(cloud.run_notifier().await, (1, 0));

    // the email topic got one plain-text email: which SKU, since when, the line, the event id
    let emails = moto.published_to(&cloud.email_topic_arn);
    assert_eq!(emails.len(), 1);
    let (text, subject) = &emails[0];
    assert_eq!(text, &Value::String(out_of_stock_message(&outbox[0])));
    let text = text.as_str().unwrap();
    assert!(
        text.contains(&format!("Event id: {}\n", outbox[0].id)),
        "{text}"
    );
    assert!(
        text.contains("Order line turned away: order order-9, quantity 5."),
        "{text}"
    );
    assert_eq!(subject, &format!("Out of stock for SKU {SKU}"));
    let messages = receive(moto, &cloud.email_queue.url, 10).await;
    assert_eq!(messages.len(), 1, "the email subscriber's copy");
    let notification: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(
        notification["Subject"],
        format!("Out of stock for SKU {SKU}")
    );

    // delivered again (a relay retry, a republish, a redelivery): no second email
    let again = json!({
        "messageId": "redelivered", "receiptHandle": "r", "attributes": {}, "messageAttributes": {},
        "body": serde_json::to_string(&outbox[0]).unwrap(), "eventSource": "aws:sqs",
    });
    let event: SqsEvent = serde_json::from_value(json!({ "Records": [again] })).unwrap();
    let response = sqs::handle(&cloud.notifier, invocation(event))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        cloud
            .republish(json!({"sku": SKU}))
            .await
            .unwrap()
            .published,
        1
    );
    assert_eq!(cloud.relay_outbox().await.1, 0);
    assert_eq!(
        cloud.run_notifier().await,
        (1, 0),
        "the republished copy, handled"
    );
    assert_eq!(
        moto.published_to(&cloud.email_topic_arn).len(),
        1,
        "one email per event"
    );

    // the events topic's own message keeps its readable `email` document too
    let published = moto.published_to(cloud.publisher.topic_arn());
    let (document, _) = &published[0];
    assert_eq!(
        document["email"].as_str().unwrap(),
        out_of_stock_message(&outbox[0])
    );

    // and the reallocation queue's filter keeps it out
    assert!(receive(moto, &cloud.reallocation_queue.url, 10)
        .await
        .is_empty());
}
