//! The deployment as the cloud flow tests play it on DynamoDB Local and moto: the table, the topics and queues as
//! template.yaml wires them, the function handlers, and Lambda's part (polling the stream and the
//! queues, filtering, deleting handled messages); the events' shapes are `lambda_events`.

use std::collections::HashMap;

use crate::lambda_events::*;
use crate::support::moto::{unique_name, Moto};
use crate::support::queues::{drain, subscribe_queue, subscribed_queue, Queue};
use allocation::adapters::dynamodb::{DynamoDbOutbox, DynamoDbStore};
use allocation::adapters::sns::SnsPublisher;
use allocation::domain::EventEnvelope;
use allocation::entrypoints::lambda::republish::{RepublishReport, Republisher};
use allocation::entrypoints::lambda::{http, init, republish, sqs, streams};
use allocation::service::App;
use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use lambda_http::Body;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// The event source mapping's `BatchSize` for the stream in template.yaml.
pub(crate) const STREAM_BATCH_SIZE: usize = 100;
/// The event source mapping's `BatchSize` for the queue in template.yaml.
pub(crate) const QUEUE_BATCH_SIZE: i32 = 10;

// ------------------------------------------------------------------------------- the deployment

pub(crate) struct Cloud {
    pub(crate) moto: &'static Moto,
    pub(crate) table: String,
    pub(crate) app: App<DynamoDbStore>,
    pub(crate) publisher: SnsPublisher,
    pub(crate) outbox: DynamoDbOutbox,
    /// template.yaml's ReallocationQueue: raw delivery, filter `AllocationRequired`.
    pub(crate) reallocation_queue: Queue,
    /// template.yaml's OutOfStockQueue: raw delivery, filter `OutOfStock`.
    pub(crate) notifier_queue: Queue,
    /// `notify_out_of_stock`'s bus: it sends each delivered `OutOfStock` once to the email topic.
    pub(crate) notifier: App<DynamoDbStore>,
    pub(crate) email_topic_arn: String,
    /// A stand-in for the email subscription of the email topic: raw delivery off, no filter.
    pub(crate) email_queue: Queue,
    pub(crate) stream: StreamReader,
}

impl Cloud {
    pub(crate) async fn deploy(moto: &'static Moto) -> Self {
        let table = moto.create_table("cloud").await;
        let sns = aws_sdk_sns::Client::new(moto.sdk_config());
        let topic_arn = moto.create_topic("events").await;
        let reallocation_queue =
            subscribed_queue(moto, &topic_arn, "AllocationRequired", true).await;
        let notifier_queue = subscribed_queue(moto, &topic_arn, "OutOfStock", true).await;
        let email_topic_arn = moto.create_topic("out-of-stock-email").await;
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
            app: init::app_over(moto.sdk_config(), table.clone()),
            outbox: DynamoDbOutbox::new(moto.dynamodb(), &table),
            notifier: init::notifier_app_over(moto.sdk_config(), table.clone(), &email_topic_arn),
            notifier_queue,
            email_topic_arn,
            publisher: SnsPublisher::new(sns, topic_arn),
            table,
            reallocation_queue,
            email_queue,
            stream,
        }
    }

    pub(crate) fn store(&self) -> &DynamoDbStore {
        &self.app.store
    }

    /// An HTTP API request to the HTTP functions (they share one handler: the route decides).
    pub(crate) async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let event = api_event(method, path, body);
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = http::handle(&self.app, request).await.unwrap();
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
    pub(crate) async fn relay_outbox(&mut self) -> (usize, usize) {
        let publisher = self.publisher.clone();
        let (read, passed, failed) = self.relay_with(&publisher).await;
        assert!(failed.is_empty(), "publish_events failed: {failed:?}");
        (read, passed)
    }

    /// The stream poller with this publisher: (records read, passed the filter, the batch item
    /// failures). Failed records are not retried: as when the mapping's retries ran out.
    pub(crate) async fn relay_with(
        &mut self,
        publisher: &SnsPublisher,
    ) -> (usize, usize, Vec<String>) {
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
    pub(crate) async fn republish(&self, payload: Value) -> Result<RepublishReport, String> {
        self.republish_with(&self.publisher, payload).await
    }

    pub(crate) async fn republish_with(
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
    pub(crate) async fn run_reallocate(&self) -> (usize, usize) {
        self.run_queue(&self.reallocation_queue, &self.app).await
    }

    /// The same for `notify_out_of_stock` and its queue.
    pub(crate) async fn run_notifier(&self) -> (usize, usize) {
        self.run_queue(&self.notifier_queue, &self.notifier).await
    }

    pub(crate) async fn run_queue(
        &self,
        queue: &Queue,
        app: &App<DynamoDbStore>,
    ) -> (usize, usize) {
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
        let response = sqs::handle(app, invocation(event)).await.unwrap();
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

pub(crate) fn invocation<T>(payload: T) -> LambdaEvent<T> {
    let mut context = Context::default();
    context.request_id = unique_name("invocation");
    LambdaEvent::new(payload, context)
}

pub(crate) async fn receive(
    moto: &Moto,
    queue_url: &str,
    max: i32,
) -> Vec<aws_sdk_sqs::types::Message> {
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

// ---------------------------------------------------------------------------- the stream reader

/// Reads the table's stream with the DynamoDB Streams API, remembering where each shard is.
///
/// A shard's iterator is kept only once it has read a record: DynamoDB Local refuses an iterator
/// taken while its shard was empty once records arrive (TrimmedDataAccessException), so until then
/// each read starts again from the trim horizon.
pub(crate) struct StreamReader {
    pub(crate) client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Shard id → the iterator after the last record read from it.
    positions: HashMap<String, String>,
}

impl StreamReader {
    pub(crate) async fn open(moto: &Moto, table: &str) -> Self {
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
        let reader = Self {
            client,
            stream_arn,
            positions: HashMap::new(),
        };
        let description = reader.describe().await;
        assert_eq!(
            description.stream_view_type().map(|v| v.as_str()),
            Some("NEW_IMAGE")
        );
        assert!(!description.shards().is_empty(), "the stream has shards");
        reader
    }

    async fn describe(&self) -> aws_sdk_dynamodbstreams::types::StreamDescription {
        self.client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .unwrap()
            .stream_description()
            .cloned()
            .expect("a stream description")
    }

    /// Every record written since the last call.
    pub(crate) async fn read_new(&mut self) -> Vec<aws_sdk_dynamodbstreams::types::Record> {
        let mut records = Vec::new();
        for shard in self.describe().await.shards() {
            let shard_id = shard.shard_id().unwrap().to_owned();
            let mut iterator = match self.positions.get(&shard_id) {
                Some(iterator) => iterator.clone(),
                None => self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(&shard_id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .unwrap()
                    .shard_iterator()
                    .unwrap()
                    .to_owned(),
            };
            let mut read_any = self.positions.contains_key(&shard_id);
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
                    iterator = next.to_owned();
                }
                if fresh.is_empty() {
                    break;
                }
                read_any = true;
                records.extend(fresh);
            }
            if read_any {
                self.positions.insert(shard_id, iterator);
            }
        }
        records
    }
}

pub(crate) fn outbox_types(outbox: &[EventEnvelope]) -> Vec<&'static str> {
    outbox.iter().map(|e| e.event.type_name()).collect()
}

/// Every message on the queue, deleted: the event ids of their (raw-delivered) envelopes.
pub(crate) async fn drain_event_ids(moto: &Moto, queue_url: &str) -> Vec<String> {
    drain(moto, queue_url)
        .await
        .iter()
        .map(|message| {
            let envelope: EventEnvelope = serde_json::from_str(message.body().unwrap()).unwrap();
            envelope.id
        })
        .collect()
}
