//! The Lambda adapters (API Gateway, SQS, DynamoDB Streams) on the in-memory store, with events
//! derived from the files of `events/`: what each adapter must do beyond the shared HTTP contract.

use allocation::domain::{AllocationRequired, OutOfStock};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::memory_store::InMemoryStore;
use allocation::domain::{Event, EventEnvelope};
use allocation::entrypoints::lambda::{http, sqs, streams};
use allocation::service::{
    deployed_app, AllocationsView, App, EventPublisher, OutboxAudit, ProductRepository,
    PublishError, PublishedMarks, RecordsRead, Store, StoreError,
};
use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use lambda_http::{Body, RequestExt};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

pub(crate) fn sample(file: &str) -> Value {
    let path = format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub(crate) fn app() -> (Arc<InMemoryStore>, App<InMemoryStore>) {
    let store = Arc::new(InMemoryStore::new());
    (Arc::clone(&store), deployed_app(store))
}

pub(crate) fn context(request_id: &str) -> Context {
    let mut context = Context::default();
    context.request_id = request_id.to_owned();
    context
}

/// An API Gateway event: `file` with this method, raw path and body.
fn http_event(method: &str, path: &str, body: Option<&str>) -> Value {
    let mut event = sample("add_batch.json");
    event["routeKey"] = json!(format!("{method} {path}"));
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, |b| json!(b));
    event
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: lambda_http::http::HeaderMap,
    pub(crate) body: Value,
}

pub(crate) async fn call_http<S: Store>(app: &App<S>, event: &Value) -> Answer {
    let request = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event");
    answer(app, request).await
}

async fn answer<S: Store>(app: &App<S>, request: lambda_http::Request) -> Answer {
    let response = http::handle(app, request).await.unwrap();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("a JSON body"),
        other => panic!("expected a text body, got {other:?}"),
    };
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body,
    }
}

pub(crate) fn add_batch(reference: &str, sku: &str, qty: u32) -> Value {
    http_event(
        "POST",
        "/add_batch",
        Some(&json!({"ref": reference, "sku": sku, "qty": qty, "eta": null}).to_string()),
    )
}

pub(crate) fn allocate(orderid: &str, sku: &str, qty: u32) -> Value {
    http_event(
        "POST",
        "/allocate",
        Some(&json!({"orderid": orderid, "sku": sku, "qty": qty}).to_string()),
    )
}

#[tokio::test]
async fn http_requests_go_through_the_contract_and_answer_json() {
    let (_, app) = app();
    let created = call_http(&app, &sample("add_batch.json")).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.headers["content-type"], "application/json");
    let allocated = call_http(&app, &sample("allocate.json")).await;
    assert_eq!(allocated.status, 201);
    assert_eq!(allocated.body, json!({"batchref": "batch-001"}));
    let listed = call_http(&app, &sample("allocations.json")).await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.body,
        json!([{"sku": "SMALL-TABLE", "batchref": "batch-001"}])
    );
}

#[tokio::test]
async fn a_base64_body_is_decoded() {
    let (_, app) = app();
    let mut event = add_batch("b1", "LAMP", 10);
    event["body"] = json!(BASE64.encode(event["body"].as_str().unwrap().as_bytes()));
    event["isBase64Encoded"] = json!(true);
    assert_eq!(call_http(&app, &event).await.status, 201);
    let allocated = call_http(&app, &allocate("o1", "LAMP", 1)).await;
    assert_eq!(allocated.body, json!({"batchref": "b1"}));
}

#[tokio::test]
async fn a_named_stage_in_the_raw_path_is_not_part_of_the_route() {
    let (_, app) = app();
    let mut event = add_batch("b1", "LAMP", 10);
    event["rawPath"] = json!("/prod/add_batch");
    event["requestContext"]["stage"] = json!("prod");
    assert_eq!(call_http(&app, &event).await.status, 201);
}

#[tokio::test]
async fn errors_of_the_contract_pass_through_with_their_headers() {
    let (_, app) = app();
    let wrong_method = call_http(&app, &http_event("GET", "/add_batch", None)).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "POST");
    assert_eq!(wrong_method.headers["content-type"], "application/json");
    assert!(wrong_method.body["message"].is_string());
    let unknown = call_http(&app, &http_event("POST", "/nowhere", Some("{}"))).await;
    assert_eq!(unknown.status, 404);
    let bad = call_http(&app, &sample("add_batch_bad_input.json")).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body["message"].as_str().unwrap().contains("qty"));
    let mut no_content_type = add_batch("b1", "LAMP", 10);
    no_content_type["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-type");
    assert_eq!(call_http(&app, &no_content_type).await.status, 400);
}

#[tokio::test]
async fn the_api_gateway_request_id_becomes_the_events_correlation_id() {
    let (store, app) = app();
    assert_eq!(
        call_http(&app, &add_batch("b1", "LAMP", 1)).await.status,
        201
    );
    let mut event = allocate("o1", "LAMP", 5);
    event["requestContext"]["requestId"] = json!("api-request-7");
    assert_eq!(call_http(&app, &event).await.status, 409);
    let outbox = store.outbox("LAMP").await.unwrap();
    let out_of_stock = outbox
        .iter()
        .find(|e| matches!(e.event, Event::OutOfStock(_)))
        .expect("an OutOfStock event");
    assert_eq!(
        out_of_stock.correlation_id.as_deref(),
        Some("api-request-7")
    );
}

#[tokio::test]
async fn without_an_api_gateway_request_id_the_lambda_request_id_correlates() {
    let (store, app) = app();
    assert_eq!(
        call_http(&app, &add_batch("b1", "LAMP", 1)).await.status,
        201
    );
    let mut event = allocate("o1", "LAMP", 5);
    event["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("requestId");
    let request = lambda_http::request::from_str(&event.to_string())
        .unwrap()
        .with_lambda_context(context("lambda-request-9"));
    assert_eq!(answer(&app, request).await.status, 409);
    let outbox = store.outbox("LAMP").await.unwrap();
    assert_eq!(
        outbox.last().unwrap().correlation_id.as_deref(),
        Some("lambda-request-9")
    );
}

// ------------------------------------------------------------------------------------------- SQS

fn sqs_event(bodies: &[Option<&str>]) -> LambdaEvent<SqsEvent> {
    let template = sample("reallocate.json")["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(format!("m{i}"));
            record["body"] = body.map_or(Value::Null, |b| json!(b));
            record
        })
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    LambdaEvent::new(event, context("sqs-invocation"))
}

fn allocation_required(id: &str, orderid: &str, sku: &str, qty: u32) -> String {
    serde_json::to_string(&EventEnvelope {
        id: id.into(),
        correlation_id: Some("req-1".into()),
        occurred_at: None,
        event: Event::AllocationRequired(AllocationRequired {
            orderid: orderid.into(),
            sku: sku.into(),
            qty,
        }),
    })
    .unwrap()
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_failing_message_does_not_fail_the_others() {
    let (store, app) = app();
    assert_eq!(
        call_http(&app, &add_batch("b1", "LAMP", 10)).await.status,
        201
    );
    let good = allocation_required("LAMP:9:0", "o1", "LAMP", 2);
    let unknown_sku = allocation_required("NOPE:9:0", "o2", "NOPE", 2);
    let event = sqs_event(&[
        Some(&good),
        Some("{not json"),
        Some(&unknown_sku),
        None,
        Some(r#"{"type":"Unheard","id":"x"}"#),
    ]);
    let response = serde_json::to_value(sqs::handle(&app, event).await.unwrap()).unwrap();
    assert_eq!(failures(&response), ["m1", "m2", "m3", "m4"]);
    let views = store.allocations_for_order("o1").await.unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].batchref.as_deref(), Some("b1"));
}

#[tokio::test]
async fn a_redelivered_message_changes_nothing() {
    let (store, app) = app();
    assert_eq!(
        call_http(&app, &add_batch("b1", "LAMP", 10)).await.status,
        201
    );
    let message = allocation_required("LAMP:9:0", "o1", "LAMP", 4);
    for _ in 0..2 {
        let response = sqs::handle(&app, sqs_event(&[Some(&message)]))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    let product = store.load("LAMP", &[]).await.unwrap().unwrap();
    assert_eq!(product.batches()[0].available_quantity(), 6);
}

#[tokio::test]
async fn the_reallocations_of_a_batch_are_applied_together_one_commit_per_sku() {
    let (store, app) = app();
    for (reference, sku) in [("b1", "LAMP"), ("b2", "DESK")] {
        assert_eq!(
            call_http(&app, &add_batch(reference, sku, 50)).await.status,
            201
        );
    }
    let messages = [
        allocation_required("LAMP:9:0", "o1", "LAMP", 1),
        allocation_required("DESK:4:0", "o2", "DESK", 2),
        allocation_required("LAMP:9:1", "o3", "LAMP", 3),
        allocation_required("LAMP:9:2", "o4", "LAMP", 200),
        allocation_required("LAMP:9:0", "o1", "LAMP", 1),
    ];
    let bodies: Vec<Option<&str>> = messages.iter().map(|m| Some(m.as_str())).collect();
    let read_before = store.records_read();
    let response = sqs::handle(&app, sqs_event(&bodies)).await.unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "out of stock (o4) is not a failure; the redelivered o1 changes nothing"
    );
    let groups = app
        .bus
        .stats()
        .allocation_groups
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(groups, 2, "one group per SKU");
    // One load per group: the product and batch records (no line of these orders existed).
    assert_eq!(store.records_read() - read_before, 4);
    // One commit for LAMP: both allocations and the refusal that began the stock-out (o4 waits)
    // carry its one new version (1 + 3).
    let ids: Vec<String> = store
        .outbox("LAMP")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["LAMP:4:0", "LAMP:4:1", "LAMP:4:2"]);
    let product = store.load("LAMP", &["o1", "o3"]).await.unwrap().unwrap();
    assert_eq!(product.batches()[0].allocated_quantity(), 4);
}

#[tokio::test]
async fn no_record_is_started_that_could_not_end_before_the_invocation_s_deadline() {
    let (store, app) = app();
    assert_eq!(
        call_http(&app, &add_batch("b1", "LAMP", 10)).await.status,
        201
    );
    let now_ms = |offset: Duration| {
        u64::try_from(
            (SystemTime::now() + offset)
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    let messages = [
        allocation_required("LAMP:9:0", "o1", "LAMP", 1),
        r#"{"type":"Allocated","id":"LAMP:8:0","orderid":"o0","sku":"LAMP","qty":1,"batchref":"b1"}"#
            .to_owned(),
    ];
    let bodies: Vec<Option<&str>> = messages.iter().map(|m| Some(m.as_str())).collect();

    // One second left: less than the bus's retry budget (3 s) and the margin.
    let mut event = sqs_event(&bodies);
    event.context.deadline = now_ms(Duration::from_secs(1));
    let response = serde_json::to_value(sqs::handle(&app, event).await.unwrap()).unwrap();
    assert_eq!(
        failures(&response),
        ["m0", "m1"],
        "both left for the queue to redeliver"
    );
    assert!(
        store.allocations_for_order("o1").await.unwrap().is_empty(),
        "nothing started"
    );

    // Ten seconds left: everything runs.
    let mut event = sqs_event(&bodies);
    event.context.deadline = now_ms(Duration::from_secs(10));
    let response = serde_json::to_value(sqs::handle(&app, event).await.unwrap()).unwrap();
    assert!(failures(&response).is_empty());
    assert_eq!(store.allocations_for_order("o1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_sample_sqs_event_fails_both_records_on_an_empty_store() {
    let (_, app) = app();
    let event: SqsEvent = serde_json::from_value(sample("reallocate.json")).unwrap();
    let response = sqs::handle(&app, LambdaEvent::new(event, context("r")))
        .await
        .unwrap();
    assert_eq!(
        failures(&serde_json::to_value(response).unwrap()),
        [
            "059f36b4-87a3-44ab-83d2-661975830a7d",
            "2e1424d4-f796-459a-8184-9c92662be6da"
        ]
    );
}

// --------------------------------------------------------------------------------------- Streams

/// Records what it publishes; fails the events whose id is in `fail`.
#[derive(Default)]
pub(crate) struct FakePublisher {
    published: Mutex<Vec<EventEnvelope>>,
    fail: Vec<String>,
}

impl EventPublisher for FakePublisher {
    async fn publish_batch(
        &self,
        envelopes: &[&EventEnvelope],
    ) -> Vec<Result<String, PublishError>> {
        envelopes
            .iter()
            .map(|envelope| {
                if self.fail.contains(&envelope.id) {
                    return Err(PublishError {
                        event_id: envelope.id.clone(),
                        detail: "throttled".into(),
                    });
                }
                self.published.lock().unwrap().push((*envelope).clone());
                Ok(format!("msg-{}", envelope.id))
            })
            .collect()
    }
}

/// Records the outbox items marked published; fails every mark when `fail` is set.
#[derive(Default)]
pub(crate) struct FakeMarks {
    marked: Mutex<Vec<(String, String)>>,
    fail: bool,
}

impl PublishedMarks for FakeMarks {
    async fn mark_published(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
        if self.fail {
            return Err(StoreError::Throttled("UpdateItem: throttled".into()));
        }
        self.marked
            .lock()
            .unwrap()
            .push((pk.to_owned(), sk.to_owned()));
        Ok(())
    }
}

/// A stream record: the sample outbox insert with this event name, entity, payload and number.
pub(crate) fn stream_record(
    event_name: &str,
    entity: &str,
    payload: &str,
    sequence: &str,
) -> Value {
    let mut record = sample("publish_events.json")["Records"][0].clone();
    record["eventName"] = json!(event_name);
    record["dynamodb"]["NewImage"]["entity"] = json!({"S": entity});
    record["dynamodb"]["NewImage"]["payload"] = json!({"S": payload});
    record["dynamodb"]["SequenceNumber"] = json!(sequence);
    record
}

pub(crate) fn out_of_stock(id: &str) -> String {
    serde_json::to_string(&EventEnvelope {
        id: id.into(),
        correlation_id: None,
        occurred_at: None,
        event: Event::OutOfStock(OutOfStock {
            sku: "LAMP".into(),
            orderid: None,
            qty: None,
        }),
    })
    .unwrap()
}

pub(crate) fn stream_event(records: Vec<Value>) -> LambdaEvent<DynamoDbEvent> {
    let event: DynamoDbEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    LambdaEvent::new(event, context("streams-invocation"))
}

fn published_ids(publisher: &FakePublisher) -> Vec<String> {
    publisher
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.id.clone())
        .collect()
}

#[tokio::test]
async fn outbox_inserts_are_published_in_order_and_other_records_skipped() {
    let (publisher, marks) = (FakePublisher::default(), FakeMarks::default());
    let event = stream_event(vec![
        stream_record("MODIFY", "product", "{}", "100"),
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:1:0"), "101"),
        stream_record("REMOVE", "outbox", &out_of_stock("LAMP:0:0"), "102"),
        stream_record("INSERT", "batch", "{}", "103"),
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:2:0"), "104"),
    ]);
    let response = streams::handle(&publisher, &marks, event).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(published_ids(&publisher), ["LAMP:1:0", "LAMP:2:0"]);
    assert_eq!(
        marks.marked.lock().unwrap().len(),
        2,
        "each published item is marked, nothing else"
    );
}

#[tokio::test]
async fn a_published_event_whose_mark_fails_is_not_a_failure() {
    let publisher = FakePublisher::default();
    let marks = FakeMarks {
        fail: true,
        ..FakeMarks::default()
    };
    let event = stream_event(vec![
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:1:0"), "151"),
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:2:0"), "152"),
    ]);
    let response = streams::handle(&publisher, &marks, event).await.unwrap();
    // Published: retrying the shard would publish again for nothing; the item stays pending and
    // the republisher publishes it again later.
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(published_ids(&publisher), ["LAMP:1:0", "LAMP:2:0"]);
}

#[tokio::test]
async fn the_first_failure_is_reported_and_stops_the_batch() {
    let publisher = FakePublisher {
        fail: vec!["LAMP:2:0".into()],
        ..FakePublisher::default()
    };
    let event = stream_event(vec![
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:1:0"), "201"),
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:2:0"), "202"),
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:3:0"), "203"),
    ]);
    let response = serde_json::to_value(
        streams::handle(&publisher, &FakeMarks::default(), event)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(failures(&response), ["202"]);
    assert_eq!(published_ids(&publisher), ["LAMP:1:0"]);
}

#[tokio::test]
async fn an_unreadable_outbox_payload_is_a_failure_not_a_silent_drop() {
    let publisher = FakePublisher::default();
    let event = stream_event(vec![stream_record("INSERT", "outbox", "{oops", "301")]);
    let response = serde_json::to_value(
        streams::handle(&publisher, &FakeMarks::default(), event)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(failures(&response), ["301"]);
    let mut no_payload = stream_record("INSERT", "outbox", "", "302");
    no_payload["dynamodb"]["NewImage"]
        .as_object_mut()
        .unwrap()
        .remove("payload");
    let response = streams::handle(
        &publisher,
        &FakeMarks::default(),
        stream_event(vec![no_payload]),
    )
    .await
    .unwrap();
    assert_eq!(failures(&serde_json::to_value(response).unwrap()), ["302"]);
    assert!(published_ids(&publisher).is_empty());
}

#[tokio::test]
async fn the_sample_stream_event_publishes_its_event() {
    let (publisher, marks) = (FakePublisher::default(), FakeMarks::default());
    let event: DynamoDbEvent = serde_json::from_value(sample("publish_events.json")).unwrap();
    let response = streams::handle(&publisher, &marks, LambdaEvent::new(event, context("s")))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": []})
    );
    assert_eq!(published_ids(&publisher), ["SMALL-TABLE:4:0"]);
    assert_eq!(
        *marks.marked.lock().unwrap(),
        [(
            "OUTBOX#SMALL-TABLE".to_owned(),
            "00000000000000000004#000000".to_owned()
        )]
    );
}
