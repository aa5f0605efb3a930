//! Input hardening against the real `local` binary: every malformed request is a 400
//! `{"message": ...}` (unknown routes 404, wrong methods 405, duplicate batch references 409), never a
//! 5xx, and none changes state. A property test sends thousands of generated bad requests.

use std::cell::RefCell;

use crate::support::local::{RawClient, RawResponse, Server, Workspace};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// Generated bad requests sent by the property test (the issue asks for at least 2,000).
const CASES: u32 = 2_500;

/// The state every bad request must leave alone.
const SKU: &str = "KNOWN-SKU";
const BATCH_IN_STOCK: &str = "known-b1";
const BATCH_SHIPMENT: &str = "known-b2";
const ORDER: &str = "known-o1";

fn seed(server: &Server) {
    for (reference, qty, eta) in [
        (BATCH_IN_STOCK, 100, Value::Null),
        (BATCH_SHIPMENT, 50, json!("2031-01-01")),
    ] {
        let body = json!({"ref": reference, "sku": SKU, "qty": qty, "eta": eta});
        assert_eq!(server.post("/add_batch", &body).0, 201);
    }
    let body = json!({"orderid": ORDER, "sku": SKU, "qty": 10});
    assert_eq!(
        server.post("/allocate", &body),
        (201, json!({"batchref": BATCH_IN_STOCK}))
    );
}

/// Checks nothing changed: the known allocation, and (by allocating exactly what must be left) the
/// batches' quantities. Changes state itself, so it runs last.
fn assert_state_unchanged(server: &Server) {
    let (status, body) = server.get(&format!("/allocations/{ORDER}"));
    assert_eq!(
        (status, body),
        (200, json!([{"sku": SKU, "batchref": BATCH_IN_STOCK}]))
    );
    for orderid in ["gen-order", "o"] {
        assert_eq!(
            server.get(&format!("/allocations/{orderid}")).0,
            404,
            "{orderid}"
        );
    }
    let probe = |orderid: &str, qty: u32| {
        server.post(
            "/allocate",
            &json!({"orderid": orderid, "sku": SKU, "qty": qty}),
        )
    };
    assert_eq!(
        probe("probe-1", 90),
        (201, json!({"batchref": BATCH_IN_STOCK}))
    );
    assert_eq!(
        probe("probe-2", 50),
        (201, json!({"batchref": BATCH_SHIPMENT}))
    );
    assert_eq!(probe("probe-3", 1).0, 409);
    let (status, _) = server.post(
        "/allocate",
        &json!({"orderid": "p", "sku": "GEN-SKU", "qty": 1}),
    );
    assert_eq!(status, 400, "no product was created by a bad request");
}

/// One request and the status it must get.
#[derive(Debug, Clone)]
struct Bad {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    request_id: Option<String>,
    expected: u16,
}

impl Bad {
    fn json(what: &'static str, path: &str, body: &Value, expected: u16) -> Self {
        Self {
            what,
            method: "POST",
            path: path.to_owned(),
            content_type: Some("application/json".to_owned()),
            body: body.to_string().into_bytes(),
            request_id: None,
            expected,
        }
    }

    fn send(&self, client: &mut RawClient) -> RawResponse {
        let mut headers = Vec::new();
        if let Some(content_type) = &self.content_type {
            headers.push(("content-type", content_type.as_str()));
        }
        if let Some(id) = &self.request_id {
            headers.push(("x-request-id", id.as_str()));
        }
        client.send(self.method, &self.path, &headers, &self.body)
    }

    /// Sends it and checks the answer: the expected status and a JSON `{"message": "..."}`.
    fn check(&self, client: &mut RawClient) -> Result<(), String> {
        let response = self.send(client);
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let context = || {
            format!(
                "{} {} {:?} body={:?} -> {} {text}",
                self.method,
                self.path,
                self.content_type,
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)]),
                response.status
            )
        };
        if response.status >= 500 {
            return Err(format!("5xx for {}: {}", self.what, context()));
        }
        if response.status != self.expected {
            return Err(format!(
                "{}: expected {}: {}",
                self.what,
                self.expected,
                context()
            ));
        }
        if response.header("content-type") != Some("application/json") {
            return Err(format!(
                "{}: not application/json: {}",
                self.what,
                context()
            ));
        }
        match response.json() {
            Some(Value::Object(map))
                if map.len() == 1
                    && map["message"]
                        .as_str()
                        .is_some_and(|m| !m.trim().is_empty()) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "{}: not {{\"message\": ...}}: {}",
                self.what,
                context()
            )),
        }
    }
}

/// The three POST routes, each with a body that is valid but for the defect applied to it. The
/// bodies never name an existing order line, so even a defect that failed to apply could not change
/// the known state... except through the product they name, which the final probe checks.
fn base(route: usize) -> (&'static str, Map<String, Value>) {
    let body = match route {
        0 => json!({"ref": "gen-ref", "sku": "GEN-SKU", "qty": 10, "eta": null}),
        1 => json!({"orderid": "gen-order", "sku": SKU, "qty": 1}),
        _ => json!({"ref": BATCH_SHIPMENT, "qty": 50}),
    };
    let path = ["/add_batch", "/allocate", "/change_batch_quantity"][route.min(2)];
    let Value::Object(map) = body else {
        unreachable!()
    };
    (path, map)
}

fn identifier_fields(route: usize) -> &'static [&'static str] {
    match route {
        0 => &["ref", "sku"],
        1 => &["orderid", "sku"],
        _ => &["ref"],
    }
}

fn required_fields(route: usize) -> &'static [&'static str] {
    match route {
        0 => &["ref", "sku", "qty"],
        1 => &["orderid", "sku", "qty"],
        _ => &["ref", "qty"],
    }
}

fn with_field(route: usize, field: &str, value: Value, what: &'static str) -> Bad {
    let (path, mut body) = base(route);
    body.insert(field.to_owned(), value);
    Bad::json(what, path, &Value::Object(body), 400)
}

fn route() -> impl Strategy<Value = usize> {
    0usize..3
}

fn malformed_json() -> impl Strategy<Value = Bad> {
    let truncated = (route(), any::<prop::sample::Index>()).prop_map(|(route, cut)| {
        let (path, body) = base(route);
        let text = Value::Object(body).to_string();
        let mut bad = Bad::json("truncated JSON", path, &Value::Null, 400);
        bad.body = text.as_bytes()[..cut.index(text.len())].to_vec();
        bad
    });
    let garbage = (
        route(),
        prop::sample::select(vec![
            &b"{"[..],
            b"}",
            b"nul",
            b"{'ref': 'x'}",
            b"{\"ref\": \"x\",}",
            b"[]",
            b"[1, 2]",
            b"\"string\"",
            b"42",
            b"true",
            b"null",
            b"\xff\xfe{}",
            b"{\"qty\": 1} trailing",
            b"{\"ref\": \"\xc3\x28\"}",
        ]),
    )
        .prop_map(|(route, bytes)| {
            let (path, _) = base(route);
            let mut bad = Bad::json("not a JSON object", path, &Value::Null, 400);
            bad.body = bytes.to_vec();
            bad
        });
    let random = (route(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(route, bytes)| {
        let (path, _) = base(route);
        let mut bad = Bad::json("random bytes", path, &Value::Null, 400);
        // A leading '#' makes sure it never parses as a JSON object.
        bad.body = [b"#".to_vec(), bytes].concat();
        bad
    });
    prop_oneof![truncated, garbage, random]
}

fn wrong_content_type() -> impl Strategy<Value = Bad> {
    let content_type = prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "text/plain",
            "application/xml",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "json",
            "text/json",
            "application/*",
            "",
        ])
        .prop_map(|s| Some(s.to_owned())),
        "[a-z]{1,10}/[a-z]{1,10}"
            .prop_filter("not JSON", |s| s != "application/json")
            .prop_map(Some),
    ];
    (route(), content_type).prop_map(|(route, content_type)| {
        let (path, body) = base(route);
        let mut bad = Bad::json("wrong content type", path, &Value::Object(body), 400);
        bad.content_type = content_type;
        bad
    })
}

fn missing_field() -> impl Strategy<Value = Bad> {
    (route(), any::<prop::sample::Index>()).prop_map(|(route, which)| {
        let fields = required_fields(route);
        let (path, mut body) = base(route);
        body.remove(fields[which.index(fields.len())]);
        Bad::json("missing field", path, &Value::Object(body), 400)
    })
}

fn wrong_type_for_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!([])),
        Just(json!(["a"])),
        Just(json!({"a": 1})),
        Just(Value::Null),
        Just(json!(1.5)),
    ]
}

fn wrong_type_for_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[0-9]{1,5}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!([1])),
        Just(json!({"qty": 1})),
        Just(Value::Null),
        Just(json!("")),
    ]
}

fn mistyped_field() -> impl Strategy<Value = Bad> {
    let identifier = (
        route(),
        any::<prop::sample::Index>(),
        wrong_type_for_string(),
    )
        .prop_map(|(route, which, value)| {
            let fields = identifier_fields(route);
            with_field(
                route,
                fields[which.index(fields.len())],
                value,
                "mistyped identifier",
            )
        });
    let qty = (route(), wrong_type_for_number())
        .prop_map(|(route, value)| with_field(route, "qty", value, "mistyped qty"));
    let eta = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!(["2031-01-01"])),
        Just(json!({"date": "2031-01-01"})),
    ]
    .prop_map(|value| with_field(0, "eta", value, "mistyped eta"));
    prop_oneof![identifier, qty, eta]
}

fn bad_quantity() -> impl Strategy<Value = Bad> {
    let fractional = (route(), 0u32..1_000_000, 1u32..1000).prop_map(|(route, whole, frac)| {
        let value = json!(f64::from(whole) + f64::from(frac) / 1000.0);
        with_field(route, "qty", value, "fractional qty")
    });
    // `5.0` is the whole number 5 (accepted, as JSON Schema's integer has it); one out of range is not.
    let float_integer = (route(), 1u32..1000).prop_map(|(route, n)| {
        let value = json!(1e9 + f64::from(n));
        with_field(route, "qty", value, "qty as a float out of range")
    });
    let too_large = (route(), 1_000_000_001u64..=u64::MAX)
        .prop_map(|(route, n)| with_field(route, "qty", json!(n), "qty out of range"));
    let huge = (route(), 10.0f64..300.0).prop_map(|(route, exponent)| {
        let mut bad = with_field(route, "qty", json!(1), "qty as a huge float");
        let text = String::from_utf8(bad.body).unwrap();
        bad.body = text
            .replace("\"qty\":1", &format!("\"qty\":1e{}", exponent as u32))
            .into_bytes();
        bad
    });
    let negative = (route(), i64::MIN..0)
        .prop_map(|(route, n)| with_field(route, "qty", json!(n), "negative qty"));
    let zero_line = Just(with_field(1, "qty", json!(0), "zero qty for a line"));
    prop_oneof![
        fractional,
        float_integer,
        too_large,
        huge,
        negative,
        zero_line
    ]
}

fn bad_date() -> impl Strategy<Value = Bad> {
    let fixed = prop::sample::select(vec![
        "2031-1-1",
        "31-01-01",
        "01/02/2031",
        "2031/01/01",
        "20310101",
        "2031-01-01T00:00:00Z",
        "2031-01-01 ",
        " 2031-01-01",
        "+2031-01-01",
        "2031-02-30",
        "2030-02-29",
        "2031-00-10",
        "2031-01-00",
        "tomorrow",
        "",
        "2031-01",
        "2031-１-01",
    ])
    .prop_map(str::to_owned);
    let out_of_range =
        (1000u32..9999, 13u32..100, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    let bad_day =
        (1000u32..9999, 1u32..13, 32u32..100).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    prop_oneof![fixed, out_of_range, bad_day]
        .prop_map(|eta| with_field(0, "eta", json!(eta), "non-ISO date"))
}

fn bad_identifier() -> impl Strategy<Value = Bad> {
    let value = prop_oneof![
        Just(String::new()),
        " {1,10}",
        "[a-z]{0,5}[\\x00-\\x1f\\x7f][a-z]{0,5}",
        // Over 128 characters: ASCII, or multi-byte characters.
        "[a-zA-Z0-9-]{129,300}",
        "é{129,200}",
        // Look-alikes: whitespace at an edge, format characters, non-ASCII spaces.
        "[a-z]{1,5}[ ]{1,3}",
        "[ ][a-z]{1,5}",
        "[a-z]{0,5}[\\u{200b}\\u{202e}\\u{feff}\\u{2066}][a-z]{0,5}",
        "[a-z]{1,5}[\\u{a0}\\u{2007}\\u{3000}][a-z]{1,5}",
    ];
    (route(), any::<prop::sample::Index>(), value).prop_map(|(route, which, value)| {
        let fields = identifier_fields(route);
        with_field(
            route,
            fields[which.index(fields.len())],
            json!(value),
            "bad identifier",
        )
    })
}

fn unknown_field() -> impl Strategy<Value = Bad> {
    let name = "[a-z_]{1,12}".prop_filter("not a known field", |name| {
        !["ref", "sku", "qty", "eta", "orderid"].contains(&name.as_str())
    });
    (route(), name).prop_map(|(route, name)| with_field(route, &name, json!(1), "unknown field"))
}

fn wrong_method() -> impl Strategy<Value = Bad> {
    let post_routes = (
        route(),
        prop::sample::select(vec![
            "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO",
        ]),
    )
        .prop_map(|(route, method)| {
            let (path, body) = base(route);
            let mut bad = Bad::json("wrong method", path, &Value::Object(body), 405);
            bad.method = method;
            bad
        });
    let get_route =
        prop::sample::select(vec!["POST", "PUT", "DELETE", "PATCH"]).prop_map(|method| {
            let mut bad = Bad::json(
                "wrong method",
                &format!("/allocations/{ORDER}"),
                &json!({}),
                405,
            );
            bad.method = method;
            bad
        });
    prop_oneof![post_routes, get_route]
}

fn unknown_route() -> impl Strategy<Value = Bad> {
    let path = prop_oneof![
        "/[a-z_]{1,20}".prop_filter("not a route", |p| {
            !["/add_batch", "/allocate", "/change_batch_quantity"].contains(&p.as_str())
        }),
        Just("/".to_owned()),
        Just("/allocations".to_owned()),
        Just("/allocations//".to_owned()),
        "/allocations/[a-z]{1,5}/[a-z]{1,5}",
        "/(add_batch|allocate|change_batch_quantity)/[a-z]{1,5}",
        "/[A-Z]{1,10}",
    ];
    (path, prop::sample::select(vec!["GET", "POST"])).prop_map(|(path, method)| {
        let mut bad = Bad::json("unknown route", &path, &json!({}), 404);
        bad.method = method;
        bad
    })
}

fn duplicate_batch() -> impl Strategy<Value = Bad> {
    (
        prop::sample::select(vec![BATCH_IN_STOCK, BATCH_SHIPMENT]),
        prop::sample::select(vec![SKU, "GEN-SKU"]),
        0u32..1000,
    )
        .prop_map(|(reference, sku, qty)| {
            let body = json!({"ref": reference, "sku": sku, "qty": qty, "eta": null});
            Bad::json("duplicate batch", "/add_batch", &body, 409)
        })
}

fn unknown_things() -> impl Strategy<Value = Bad> {
    let sku = ("[A-Z]{1,10}", 1u32..100).prop_map(|(sku, qty)| {
        let body = json!({"orderid": "gen-order", "sku": format!("UNKNOWN-{sku}"), "qty": qty});
        Bad::json("unknown sku", "/allocate", &body, 400)
    });
    let batch = ("[a-z]{1,10}", 0u32..100).prop_map(|(reference, qty)| {
        let body = json!({"ref": format!("unknown-{reference}"), "qty": qty});
        Bad::json("unknown batch", "/change_batch_quantity", &body, 404)
    });
    prop_oneof![sku, batch]
}

fn oversized_body() -> impl Strategy<Value = Bad> {
    (route(), 16_385usize..40_000).prop_map(|(route, size)| {
        let (path, body) = base(route);
        let text = Value::Object(body).to_string();
        let mut bad = Bad::json("oversized body", path, &Value::Null, 400);
        bad.body = format!("{text:<size$}").into_bytes();
        bad
    })
}

fn bad_path_id() -> impl Strategy<Value = Bad> {
    let id = prop_oneof![
        prop::sample::select(vec![
            "%ZZ", "%00", "%0A", "%7F", "%20%20", "%+41", "%-1", "%", "%4", "%C3", "%FF", "a%00b"
        ])
        .prop_map(str::to_owned),
        "[a-z]{129,200}",
    ];
    id.prop_map(|id| {
        let mut bad = Bad::json(
            "bad order id in the path",
            &format!("/allocations/{id}"),
            &json!({}),
            400,
        );
        bad.method = "GET";
        bad.content_type = None;
        bad.body = Vec::new();
        bad
    })
}

fn bad_request() -> impl Strategy<Value = Bad> {
    let request = prop_oneof![
        malformed_json(),
        wrong_content_type(),
        missing_field(),
        mistyped_field(),
        bad_quantity(),
        bad_date(),
        bad_identifier(),
        unknown_field(),
        wrong_method(),
        unknown_route(),
        duplicate_batch(),
        unknown_things(),
        oversized_body(),
        bad_path_id(),
    ];
    // Any client request id, valid or not, must not matter.
    (request, prop::option::of("[ -~]{0,200}")).prop_map(|(mut bad, id)| {
        bad.request_id = id.map(|id| id.trim().to_owned());
        bad
    })
}

#[test]
fn thousands_of_generated_bad_requests_get_json_4xx_and_change_nothing() {
    let workspace = Workspace::new();
    let server = workspace.start();
    seed(&server);
    crate::support::local::eventually(
        "the seed's event",
        crate::support::local::EVENT_TIMEOUT,
        || (server.log_text().matches("event delivered").count() == 1).then_some(()),
    );
    let client = RefCell::new(RawClient::new(&server.addr));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let sent = std::cell::Cell::new(0u32);
    runner
        .run(&bad_request(), |bad| {
            sent.set(sent.get() + 1);
            bad.check(&mut client.borrow_mut())
                .map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(sent.get() >= 2_000, "only {} requests sent", sent.get());
    // No bad request committed an event: the seed's one Allocated is still the only one delivered.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.log_text().matches("event delivered").count(), 1);
    assert_state_unchanged(&server);
}

/// One example of each kind, with the exact answers.
#[test]
fn each_kind_of_bad_request_has_a_precise_answer() {
    let workspace = Workspace::new();
    let server = workspace.start();
    seed(&server);
    let mut client = RawClient::new(&server.addr);
    let cases: Vec<(Bad, &str)> = vec![
        (
            Bad::json("", "/allocate", &json!({"orderid": "o", "sku": SKU}), 400),
            "missing field qty",
        ),
        (
            Bad::json(
                "",
                "/allocate",
                &json!({"orderid": "o", "sku": SKU, "qty": 1.5}),
                400,
            ),
            "qty must be an integer",
        ),
        (
            Bad::json(
                "",
                "/allocate",
                &json!({"orderid": "o", "sku": SKU, "qty": 0}),
                400,
            ),
            "qty must be between 1 and 1000000000",
        ),
        (
            Bad::json(
                "",
                "/add_batch",
                &json!({"ref": "r", "sku": "S", "qty": -1}),
                400,
            ),
            "qty must be between 0 and 1000000000",
        ),
        (
            Bad::json(
                "",
                "/add_batch",
                &json!({"ref": "r", "sku": "S", "qty": 1, "eta": "2031-1-1"}),
                400,
            ),
            "eta must be a date as YYYY-MM-DD, or null",
        ),
        (
            Bad::json(
                "",
                "/add_batch",
                &json!({"ref": "", "sku": "S", "qty": 1}),
                400,
            ),
            "ref must not be empty",
        ),
        (
            Bad::json(
                "",
                "/add_batch",
                &json!({"ref": "r".repeat(129), "sku": "S", "qty": 1}),
                400,
            ),
            "ref must be at most 128 characters long",
        ),
        (
            Bad::json(
                "",
                "/change_batch_quantity",
                &json!({"ref": 7, "qty": 1}),
                400,
            ),
            "ref must be a string",
        ),
        (
            Bad::json(
                "",
                "/add_batch",
                &json!({"ref": BATCH_IN_STOCK, "sku": SKU, "qty": 1}),
                409,
            ),
            "batch known-b1 already exists with qty 100, not 1",
        ),
        (
            Bad::json(
                "",
                "/change_batch_quantity",
                &json!({"ref": "nope", "qty": 1}),
                404,
            ),
            "Unknown batch nope",
        ),
        (
            Bad::json("", "/nowhere", &json!({}), 404),
            "no route for /nowhere",
        ),
    ];
    for (bad, message) in &cases {
        let response = bad.send(&mut client);
        assert_eq!(
            (response.status, response.json()),
            (bad.expected, Some(json!({"message": message}))),
            "{} {}",
            bad.method,
            bad.path
        );
    }
    let mut text_plain = Bad::json(
        "",
        "/allocate",
        &json!({"orderid": "o", "sku": SKU, "qty": 1}),
        400,
    );
    text_plain.content_type = Some("text/plain".into());
    let response = text_plain.send(&mut client);
    assert_eq!(
        response.json(),
        Some(json!({"message": "Content-Type must be application/json"}))
    );
    let mut get = Bad::json("", "/allocate", &json!({}), 405);
    get.method = "GET";
    let response = get.send(&mut client);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));
    assert!(response.json().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("not allowed"));

    // A body far over the limit (1 MiB, chunked or not) is answered 400 JSON without reading it all.
    let big = vec![b' '; 1 << 20];
    let (status, body) = server
        .client()
        .post_raw("/allocate", "application/json", &big);
    assert_eq!(
        (status, body),
        (400, json!({"message": "body must be at most 16384 bytes"}))
    );
    assert_state_unchanged(&server);
}
