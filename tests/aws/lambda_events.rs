//! Events as Lambda delivers them, built for the cloud flow tests: API Gateway requests shaped as
//! the samples of `events/`, DynamoDB Streams and SQS records as the event source mappings deliver
//! them, and the template's stream filter with the subset of Lambda's filtering it uses.

use std::collections::HashMap;

use crate::support::moto::unique_name;
use aws_sdk_dynamodbstreams::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

/// An API Gateway HTTP API (payload 2.0) request, shaped as the samples of `events/`.
pub(crate) fn api_event(method: &str, path: &str, body: Option<Value>) -> Value {
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
pub(crate) fn lambda_stream_record(
    record: &aws_sdk_dynamodbstreams::types::Record,
    table: &str,
) -> Value {
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
pub(crate) fn attribute_json(value: &AttributeValue) -> Value {
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
pub(crate) fn lambda_sqs_record(message: &aws_sdk_sqs::types::Message, queue_arn: &str) -> Value {
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
pub(crate) fn template_stream_filter() -> Value {
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
pub(crate) fn matches_pattern(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(key, sub)| matches_pattern(sub, value.get(key).unwrap_or(&Value::Null))),
        Value::Array(allowed) => allowed.contains(value),
        other => panic!("unsupported filter pattern {other}"),
    }
}
