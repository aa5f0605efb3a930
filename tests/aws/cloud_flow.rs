//! The whole cloud flow on moto, through the function handlers the binaries run:
//! HTTP functions → DynamoDB (state + outbox, one transaction) → the table's stream, read with the
//! DynamoDB Streams API and filtered as the template's event source mapping filters it →
//! `publish_events` → SNS (subscriptions filtered on `event_type`) → SQS → `reallocate` → the line
//! is on the other batch (`GET /allocations` through `allocations`); and out of stock → an
//! `OutOfStock` message with the readable text reaches the topic's subscribers.
//!
//! Lambda's part (polling the stream and the queue, filtering, deleting handled messages) is played
//! by this test with the same APIs and the same event shapes.

use std::collections::HashMap;

use crate::support::moto::{moto, unique_name, Moto};
use crate::support::queues::{observer_queue, subscribe_queue, subscribed_queue, Queue};
use allocation::adapters::dynamodb::{DynamoDbOutbox, DynamoDbStore};
use allocation::adapters::sns::SnsPublisher;
use allocation::domain::{Event, EventEnvelope};
use allocation::entrypoints::lambda::republish::{RepublishReport, Republisher};
use allocation::entrypoints::lambda::{http, init, republish, sqs, streams};
use allocation::service::{out_of_stock_message, Bus, Store};
use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use lambda_http::Body;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

const SKU: &str = "RED-CHAIR";
/// The event source mapping's `BatchSize` for the stream in template.yaml.
const STREAM_BATCH_SIZE: usize = 100;
/// The event source mapping's `BatchSize` for the queue in template.yaml.
const QUEUE_BATCH_SIZE: i32 = 10;

// ------------------------------------------------------------------------------- the deployment

struct Cloud {
    moto: &'static Moto,
    table: String,
    bus: Bus<DynamoDbStore>,
    publisher: SnsPublisher,
    outbox: DynamoDbOutbox,
    /// template.yaml's ReallocationQueue: raw delivery, filter `AllocationRequired`.
    reallocation_queue: Queue,
    /// template.yaml's OutOfStockQueue: raw delivery, filter `OutOfStock`.
    notifier_queue: Queue,
    /// `notify_out_of_stock`'s bus: it sends each delivered `OutOfStock` once to the email topic.
    notifier: Bus<DynamoDbStore>,
    email_topic_arn: String,
    /// A stand-in for the email subscription of the email topic: raw delivery off, no filter.
    email_queue: Queue,
    stream: StreamReader,
}

impl Cloud {
    async fn deploy(moto: &'static Moto) -> Self {
        let table = moto.create_table("cloud").await;
        let sns = aws_sdk_sns::Client::new(moto.sdk_config());
        let topic_arn = sns
            .create_topic()
            .name(unique_name("events"))
            .send()
            .await
            .unwrap()
            .topic_arn()
            .unwrap()
            .to_owned();
        let reallocation_queue =
            subscribed_queue(moto, &topic_arn, "AllocationRequired", true).await;
        let notifier_queue = subscribed_queue(moto, &topic_arn, "OutOfStock", true).await;
        let email_topic_arn = sns
            .create_topic()
            .name(unique_name("out-of-stock-email"))
            .send()
            .await
            .unwrap()
            .topic_arn()
            .unwrap()
            .to_owned();
        let email_queue = subscribe_queue(moto, &email_topic_arn, None, false).await;
        // The template's real email subscription (moto accepts it, sends nothing).
        sns.subscribe()
            .topic_arn(&email_topic_arn)
            .protocol("email")
            .endpoint("purchasing@example.com")
            .send()
            .await
            .unwrap();
        let stream = StreamReader::open(moto, &table).await;
        Self {
            moto,
            bus: init::bus_over(moto.sdk_config(), table.clone()),
            outbox: DynamoDbOutbox::new(moto.dynamodb(), &table),
            notifier: init::notifier_bus_over(moto.sdk_config(), table.clone(), &email_topic_arn),
            notifier_queue,
            email_topic_arn,
            publisher: SnsPublisher::new(sns, topic_arn),
            table,
            reallocation_queue,
            email_queue,
            stream,
        }
    }

    fn store(&self) -> &DynamoDbStore {
        self.bus.uows().store()
    }

    /// An HTTP API request to the HTTP functions (they share one handler: the route decides).
    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let event = api_event(method, path, body);
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = http::handle(&self.bus, request).await.unwrap();
        let Body::Text(text) = response.body() else {
            panic!("not a text body: {:?}", response.body());
        };
        (
            response.status().as_u16(),
            serde_json::from_str(text).unwrap(),
        )
    }

    /// Lambda's stream poller: new records, filtered by the template's pattern, in batches, to
    /// `publish_events`. Answers how many records were read and how many passed the filter.
    async fn relay_outbox(&mut self) -> (usize, usize) {
        let publisher = self.publisher.clone();
        let (read, passed, failed) = self.relay_with(&publisher).await;
        assert!(failed.is_empty(), "publish_events failed: {failed:?}");
        (read, passed)
    }

    /// The stream poller with this publisher: (records read, passed the filter, the batch item
    /// failures). Failed records are not retried: as when the mapping's retries ran out.
    async fn relay_with(&mut self, publisher: &SnsPublisher) -> (usize, usize, Vec<String>) {
        let records = self.stream.read_new().await;
        let read = records.len();
        let filter = template_stream_filter();
        let passed: Vec<Value> = records
            .into_iter()
            .map(|record| lambda_stream_record(&record, &self.table))
            .filter(|record| matches_pattern(&filter, record))
            .collect();
        let mut failed = Vec::new();
        for batch in passed.chunks(STREAM_BATCH_SIZE) {
            let event: DynamoDbEvent =
                serde_json::from_value(json!({ "Records": batch })).expect("a Lambda stream event");
            let response = streams::handle(publisher, &self.outbox, invocation(event))
                .await
                .unwrap();
            failed.extend(
                response
                    .batch_item_failures
                    .into_iter()
                    .filter_map(|f| f.item_identifier),
            );
        }
        (read, passed.len(), failed)
    }

    /// `republish_events` with no grace (every pending item counts), on this payload.
    async fn republish(&self, payload: Value) -> Result<RepublishReport, String> {
        self.republish_with(&self.publisher, payload).await
    }

    async fn republish_with(
        &self,
        publisher: &SnsPublisher,
        payload: Value,
    ) -> Result<RepublishReport, String> {
        let republisher = Republisher {
            publisher: publisher.clone(),
            outbox: self.outbox.clone(),
            grace: std::time::Duration::ZERO,
        };
        republish::handle(&republisher, invocation(payload))
            .await
            .map_err(|e| e.to_string())
    }

    /// Lambda's queue poller: receives messages, hands them to `reallocate` as an SQS event, deletes
    /// those that did not fail. Answers (handled, failed).
    async fn run_reallocate(&self) -> (usize, usize) {
        self.run_queue(&self.reallocation_queue, &self.bus).await
    }

    /// The same for `notify_out_of_stock` and its queue.
    async fn run_notifier(&self) -> (usize, usize) {
        self.run_queue(&self.notifier_queue, &self.notifier).await
    }

    async fn run_queue(&self, queue: &Queue, bus: &Bus<DynamoDbStore>) -> (usize, usize) {
        let sqs_client = aws_sdk_sqs::Client::new(self.moto.sdk_config());
        let messages = receive(self.moto, &queue.url, QUEUE_BATCH_SIZE).await;
        if messages.is_empty() {
            return (0, 0);
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| lambda_sqs_record(m, &queue.arn))
            .collect();
        let event: SqsEvent =
            serde_json::from_value(json!({ "Records": records })).expect("a Lambda SQS event");
        let response = sqs::handle(bus, invocation(event)).await.unwrap();
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for message in &messages {
            if !failed.contains(&message.message_id().unwrap()) {
                sqs_client
                    .delete_message()
                    .queue_url(&queue.url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        (messages.len() - failed.len(), failed.len())
    }
}

fn invocation<T>(payload: T) -> LambdaEvent<T> {
    let mut context = Context::default();
    context.request_id = unique_name("invocation");
    LambdaEvent::new(payload, context)
}

async fn receive(moto: &Moto, queue_url: &str, max: i32) -> Vec<aws_sdk_sqs::types::Message> {
    aws_sdk_sqs::Client::new(moto.sdk_config())
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages()
        .to_vec()
}

// ------------------------------------------------------------------------ events as Lambda sees them

/// An API Gateway HTTP API (payload 2.0) request, shaped as the samples of `events/`.
fn api_event(method: &str, path: &str, body: Option<Value>) -> Value {
    let route = if path.starts_with("/allocations/") {
        "/allocations/{orderid}"
    } else {
        path
    };
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {route}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "api.example.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "cloud-flow-test"},
            "requestId": unique_name("api-request"),
            "routeKey": format!("{method} {route}"),
            "stage": "$default",
            "time": "15/Jan/2025:12:00:00 +0000",
            "timeEpoch": 1736942400000_i64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// A DynamoDB Streams API record as the Lambda event source mapping delivers it.
fn lambda_stream_record(record: &aws_sdk_dynamodbstreams::types::Record, table: &str) -> Value {
    let change = record.dynamodb().expect("a stream record body");
    let image = |image: Option<&HashMap<String, AttributeValue>>| {
        image.map_or(Value::Null, |attributes| {
            Value::Object(
                attributes
                    .iter()
                    .map(|(name, value)| (name.clone(), attribute_json(value)))
                    .collect(),
            )
        })
    };
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": record.event_source(),
        "awsRegion": record.aws_region(),
        "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/x"),
        "dynamodb": {
            "ApproximateCreationDateTime": change
                .approximate_creation_date_time()
                .map_or(0.0, |t| t.as_secs_f64()),
            "Keys": image(change.keys()),
            "NewImage": image(change.new_image()),
            "SequenceNumber": change.sequence_number(),
            "SizeBytes": change.size_bytes().unwrap_or_default(),
            "StreamViewType": change.stream_view_type().map(|v| v.as_str()),
        }
    })
}

/// DynamoDB's JSON form of an attribute value (`{"S": "..."}`, ...).
fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": BASE64.encode(b.as_ref()) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => {
            json!({ "BS": v.iter().map(|b| BASE64.encode(b.as_ref())).collect::<Vec<_>>() })
        }
        AttributeValue::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({
            "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>()
        }),
        other => panic!("unknown attribute value {other:?}"),
    }
}

/// An SQS message as the Lambda event source mapping delivers it.
fn lambda_sqs_record(message: &aws_sdk_sqs::types::Message, queue_arn: &str) -> Value {
    let attributes: serde_json::Map<String, Value> = message
        .attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
        .collect();
    let message_attributes: serde_json::Map<String, Value> = message
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let attribute = json!({
                "stringValue": value.string_value(),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.data_type(),
            });
            (name.clone(), attribute)
        })
        .collect();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "md5OfMessageAttributes": message.md5_of_message_attributes(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}

/// The filter pattern of `PublishEventsFunction`'s stream event in template.yaml.
fn template_stream_filter() -> Value {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let line = template
        .lines()
        .find(|line| line.trim_start().starts_with("- Pattern:"))
        .expect("a FilterCriteria pattern in template.yaml");
    let pattern = line
        .split_once("Pattern:")
        .unwrap()
        .1
        .trim()
        .trim_matches('\'');
    serde_json::from_str(pattern).expect("the pattern is JSON")
}

/// Lambda event filtering, for the subset of the syntax the template uses: an object matches when each
/// key's value matches; a list of values matches a field equal to one of them.
fn matches_pattern(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(key, sub)| matches_pattern(sub, value.get(key).unwrap_or(&Value::Null))),
        Value::Array(allowed) => allowed.contains(value),
        other => panic!("unsupported filter pattern {other}"),
    }
}

// ---------------------------------------------------------------------------- the stream reader

/// Reads the table's stream with the DynamoDB Streams API, remembering where each shard is.
struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    iterators: Vec<String>,
}

impl StreamReader {
    async fn open(moto: &Moto, table: &str) -> Self {
        let stream_arn = moto
            .dynamodb()
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .table()
            .and_then(|t| t.latest_stream_arn())
            .expect("the table has a stream")
            .to_owned();
        let client = aws_sdk_dynamodbstreams::Client::new(moto.sdk_config());
        let description = client
            .describe_stream()
            .stream_arn(&stream_arn)
            .send()
            .await
            .unwrap();
        let description = description.stream_description().unwrap();
        assert_eq!(
            description.stream_view_type().map(|v| v.as_str()),
            Some("NEW_IMAGE")
        );
        let mut iterators = Vec::new();
        for shard in description.shards() {
            let iterator = client
                .get_shard_iterator()
                .stream_arn(&stream_arn)
                .shard_id(shard.shard_id().unwrap())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap();
            iterators.push(iterator.shard_iterator().unwrap().to_owned());
        }
        assert!(!iterators.is_empty(), "the stream has shards");
        Self { client, iterators }
    }

    /// Every record written since the last call.
    async fn read_new(&mut self) -> Vec<aws_sdk_dynamodbstreams::types::Record> {
        let mut records = Vec::new();
        for iterator in &mut self.iterators {
            loop {
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(iterator.as_str())
                    .send()
                    .await
                    .unwrap();
                let fresh = page.records().to_vec();
                if let Some(next) = page.next_shard_iterator() {
                    *iterator = next.to_owned();
                }
                if fresh.is_empty() {
                    break;
                }
                records.extend(fresh);
            }
        }
        records
    }
}

// ---------------------------------------------------------------------------------- the flow

fn outbox_types(outbox: &[EventEnvelope]) -> Vec<&'static str> {
    outbox.iter().map(|e| e.event.type_name()).collect()
}

/// What the topic was asked to publish (moto's internal record, `/moto-api/data.json`): the
/// `MessageStructure=json` document and the subject of each `Publish`.
fn published_to(moto: &Moto, topic_arn: &str) -> Vec<(Value, String)> {
    let url = format!("{}/moto-api/data.json", moto.endpoint());
    let text = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    let topic = data["sns"]["Topic"]
        .as_array()
        .expect("moto's data.json lists SNS topics (internal API: check the moto version)")
        .iter()
        .find(|topic| topic["arn"] == topic_arn)
        .expect("the topic in moto's data.json")
        .clone();
    topic["sent_notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sent| {
            // A `MessageStructure=json` document, or a plain text message (the emails).
            let message = sent[1].as_str().unwrap();
            (
                serde_json::from_str(message).unwrap_or_else(|_| Value::String(message.to_owned())),
                sent[2].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

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
    let published = published_to(moto, cloud.publisher.topic_arn());
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
    let response = sqs::handle(&cloud.bus, invocation(event)).await.unwrap();
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
        published_to(moto, &cloud.email_topic_arn).len(),
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

/// Every message on the queue, deleted: the event ids of their (raw-delivered) envelopes.
async fn drain_event_ids(moto: &Moto, queue_url: &str) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(moto.sdk_config());
    let mut ids = Vec::new();
    loop {
        let messages = receive(moto, queue_url, 10).await;
        if messages.is_empty() {
            return ids;
        }
        for message in messages {
            let envelope: EventEnvelope = serde_json::from_str(message.body().unwrap()).unwrap();
            ids.push(envelope.id);
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
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
    let outage = cloud.republish_with(&broken, json!({})).await.unwrap_err();
    assert!(
        outage.contains("5 events could not be published"),
        "{outage}"
    );
    assert!(drain_event_ids(moto, &observer.url).await.is_empty());

    // Publishing is back. The schedule's sweep publishes every committed event, none missing.
    let report = cloud.republish(json!({})).await.unwrap();
    assert_eq!((report.found, report.published, report.failed), (5, 5, 0));
    let mut delivered = drain_event_ids(moto, &observer.url).await;
    delivered.sort();
    let mut expected = committed.clone();
    expected.sort();
    assert_eq!(delivered, expected, "every committed event, once");
    assert_eq!(cloud.republish(json!({})).await.unwrap().found, 0);

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
    assert_eq!(cloud.republish(json!({})).await.unwrap().found, 0);

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
    let emails = published_to(moto, &cloud.email_topic_arn);
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
        published_to(moto, &cloud.email_topic_arn).len(),
        1,
        "one email per event"
    );

    // the events topic's own message keeps its readable `email` document too
    let published = published_to(moto, cloud.publisher.topic_arn());
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
