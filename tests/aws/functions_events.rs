//! Every file of `events/` fed to its function's handler (the very function its binary runs), against
//! DynamoDB on DynamoDB Local, SNS and SQS on moto, checking the answer and the state that `events/README.md` documents.
//!
//! The README's table is the list: a file it does not list, a row whose file is missing, a row naming
//! an unknown function, or a file this test has no check for, fails the test.

use allocation::domain::OutOfStock;
use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::support::moto::{moto, Moto};
use crate::support::queues::{drain, subscribed_queue};
use allocation::adapters::dynamodb::{DynamoDbOutbox, DynamoDbStore};
use allocation::adapters::sns::SnsPublisher;
use allocation::domain::{Event, EventEnvelope, Product};
use allocation::entrypoints::lambda::republish::Republisher;
use allocation::entrypoints::lambda::{http, init, republish, sqs, streams};
use allocation::service::{out_of_stock_message, App, OutboxAudit, ProductRepository};
use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::Body;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

const SKU: &str = "SMALL-TABLE";
/// The stream record's `SequenceNumber` in `publish_events.json`.
const SEQUENCE_NUMBER: &str = "4421584500000000017450439091";

/// One row of the README's table.
#[derive(Debug, Clone)]
struct Row {
    file: String,
    function: String,
}

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// The rows of `events/README.md`'s table, in order; fails on a malformed row.
fn table() -> Vec<Row> {
    let readme = std::fs::read_to_string(events_dir().join("README.md")).unwrap();
    let mut rows = Vec::new();
    for line in readme.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells[0].parse::<u32>().is_err() {
            continue; // header or separator
        }
        assert!(
            cells.len() >= 6,
            "README row with fewer than 6 cells: {line}"
        );
        let unquote = |cell: &str| cell.trim_matches('`').to_owned();
        rows.push(Row {
            file: unquote(cells[1]),
            function: unquote(cells[2]),
        });
    }
    assert!(!rows.is_empty(), "no rows in the table of events/README.md");
    rows
}

/// Fails unless the table and the directory list the same files.
fn check_table_matches_files(rows: &[Row]) {
    let files: BTreeSet<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "README.md")
        .collect();
    let listed: BTreeSet<String> = rows.iter().map(|row| row.file.clone()).collect();
    assert_eq!(
        listed.len(),
        rows.len(),
        "a file appears twice in the table"
    );
    let unlisted: Vec<_> = files.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "events/ files not in the README table (nobody checks them): {unlisted:?}"
    );
    let missing: Vec<_> = listed.difference(&files).collect();
    assert!(
        missing.is_empty(),
        "README rows whose file is missing: {missing:?}"
    );
}

/// What a function answered.
#[derive(Debug)]
enum Answer {
    Http {
        status: u16,
        body: Value,
    },
    /// A partial batch response (`{"batchItemFailures": [...]}`).
    Batch(Value),
    /// Any other answer (the republisher's report), or the invocation's error.
    Json(Result<Value, String>),
}

/// The functions, wired to moto as their binaries wire them to AWS.
struct Functions {
    app: App<DynamoDbStore>,
    publisher: SnsPublisher,
    outbox: DynamoDbOutbox,
    republisher: Republisher<SnsPublisher, DynamoDbOutbox>,
    /// `notify_out_of_stock`'s bus and the email topic it sends to.
    notifier: App<DynamoDbStore>,
    email_topic_arn: String,
    /// A raw-delivery queue subscribed to the topic, filtered to `OutOfStock`.
    out_of_stock_queue: String,
}

impl Functions {
    async fn new(moto: &Moto, prefix: &str) -> Self {
        let table = moto.create_table(prefix).await;
        let sns = aws_sdk_sns::Client::new(moto.sdk_config());
        let topic_arn = moto.create_topic(prefix).await;
        let out_of_stock_queue = subscribed_queue(moto, &topic_arn, "OutOfStock", true)
            .await
            .url;
        let email_topic_arn = moto.create_topic("out-of-stock-email").await;
        let publisher = SnsPublisher::new(sns, topic_arn);
        let outbox = DynamoDbOutbox::new(moto.dynamodb(), &table);
        Self {
            notifier: init::notifier_app_over(moto.sdk_config(), table.clone(), &email_topic_arn),
            email_topic_arn,
            app: init::app_over(moto.sdk_config(), table),
            republisher: Republisher {
                publisher: publisher.clone(),
                outbox: outbox.clone(),
                grace: std::time::Duration::ZERO,
            },
            publisher,
            outbox,
            out_of_stock_queue,
        }
    }

    fn store(&self) -> &DynamoDbStore {
        &self.app.store
    }

    /// Feeds the event to its function's handler.
    async fn feed(&self, function: &str, event: &str, request_id: &str) -> Answer {
        let mut context = Context::default();
        context.request_id = request_id.to_owned();
        match function {
            "add_batch" | "allocate" | "change_batch_quantity" | "allocations" => {
                let request = lambda_http::request::from_str(event).expect("an API Gateway event");
                let response = http::handle(&self.app, request).await.unwrap();
                assert_eq!(response.headers()["content-type"], "application/json");
                let body = match response.body() {
                    Body::Text(text) => serde_json::from_str(text).expect("a JSON body"),
                    other => panic!("{function}: not a text body: {other:?}"),
                };
                Answer::Http {
                    status: response.status().as_u16(),
                    body,
                }
            }
            "reallocate" | "notify_out_of_stock" => {
                let bus = match function {
                    "reallocate" => &self.app,
                    _ => &self.notifier,
                };
                let event: SqsEvent = serde_json::from_str(event).expect("an SQS event");
                let response = sqs::handle(bus, LambdaEvent::new(event, context))
                    .await
                    .unwrap();
                Answer::Batch(serde_json::to_value(response).unwrap())
            }
            "publish_events" => {
                let event: DynamoDbEvent = serde_json::from_str(event).expect("a stream event");
                let response = streams::handle(
                    &self.publisher,
                    &self.outbox,
                    LambdaEvent::new(event, context),
                )
                .await
                .unwrap();
                Answer::Batch(serde_json::to_value(response).unwrap())
            }
            "republish_events" => {
                let payload: Value = serde_json::from_str(event).expect("a JSON payload");
                let answer =
                    republish::handle(&self.republisher, LambdaEvent::new(payload, context))
                        .await
                        .map(|report| serde_json::to_value(report).unwrap())
                        .map_err(|e| e.to_string());
                Answer::Json(answer)
            }
            other => panic!("events/README.md names an unknown function {other:?}"),
        }
    }

    async fn product(&self) -> Option<Product> {
        self.store().load(SKU, &[]).await.unwrap()
    }

    async fn available(&self, reference: &str) -> i64 {
        let product = self.product().await.expect("the product exists");
        product
            .batch(reference)
            .unwrap_or_else(|| panic!("no batch {reference}"))
            .available_quantity()
    }

    /// How many batches hold a line of this order.
    async fn times_allocated(&self, orderid: &str) -> usize {
        // The store holds at most one line per order and SKU; count the batches that name it.
        let Some(product) = self.store().load(SKU, &[orderid]).await.unwrap() else {
            return 0;
        };
        usize::from(product.allocation_of(orderid).is_some())
    }
}

fn failures(answer: &Answer) -> Vec<String> {
    let Answer::Batch(response) = answer else {
        panic!("expected a batch response, got {answer:?}");
    };
    response["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

fn report(answer: &Answer) -> &Value {
    match answer {
        Answer::Json(Ok(report)) => report,
        other => panic!("expected a report, got {other:?}"),
    }
}

/// The republisher's report when it found `n` items and published them all: the samples' events
/// are all of one SKU, so each goes in its own call, in commit order.
fn report_of(n: usize) -> Value {
    json!({"found": n, "published": n, "failed": 0, "unreadable": 0, "complete": true, "publish_calls": n})
}

fn http_answer(answer: &Answer) -> (u16, &Value) {
    let Answer::Http { status, body } = answer else {
        panic!("expected an HTTP answer, got {answer:?}");
    };
    (*status, body)
}

fn message_of(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no {{\"message\": ...}} in {body}"))
}

/// Checks a file's documented answer and state. `in_sequence`: fed in the table's order to one
/// table ("expected answer" column), or alone to an empty one ("on an empty store" column).
async fn check(
    moto: &Moto,
    functions: &Functions,
    file: &str,
    event: &str,
    answer: &Answer,
    in_sequence: bool,
) {
    let context = format!(
        "{file} ({})",
        if in_sequence { "in sequence" } else { "alone" }
    );
    match file {
        "add_batch.json" => {
            assert_eq!(http_answer(answer).0, 201, "{context}");
            assert_eq!(functions.available("batch-001").await, 20, "{context}");
        }
        "add_batch_bad_input.json" => {
            let (status, body) = http_answer(answer);
            assert_eq!(status, 400, "{context}");
            assert!(message_of(body).contains("qty"), "{context}: {body}");
            let sku = functions.store().sku_of_batch("batch-002").await.unwrap();
            assert_eq!(sku, None, "{context}: batch-002 must not exist");
        }
        "allocate_bad_input.json" => {
            let (status, body) = http_answer(answer);
            assert_eq!(status, 400, "{context}");
            message_of(body);
            assert_eq!(functions.times_allocated("order-001").await, 0, "{context}");
        }
        "allocate.json" => {
            let (status, body) = http_answer(answer);
            if in_sequence {
                assert_eq!(status, 201, "{context}: {body}");
                assert_eq!(body, &json!({"batchref": "batch-001"}), "{context}");
                assert_eq!(functions.available("batch-001").await, 17, "{context}");
            } else {
                assert_eq!(status, 400, "{context}");
                assert_eq!(
                    body,
                    &json!({"message": "Invalid sku SMALL-TABLE"}),
                    "{context}"
                );
            }
        }
        "change_batch_quantity.json" => {
            let (status, body) = http_answer(answer);
            if in_sequence {
                assert_eq!(status, 200, "{context}: {body}");
                assert_eq!(functions.available("batch-001").await, 7, "{context}");
                let outbox = functions.store().outbox(SKU).await.unwrap();
                assert!(
                    !outbox
                        .iter()
                        .any(|e| matches!(e.event, Event::AllocationRequired(_))),
                    "{context}: no line may be deallocated: {outbox:?}"
                );
            } else {
                assert_eq!(status, 404, "{context}");
                message_of(body);
            }
        }
        "allocations.json" => {
            let (status, body) = http_answer(answer);
            if in_sequence {
                assert_eq!(status, 200, "{context}");
                assert_eq!(
                    body,
                    &json!([{"sku": "SMALL-TABLE", "batchref": "batch-001"}]),
                    "{context}"
                );
            } else {
                assert_eq!(status, 404, "{context}");
                assert_eq!(body, &json!({"message": "not found"}), "{context}");
            }
        }
        "reallocate.json" => {
            if in_sequence {
                assert_eq!(failures(answer), Vec::<String>::new(), "{context}");
                let product = functions
                    .store()
                    .load(SKU, &["order-002"])
                    .await
                    .unwrap()
                    .unwrap();
                let batch = product.allocation_of("order-002").map(|b| b.reference());
                assert_eq!(batch, Some("batch-001"), "{context}");
                assert_eq!(functions.available("batch-001").await, 5, "{context}");
                assert_eq!(functions.times_allocated("order-001").await, 1, "{context}");
            } else {
                assert_eq!(
                    failures(answer),
                    [
                        "059f36b4-87a3-44ab-83d2-661975830a7d",
                        "2e1424d4-f796-459a-8184-9c92662be6da"
                    ],
                    "{context}"
                );
            }
        }
        "publish_events.json" => {
            assert_eq!(failures(answer), Vec::<String>::new(), "{context}");
            let payload: Value = {
                let event: Value = serde_json::from_str(event).unwrap();
                let text = event["Records"][0]["dynamodb"]["NewImage"]["payload"]["S"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                serde_json::from_str(&text).unwrap()
            };
            // What reached the raw-delivery queue filtered to OutOfStock.
            let messages = drain(moto, &functions.out_of_stock_queue).await;
            assert_eq!(messages.len(), 1, "{context}: one message on the queue");
            let body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
            assert_eq!(body, payload, "{context}: the queue gets the payload");
            let attribute = &messages[0].message_attributes().unwrap()["event_type"];
            assert_eq!(attribute.data_type(), "String", "{context}");
            assert_eq!(attribute.string_value(), Some("OutOfStock"), "{context}");
            // What the topic was asked to publish: one message, one document per protocol.
            let published = moto.published_to(functions.publisher.topic_arn());
            assert_eq!(published.len(), 1, "{context}: one Publish");
            let (document, subject) = &published[0];
            for protocol in ["default", "sqs"] {
                let text = document[protocol].as_str().unwrap();
                let json: Value = serde_json::from_str(text).unwrap();
                assert_eq!(json, payload, "{context}: {protocol}");
            }
            assert_eq!(
                document["email"],
                out_of_stock_message(&serde_json::from_value(payload.clone()).unwrap()).as_str(),
                "{context}"
            );
            assert!(
                document["email"]
                    .as_str()
                    .unwrap()
                    .starts_with("Out of stock for SKU SMALL-TABLE"),
                "{context}"
            );
            assert_eq!(subject, "Out of stock for SKU SMALL-TABLE", "{context}");
        }
        "notify_out_of_stock.json" => {
            assert_eq!(failures(answer), Vec::<String>::new(), "{context}");
            let emails = moto.published_to(&functions.email_topic_arn);
            assert_eq!(emails.len(), 1, "{context}: one email");
            let (text, subject) = &emails[0];
            let envelope: EventEnvelope = {
                let event: Value = serde_json::from_str(event).unwrap();
                serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap()
            };
            assert_eq!(
                text,
                &Value::String(out_of_stock_message(&envelope)),
                "{context}"
            );
            assert!(
                text.as_str().unwrap().contains("Event id: SMALL-TABLE:6:0"),
                "{context}: {text}"
            );
            assert_eq!(subject, "Out of stock for SKU SMALL-TABLE", "{context}");
            let again = functions.feed("notify_out_of_stock", event, "again").await;
            assert_eq!(failures(&again), Vec::<String>::new(), "{context}");
            assert_eq!(
                moto.published_to(&functions.email_topic_arn).len(),
                1,
                "{context}: delivered again, no second email"
            );
        }
        "republish_events.json" => {
            let found = if in_sequence { 1 } else { 0 };
            assert_eq!(report(answer), &report_of(found), "{context}");
            let again = functions
                .feed("republish_events", event, "sweep-again")
                .await;
            assert_eq!(report(&again), &report_of(0), "{context}: all published");
        }
        "republish_events_by_sku.json" => {
            let found = if in_sequence { 2 } else { 0 };
            assert_eq!(report(answer), &report_of(found), "{context}");
        }
        other => panic!("events/{other} is in the README table but this test has no check for it"),
    }
}

#[tokio::test]
async fn every_event_file_in_the_order_of_the_table_on_one_table() {
    let rows = table();
    check_table_matches_files(&rows);
    let moto = moto().await;
    let functions = Functions::new(moto, "events-seq").await;
    for (i, row) in rows.iter().enumerate() {
        let event = std::fs::read_to_string(events_dir().join(&row.file)).unwrap();
        let answer = functions
            .feed(&row.function, &event, &format!("invocation-{i}"))
            .await;
        check(moto, &functions, &row.file, &event, &answer, true).await;
    }
}

#[tokio::test]
async fn every_event_file_alone_on_an_empty_table() {
    let rows = table();
    check_table_matches_files(&rows);
    let moto = moto().await;
    for row in &rows {
        let functions = Functions::new(moto, "events-alone").await;
        let event = std::fs::read_to_string(events_dir().join(&row.file)).unwrap();
        let answer = functions.feed(&row.function, &event, "alone").await;
        check(moto, &functions, &row.file, &event, &answer, false).await;
    }
}

#[tokio::test]
async fn a_failed_publish_reports_the_records_sequence_number() {
    let moto = moto().await;
    let sns = aws_sdk_sns::Client::new(moto.sdk_config());
    let missing_topic = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    let publisher = SnsPublisher::new(sns, missing_topic);
    let event: DynamoDbEvent = serde_json::from_str(
        &std::fs::read_to_string(events_dir().join("publish_events.json")).unwrap(),
    )
    .unwrap();
    let outbox = DynamoDbOutbox::new(moto.dynamodb(), moto.create_table("no-publish").await);
    let response = streams::handle(
        &publisher,
        &outbox,
        LambdaEvent::new(event, Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": SEQUENCE_NUMBER}]})
    );
}

#[tokio::test]
async fn the_publish_error_keeps_the_sdk_detail() {
    let moto = moto().await;
    let sns = aws_sdk_sns::Client::new(moto.sdk_config());
    let publisher = SnsPublisher::new(sns, "arn:aws:sns:us-east-1:123456789012:no-such-topic");
    let envelope = EventEnvelope {
        id: "SKU:1:0".into(),
        correlation_id: None,
        occurred_at: None,
        event: Event::OutOfStock(OutOfStock {
            sku: "SKU".into(),
            orderid: None,
            qty: None,
        }),
    };
    let mut answers = publisher.publish_batch(&[&envelope]).await;
    let error = answers.pop().unwrap().unwrap_err();
    assert_eq!(error.event_id, "SKU:1:0");
    assert!(
        error.detail.contains("NotFound") || error.detail.contains("not exist"),
        "the SDK's detail, not just \"service error\": {}",
        error.detail
    );
}
