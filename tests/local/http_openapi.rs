//! `docs/openapi.yaml` against the real `local` binary: every answer of a scenario that reaches every
//! operation and (nearly) every documented status must have a status the document allows for its
//! operation, and a body valid against the documented schema. Request bodies the server accepts must be
//! valid against the request schema, and bodies the schema rejects must be answered 400.
//!
//! The validator covers the subset of JSON Schema the document uses, and fails on any other keyword so
//! the document cannot drift out of what is checked.

use std::collections::BTreeSet;

use crate::support::local::{eventually, RawClient, RawResponse, Workspace, EVENT_TIMEOUT};
use serde_json::{json, Value};

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
    serde_yaml_ng::from_str(&text).expect("docs/openapi.yaml is YAML")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local $ref");
            let target = spec
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(spec, target)
        }
        None => value,
    }
}

const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "format",
    "oneOf",
    "description",
];

/// Validates `value` against `schema`; the errors, with their JSON pointer.
fn validate(spec: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    let Some(keywords) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object"));
        return;
    };
    for keyword in keywords.keys() {
        assert!(
            KEYWORDS.contains(&keyword.as_str()),
            "unsupported keyword {keyword} in {schema}"
        );
    }
    let mut fail = |what: String| errors.push(format!("{at}: {what} (value {value})"));
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type {types}"),
        };
        let matches = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            // JSON Schema: any number with a zero fractional part.
            "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("unknown type {other}"),
        });
        if !matches {
            fail(format!("not of type {types:?}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            fail(format!("not one of {allowed:?}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            fail(format!("not {constant}"));
        }
    }
    if let Some(text) = value.as_str() {
        let chars = text.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| chars < min)
        {
            fail("too short".into());
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|max| chars > max)
        {
            fail("too long".into());
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let pattern = regex::Regex::new(pattern).expect("the document's patterns compile");
            if !pattern.is_match(text) {
                fail("does not match its pattern".into());
            }
        }
        let valid_format = match schema.get("format").and_then(Value::as_str) {
            Some("date") => {
                text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
            }
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            Some(other) => panic!("unsupported format {other}"),
            None => true,
        };
        if !valid_format {
            fail("not in its format".into());
        }
    }
    if value.is_number() {
        let n = value.as_f64().unwrap();
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| n < min)
        {
            fail("under the minimum".into());
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| n > max)
        {
            fail("over the maximum".into());
        }
    }
    if let Some(items) = value.as_array() {
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|min| (items.len() as u64) < min)
        {
            fail("too few items".into());
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(spec, item_schema, item, &format!("{at}/{i}"), errors);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                errors.push(format!("{at}: missing required {name}"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => {
                    validate(spec, field_schema, field, &format!("{at}/{name}"), errors)
                }
                None if schema.get("additionalProperties") == Some(&json!(false)) => {
                    errors.push(format!("{at}: unexpected property {name}"));
                }
                None => {}
            }
        }
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let valid = options
            .iter()
            .filter(|option| {
                let mut option_errors = Vec::new();
                validate(spec, option, value, at, &mut option_errors);
                option_errors.is_empty()
            })
            .count();
        if valid != 1 {
            errors.push(format!(
                "{at}: matches {valid} of the oneOf schemas (value {value})"
            ));
        }
    }
}

fn is_valid(spec: &Value, schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    validate(spec, schema, value, "", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The document's path template matching a concrete path.
fn template<'a>(spec: &'a Value, path: &str) -> Option<&'a str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
}

/// Checks one exchange against the document; answers `(operationId or rule, status)`.
fn check(spec: &Value, method: &str, path: &str, response: &RawResponse) -> (String, u16) {
    let status = response.status;
    let context = format!(
        "{method} {path} -> {status} {}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{context}"
    );
    let body: Value =
        serde_json::from_slice(&response.body).unwrap_or_else(|_| panic!("not JSON: {context}"));
    let (operation_name, declared) = match template(spec, path) {
        None => {
            assert_eq!(status, 404, "unknown path: {context}");
            (
                "unknown path".to_owned(),
                resolve(spec, &spec["components"]["responses"]["NotFound"]),
            )
        }
        Some(template) => match spec["paths"][template].get(method.to_ascii_lowercase()) {
            None => {
                assert_eq!(status, 405, "method not in the document: {context}");
                let allow = response.header("allow").expect("Allow header on 405");
                assert!(
                    spec["paths"][template]
                        .get(allow.to_ascii_lowercase())
                        .is_some(),
                    "{context}"
                );
                (
                    "wrong method".to_owned(),
                    resolve(spec, &spec["components"]["responses"]["MethodNotAllowed"]),
                )
            }
            Some(operation) => {
                let declared = operation["responses"]
                    .get(status.to_string())
                    .unwrap_or_else(|| {
                        panic!("status {status} not documented for {template}: {context}")
                    });
                (
                    operation["operationId"].as_str().unwrap().to_owned(),
                    resolve(spec, declared),
                )
            }
        },
    };
    let schema = &declared["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "no JSON schema documented for {context}");
    if let Err(errors) = is_valid(spec, schema, &body) {
        panic!(
            "answer does not match the document: {context}\n{}",
            errors.join("\n")
        );
    }
    let request_id = response.header("x-request-id").expect("x-request-id");
    let header_schema =
        resolve(spec, &spec["components"]["headers"]["RequestId"])["schema"].clone();
    assert!(
        is_valid(spec, &header_schema, &json!(request_id)).is_ok(),
        "{context}"
    );
    (operation_name, status)
}

struct Exchange<'a> {
    spec: &'a Value,
    client: RawClient,
    seen: BTreeSet<(String, u16)>,
}

impl Exchange<'_> {
    fn send(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(Value::to_string).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        let response = self.client.send(method, path, headers, text.as_bytes());
        let seen = check(self.spec, method, path, &response);
        self.seen.insert(seen);
        (response.status, response.json().unwrap())
    }

    /// A request body the server accepted must be valid against the documented request schema, and one
    /// the schema rejects must have been answered 400.
    fn send_body(&mut self, path: &str, body: Value) -> (u16, Value) {
        let (status, answer) = self.send("POST", path, Some(&body));
        let schema = &self.spec["paths"][path]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        match is_valid(self.spec, schema, &body) {
            Ok(()) => {}
            Err(errors) => assert_eq!(
                status, 400,
                "{path} {body}: schema says {errors:?}, server {status} {answer}"
            ),
        }
        if status < 300 {
            assert!(
                is_valid(self.spec, schema, &body).is_ok(),
                "{path} {body} accepted but not documented"
            );
        }
        (status, answer)
    }
}

#[test]
fn the_document_is_openapi_3_1_and_names_every_route() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths: BTreeSet<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "/add_batch",
        "/allocate",
        "/change_batch_quantity",
        "/allocations/{orderid}",
        "/admin/dead-letters",
    ]
    .into();
    assert_eq!(paths, expected);
    // Every $ref resolves.
    fn walk(spec: &Value, value: &Value) {
        match value {
            Value::Object(map) => {
                resolve(spec, value);
                map.values().for_each(|v| walk(spec, v));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(spec, v)),
            _ => {}
        }
    }
    walk(&spec, &spec);
}

#[test]
fn real_answers_match_the_document() {
    let spec = spec();
    let workspace = Workspace::new();
    let blocked = workspace.path().join("mailbox-is-a-directory");
    std::fs::create_dir_all(&blocked).unwrap();
    // Emails cannot be written: the OutOfStock event becomes a dead letter quickly.
    let server = workspace.start_with(&[
        "--mailbox",
        blocked.to_str().unwrap(),
        "--max-attempts",
        "2",
        "--retry-base-ms",
        "5",
    ]);
    let mut x = Exchange {
        spec: &spec,
        client: RawClient::new(&server.addr),
        seen: BTreeSet::new(),
    };

    // add_batch: 201, 400, 409.
    assert_eq!(
        x.send_body(
            "/add_batch",
            json!({"ref": "b1", "sku": "LAMP", "qty": 10, "eta": null})
        )
        .0,
        201
    );
    assert_eq!(
        x.send_body(
            "/add_batch",
            json!({"ref": "b2", "sku": "LAMP", "qty": 10, "eta": "2031-01-01"})
        )
        .0,
        201
    );
    assert_eq!(
        x.send_body("/add_batch", json!({"ref": "b3", "sku": "LAMP", "qty": 0}))
            .0,
        201
    );
    assert_eq!(
        x.send_body("/add_batch", json!({"ref": "b1", "sku": "LAMP", "qty": 10}))
            .0,
        201,
        "the same batch again"
    );
    assert_eq!(
        x.send_body("/add_batch", json!({"ref": "b1", "sku": "LAMP", "qty": 11}))
            .0,
        409
    );
    for bad in [
        json!({"ref": "x", "sku": "LAMP", "qty": -1}),
        json!({"ref": "x", "sku": "LAMP", "qty": 1_000_000_001u64}),
        json!({"ref": "x", "sku": "LAMP", "qty": 1.5}),
        json!({"ref": "x", "sku": "LAMP", "qty": "1"}),
        json!({"ref": "x", "sku": "LAMP"}),
        json!({"ref": "", "sku": "LAMP", "qty": 1}),
        json!({"ref": "r".repeat(129), "sku": "LAMP", "qty": 1}),
        json!({"ref": "x", "sku": "LAMP", "qty": 1, "eta": "2031-1-1"}),
        json!({"ref": "x", "sku": "LAMP", "qty": 1, "eta": 20310101}),
        json!({"ref": "x", "sku": "LAMP", "qty": 1, "color": "red"}),
        json!([1, 2]),
    ] {
        assert_eq!(x.send_body("/add_batch", bad).0, 400);
    }
    let longest = "r".repeat(128);
    assert_eq!(
        x.send_body(
            "/add_batch",
            json!({"ref": longest, "sku": "BIG", "qty": 1_000_000_000})
        )
        .0,
        201
    );

    // allocate: 201, 400, 409.
    assert_eq!(
        x.send_body(
            "/allocate",
            json!({"orderid": "o1", "sku": "LAMP", "qty": 8})
        ),
        (201, json!({"batchref": "b1"}))
    );
    assert_eq!(
        x.send_body(
            "/allocate",
            json!({"orderid": "o1", "sku": "LAMP", "qty": 8})
        )
        .0,
        201
    );
    assert_eq!(
        x.send_body(
            "/allocate",
            json!({"orderid": "o2", "sku": "NOPE", "qty": 1})
        )
        .0,
        400
    );
    for bad in [
        json!({"orderid": "o3", "sku": "LAMP", "qty": 0}),
        json!({"orderid": "o3", "sku": "LAMP", "qty": 2.5}),
        json!({"orderid": "o3", "sku": "LAMP", "qty": null}),
        json!({"orderid": 3, "sku": "LAMP", "qty": 1}),
        json!({"orderid": "o3", "sku": "LAMP", "qty": 1, "eta": null}),
    ] {
        assert_eq!(x.send_body("/allocate", bad).0, 400);
    }
    assert_eq!(
        x.send_body("/add_batch", json!({"ref": "t1", "sku": "TINY", "qty": 1}))
            .0,
        201
    );
    assert_eq!(
        x.send_body(
            "/allocate",
            json!({"orderid": "o4", "sku": "TINY", "qty": 2})
        )
        .0,
        409
    );

    // change_batch_quantity: 200, 400, 404 (409 needs a lost version race, too rare to provoke).
    assert_eq!(
        x.send_body("/change_batch_quantity", json!({"ref": "b1", "qty": 5}))
            .0,
        200
    );
    assert_eq!(
        x.send_body("/change_batch_quantity", json!({"ref": "nope", "qty": 5}))
            .0,
        404
    );
    assert_eq!(
        x.send_body("/change_batch_quantity", json!({"ref": "b1", "qty": -5}))
            .0,
        400
    );
    assert_eq!(
        x.send_body("/change_batch_quantity", json!({"ref": "b1"}))
            .0,
        400
    );

    // allocations: 200 (after the reallocation), 400, 404.
    eventually("the reallocation", EVENT_TIMEOUT, || {
        let (status, body) = x.send("GET", "/allocations/o1", None);
        (status == 200 && body[0]["batchref"] == "b2").then_some(())
    });
    assert_eq!(x.send("GET", "/allocations/never", None).0, 404);
    assert_eq!(x.send("GET", "/allocations/%ZZ", None).0, 400);
    assert_eq!(
        x.send("GET", &format!("/allocations/{}", "o".repeat(129)), None)
            .0,
        400
    );

    // dead letters: 200, with the OutOfStock that could not be emailed.
    let letters = eventually("the dead letter", EVENT_TIMEOUT, || {
        let (status, body) = x.send("GET", "/admin/dead-letters", None);
        (status == 200 && body.as_array().is_some_and(|a| !a.is_empty())).then_some(body)
    });
    assert_eq!(letters[0]["envelope"]["type"], "OutOfStock");

    // Wrong content type, oversized body, unknown paths, wrong methods.
    let response = x.client.send(
        "POST",
        "/allocate",
        &[("content-type", "text/plain")],
        b"{}",
    );
    x.seen.insert(check(&spec, "POST", "/allocate", &response));
    assert_eq!(response.status, 400);
    let big = vec![b' '; 20_000];
    let response = x.client.send(
        "POST",
        "/add_batch",
        &[("content-type", "application/json")],
        &big,
    );
    x.seen.insert(check(&spec, "POST", "/add_batch", &response));
    assert_eq!(response.status, 400);
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/nowhere"),
        ("GET", "/allocations"),
        ("GET", "/admin"),
    ] {
        assert_eq!(x.send(method, path, None).0, 404, "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/allocate"),
        ("DELETE", "/add_batch"),
        ("PUT", "/change_batch_quantity"),
        ("POST", "/allocations/o1"),
        ("POST", "/admin/dead-letters"),
    ] {
        assert_eq!(x.send(method, path, None).0, 405, "{method} {path}");
    }

    // Every documented status was seen, but those no input can cause.
    let not_provoked: BTreeSet<(String, u16)> = [("changeBatchQuantity".to_owned(), 409)].into();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().unwrap().to_owned();
            for status in operation["responses"].as_object().unwrap().keys() {
                let status: u16 = status.parse().unwrap();
                let key = (id.clone(), status);
                if status >= 500 || not_provoked.contains(&key) {
                    continue;
                }
                assert!(
                    x.seen.contains(&key),
                    "{path} {id} {status} documented but never seen"
                );
            }
        }
    }
    assert!(x.seen.contains(&("unknown path".to_owned(), 404)));
    assert!(x.seen.contains(&("wrong method".to_owned(), 405)));
}

#[test]
fn the_validator_rejects_what_the_document_forbids() {
    let spec = spec();
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let valid = |name: &str, value: Value| is_valid(&spec, &schema(name), &value).is_ok();
    assert!(valid("Message", json!({"message": "OK"})));
    assert!(!valid("Message", json!({"message": 1})));
    assert!(!valid("Message", json!({"message": ""})));
    assert!(!valid("Message", json!({"message": "x", "extra": 1})));
    assert!(!valid("Allocation", json!({})));
    assert!(valid(
        "CreateBatch",
        json!({"ref": "r", "sku": "s", "qty": 0, "eta": null})
    ));
    assert!(valid(
        "CreateBatch",
        json!({"ref": "r", "sku": "s", "qty": 0, "eta": "2031-02-28"})
    ));
    assert!(!valid(
        "CreateBatch",
        json!({"ref": "r", "sku": "s", "qty": 0, "eta": "2031-02-30"})
    ));
    assert!(!valid(
        "CreateBatch",
        json!({"ref": "r", "sku": "s", "qty": 1.5})
    ));
    assert!(!valid(
        "Allocate",
        json!({"orderid": "o", "sku": "s", "qty": 0})
    ));
    assert!(!valid(
        "Allocate",
        json!({"orderid": "o", "sku": "s", "qty": 1_000_000_001u64})
    ));
    let event = json!({"id": "S:1:0", "type": "OutOfStock", "sku": "S"});
    assert!(valid("EventEnvelope", event.clone()));
    assert!(!valid(
        "EventEnvelope",
        json!({"id": "S:1:0", "type": "Nope", "sku": "S"})
    ));
    let letter = json!({"id": 1, "envelope": event, "reason": "r", "failed_at": "2026-01-01T00:00:00Z", "attempts": 5});
    assert!(valid("DeadLetter", letter.clone()));
    let mut late = letter;
    late["failed_at"] = json!("yesterday");
    assert!(!valid("DeadLetter", late));
}

/// The document's identifier `pattern` and length are exactly the server's identifier rule, for
/// strings mixing ASCII, letters of other scripts, spaces of every kind, control and format
/// characters, and lengths around the limit.
#[test]
fn the_identifier_schema_is_the_server_s_identifier_rule() {
    use proptest::prelude::*;
    let spec = spec();
    let schema = json!({"$ref": "#/components/schemas/Identifier"});
    let piece = prop_oneof![
        "[a-zA-Z0-9-]{0,40}",
        "[ \\t\\u{a0}\\u{2007}\\u{3000}\\u{85}]",
        "[\\u{200b}\\u{202e}\\u{feff}\\u{ad}\\u{e0041}\\u{110bd}\\u{1d173}]",
        "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]",
        "[éЛ灯😀]{0,70}",
    ];
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&prop::collection::vec(piece, 0..6), |pieces| {
            let text = pieces.concat();
            let server = allocation::domain::Sku::parse(&text).is_ok();
            let document = is_valid(&spec, &schema, &json!(text)).is_ok();
            prop_assert_eq!(server, document, "{:?}", text);
            Ok(())
        })
        .unwrap();
    for (text, ok) in [
        ("LAMP", true),
        ("LAMP ", false),
        ("LA\u{200b}MP", false),
        ("é".repeat(128).as_str(), true),
    ] {
        assert_eq!(
            is_valid(&spec, &schema, &json!(text)).is_ok(),
            ok,
            "{text:?}"
        );
    }
}
