//! The functions' telemetry: one EMF metrics document per invocation (namespace `Allocation`,
//! dimension `function`) and the audit trail (each request logged with its caller and correlation
//! id), read with a subscriber of the test's own.

use std::sync::{Arc, Mutex};

use crate::lambda_adapters::{
    add_batch, allocate, app, call_http, context, out_of_stock, sample, stream_event,
    stream_record, FakeMarks, FakePublisher,
};
use allocation::entrypoints::lambda::{metrics, sqs, streams};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};

/// Everything logged on this thread while installed, as JSON lines (the fields flattened, the current
/// span's fields under `span`); the EMF metric documents are among them, under their own target.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    /// Where this thread's log lines go (a `#[tokio::test]` runs its tasks on its own thread).
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Writes to this thread's capture, if any.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(captured) = &*capture.borrow() {
                captured.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing when dropped.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

impl Captured {
    /// Captures this thread's logs until the guard drops. The subscriber is global (installed once
    /// for this test binary): a thread-local one would miss events whose callsites other threads
    /// saw first, with no subscriber.
    fn install(&self) -> CaptureGuard {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_target(true)
                .with_writer(|| ThreadCapture)
                .init();
        });
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(self.clone()));
        CaptureGuard
    }

    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The EMF documents, in order.
    fn documents(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|line| line["target"] == metrics::EMF_TARGET)
            .map(|line| serde_json::from_str(line["emf"].as_str().unwrap()).unwrap())
            .collect()
    }
}

/// An API Gateway event signed by this IAM principal (SigV4), with a client's request id.
fn signed(mut event: Value, user_arn: &str, request_id: &str) -> Value {
    event["requestContext"]["authorizer"] = json!({"iam": {
        "accessKey": "AKIAEXAMPLE", "accountId": "123456789012", "callerId": "AIDAEXAMPLE",
        "userArn": user_arn, "userId": "AIDAEXAMPLE", "cognitoIdentity": null, "principalOrgId": null,
    }});
    event["headers"]["x-request-id"] = json!(request_id);
    event
}

#[tokio::test]
async fn each_http_invocation_emits_its_metrics_and_logs_its_caller() {
    let captured = Captured::default();
    let _guard = captured.install();
    let (_, app) = app();
    let alice = "arn:aws:iam::123456789012:user/alice";
    assert_eq!(
        call_http(&app, &signed(add_batch("b1", "LAMP", 2), alice, "req-a"))
            .await
            .status,
        201
    );
    let allocated = call_http(&app, &signed(allocate("o1", "LAMP", 2), alice, "req-b")).await;
    assert_eq!(allocated.status, 201);
    assert_eq!(
        allocated.headers["x-request-id"], "req-b",
        "echoed, as locally"
    );
    let mut refused = allocate("o2", "LAMP", 1);
    refused["requestContext"]["authorizer"] =
        json!({"jwt": {"claims": {"sub": "buyer-7", "scope": "allocation/write"}, "scopes": null}});
    assert_eq!(call_http(&app, &refused).await.status, 409);

    let documents = captured.documents();
    assert_eq!(documents.len(), 3, "one document per invocation");
    let counts = |d: &Value| (d["Allocations"].clone(), d["OutOfStock"].clone());
    assert_eq!(counts(&documents[0]), (json!(0), json!(0)));
    assert_eq!(counts(&documents[1]), (json!(1), json!(0)));
    assert_eq!(counts(&documents[2]), (json!(0), json!(1)));
    assert_eq!(
        documents[1]["RecordsRead"], 2,
        "an allocation reads the product and its batch: {}",
        documents[1]
    );
    for document in &documents {
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Allocation"
        );
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function"]])
        );
        assert!(document.get("sku").is_none(), "never a dimension by SKU");
        // At the function's own log level (INFO when unset), which Lambda's filter always keeps.
        assert_eq!(document["level"], "INFO");
    }

    // The audit trail: each request with who made it and its correlation id.
    let requests: Vec<(Value, Value, Value)> = captured
        .lines()
        .into_iter()
        .filter(|line| line["message"] == "request")
        .map(|line| {
            (
                line["span"]["caller"].clone(),
                line["span"]["correlation_id"].clone(),
                line["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        requests,
        [
            (json!(alice), json!("req-a"), json!(201)),
            (json!(alice), json!("req-b"), json!(201)),
            (json!("jwt:buyer-7"), requests[2].1.clone(), json!(409)),
        ]
    );
    assert_ne!(
        requests[2].1,
        json!(""),
        "API Gateway's request id correlates"
    );
}

#[tokio::test]
async fn queue_and_stream_invocations_emit_their_failures_and_publications() {
    let captured = Captured::default();
    let _guard = captured.install();
    let (_, app) = app();
    let event: SqsEvent = serde_json::from_value(sample("reallocate.json")).unwrap();
    let response = sqs::handle(&app, LambdaEvent::new(event, context("q")))
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 2, "unknown SKU");
    let stream = stream_event(vec![
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:1:0"), "701"),
        stream_record("INSERT", "outbox", &out_of_stock("LAMP:2:0"), "702"),
    ]);
    streams::handle(&FakePublisher::default(), &FakeMarks::default(), stream)
        .await
        .unwrap();
    let documents = captured.documents();
    assert_eq!(documents.len(), 2);
    assert_eq!(documents[0]["ReallocationFailures"], 2);
    assert_eq!(documents[0]["requestId"], "q");
    assert_eq!(documents[1]["EventsPublished"], 2);
}
