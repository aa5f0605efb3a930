//! The HTTP contract (`docs/openapi.yaml`) through `entrypoints::http::handle`, with no server: statuses,
//! bodies and the input validation shared by the Lambda functions and the local server.

use std::sync::Arc;

use crate::support::memory_store::InMemoryStore;
use allocation::entrypoints::http::{handle, HttpRequest, HttpResponse};
use allocation::service::{deployed_app, App};
use serde_json::{json, Value};

fn app() -> App<InMemoryStore> {
    deployed_app(Arc::new(InMemoryStore::new()))
}

async fn call(bus: &App<InMemoryStore>, method: &str, path: &str, body: &str) -> (u16, Value) {
    call_with(bus, method, path, Some("application/json"), body).await
}

async fn call_with(
    bus: &App<InMemoryStore>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let request = HttpRequest {
        method,
        path,
        content_type,
        body: body.as_bytes(),
        request_id: Some("test"),
    };
    let HttpResponse { status, body, .. } = handle(bus, &request).await;
    (
        status,
        serde_json::from_str(&body).expect("every answer is JSON"),
    )
}

async fn post(bus: &App<InMemoryStore>, path: &str, body: Value) -> (u16, Value) {
    call(bus, "POST", path, &body.to_string()).await
}

/// Given a batch: `POST /add_batch` answers 201.
async fn add_batch(bus: &App<InMemoryStore>, body: Value) {
    let (status, answer) = post(bus, "/add_batch", body).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn test_happy_path_returns_201_and_allocated_batch() {
    let bus = app();
    let (sku, othersku) = ("WOBBLY-TABLE", "OTHER-TABLE");
    for (reference, sku, eta) in [
        ("b-later", sku, json!("2027-01-02")),
        ("b-early", sku, json!("2027-01-01")),
        ("b-other", othersku, Value::Null),
    ] {
        let (status, _) = post(
            &bus,
            "/add_batch",
            json!({"ref": reference, "sku": sku, "qty": 100, "eta": eta}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, body) = post(
        &bus,
        "/allocate",
        json!({"orderid": "o1", "sku": sku, "qty": 3}),
    )
    .await;
    assert_eq!((status, body), (201, json!({"batchref": "b-early"})));
    let (status, body) = call(&bus, "GET", "/allocations/o1", "").await;
    assert_eq!(
        (status, body),
        (200, json!([{"sku": sku, "batchref": "b-early"}]))
    );
}

#[tokio::test]
async fn test_unhappy_path_returns_400_and_error_message() {
    let bus = app();
    let (status, body) = post(
        &bus,
        "/allocate",
        json!({"orderid": "o1", "sku": "NOPE", "qty": 20}),
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({"message": "Invalid sku NOPE"}))
    );
}

#[tokio::test]
async fn out_of_stock_is_409_with_its_message() {
    let bus = app();
    add_batch(&bus, json!({"ref": "b1", "sku": "TINY", "qty": 1})).await;
    let (status, body) = post(
        &bus,
        "/allocate",
        json!({"orderid": "o1", "sku": "TINY", "qty": 2}),
    )
    .await;
    assert_eq!(
        (status, body),
        (409, json!({"message": "Out of stock for sku TINY"}))
    );
}

#[tokio::test]
async fn change_batch_quantity_answers_200_or_404() {
    let bus = app();
    add_batch(&bus, json!({"ref": "b1", "sku": "S", "qty": 10})).await;
    assert_eq!(
        post(
            &bus,
            "/change_batch_quantity",
            json!({"ref": "b1", "qty": 5})
        )
        .await
        .0,
        200
    );
    let (status, body) = post(
        &bus,
        "/change_batch_quantity",
        json!({"ref": "nope", "qty": 5}),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("Unknown batch nope"))
    );
}

#[tokio::test]
async fn a_whole_quantity_written_as_a_float_is_that_number() {
    let bus = app();
    add_batch(&bus, json!({"ref": "b1", "sku": "S", "qty": 10.0})).await;
    let answer = post(
        &bus,
        "/allocate",
        json!({"orderid": "o1", "sku": "S", "qty": 0.3e1}),
    )
    .await;
    assert_eq!(answer, (201, json!({"batchref": "b1"})));
    let refused = post(
        &bus,
        "/allocate",
        json!({"orderid": "o2", "sku": "S", "qty": 2.5}),
    )
    .await;
    assert_eq!(refused, (400, json!({"message": "qty must be an integer"})));
}

#[tokio::test]
async fn a_repeated_request_gets_the_same_answer_and_a_different_one_under_its_key_409() {
    let bus = app();
    add_batch(&bus, json!({"ref": "b1", "sku": "S", "qty": 10})).await;
    add_batch(
        &bus,
        json!({"ref": "b1", "sku": "S", "qty": 10, "eta": null}),
    )
    .await;
    let (status, body) = post(
        &bus,
        "/add_batch",
        json!({"ref": "b1", "sku": "T", "qty": 12}),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            409,
            json!({"message": "batch b1 already exists with sku S, not T; qty 10, not 12"})
        )
    );
    let allocate = |qty| json!({"orderid": "o1", "sku": "S", "qty": qty});
    for _ in 0..2 {
        let answer = post(&bus, "/allocate", allocate(3)).await;
        assert_eq!(answer, (201, json!({"batchref": "b1"})));
    }
    assert_eq!(
        post(&bus, "/allocate", allocate(7)).await,
        (
            409,
            json!({"message": "order o1 already has a line of 3 S; this request asks for 7"})
        )
    );
}

#[tokio::test]
async fn unknown_order_is_404_not_found() {
    let (status, body) = call(&app(), "GET", "/allocations/nobody", "").await;
    assert_eq!((status, body), (404, json!({"message": "not found"})));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let bus = app();
    assert_eq!(call(&bus, "GET", "/nowhere", "").await.0, 404);
    assert_eq!(call(&bus, "GET", "/allocate", "").await.0, 405);
    assert_eq!(call(&bus, "POST", "/allocations/o1", "{}").await.0, 405);
    let request = HttpRequest {
        method: "DELETE",
        path: "/add_batch",
        content_type: None,
        body: b"",
        request_id: None,
    };
    let response = handle(&bus, &request).await;
    assert_eq!(response.headers, [("allow", "POST".to_owned())]);
}

#[tokio::test]
async fn bad_input_is_400_with_a_message_naming_the_problem_and_changes_nothing() {
    let bus = app();
    add_batch(&bus, json!({"ref": "b1", "sku": "S", "qty": 10})).await;
    let long = "x".repeat(129);
    let cases: Vec<(&str, String, &str)> = vec![
        ("/allocate", "{not json".into(), "not valid JSON"),
        ("/allocate", "[1, 2]".into(), "JSON object"),
        (
            "/allocate",
            json!({"sku": "S", "qty": 1}).to_string(),
            "missing field orderid",
        ),
        (
            "/allocate",
            json!({"orderid": 5, "sku": "S", "qty": 1}).to_string(),
            "orderid must be a string",
        ),
        (
            "/allocate",
            json!({"orderid": "o", "sku": "S", "qty": "1"}).to_string(),
            "qty must be a number",
        ),
        (
            "/allocate",
            json!({"orderid": "o", "sku": "S", "qty": 1.5}).to_string(),
            "qty must be an integer",
        ),
        (
            "/allocate",
            json!({"orderid": "o", "sku": "S", "qty": 0}).to_string(),
            "qty must be between 1",
        ),
        (
            "/allocate",
            json!({"orderid": "o", "sku": "S", "qty": -2}).to_string(),
            "qty must be between 1",
        ),
        (
            "/allocate",
            json!({"orderid": "o", "sku": "S", "qty": 10_000_000_000u64}).to_string(),
            "qty must be between 1",
        ),
        (
            "/allocate",
            json!({"orderid": " ", "sku": "S", "qty": 1}).to_string(),
            "orderid must not be empty",
        ),
        (
            "/allocate",
            json!({"orderid": long, "sku": "S", "qty": 1}).to_string(),
            "at most 128 characters",
        ),
        (
            "/allocate",
            json!({"orderid": "o", "sku": "S", "qty": 1, "extra": true}).to_string(),
            "unknown field",
        ),
        (
            "/add_batch",
            json!({"ref": "b2", "sku": "S", "qty": -1}).to_string(),
            "qty must be between 0",
        ),
        (
            "/add_batch",
            json!({"ref": "b2", "sku": "S", "qty": 1, "eta": "15/01/2027"}).to_string(),
            "YYYY-MM-DD",
        ),
        (
            "/add_batch",
            json!({"ref": "b2", "sku": "S", "qty": 1, "eta": "2027-02-30"}).to_string(),
            "YYYY-MM-DD",
        ),
        (
            "/change_batch_quantity",
            json!({"ref": "b1"}).to_string(),
            "missing field qty",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = call(&bus, "POST", path, &body).await;
        let message = answer["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{path} {body} → {answer}");
        assert!(
            message.contains(expected),
            "{path} {body}: {message:?} should mention {expected:?}"
        );
    }
    let (status, answer) = call_with(
        &bus,
        "POST",
        "/allocate",
        Some("text/plain"),
        r#"{"orderid":"o","sku":"S","qty":1}"#,
    )
    .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("Content-Type must be application/json"))
    );

    // Nothing changed: b1 still has all of its 10.
    let (status, body) = post(
        &bus,
        "/allocate",
        json!({"orderid": "probe", "sku": "S", "qty": 10}),
    )
    .await;
    assert_eq!((status, body), (201, json!({"batchref": "b1"})));
    assert_eq!(
        post(
            &bus,
            "/add_batch",
            json!({"ref": "b2", "sku": "S", "qty": 1})
        )
        .await
        .0,
        201,
        "b2 was never created"
    );
}

#[tokio::test]
async fn order_ids_in_paths_are_percent_decoded() {
    let bus = app();
    add_batch(&bus, json!({"ref": "b1", "sku": "S", "qty": 10})).await;
    post(
        &bus,
        "/allocate",
        json!({"orderid": "order 1/ä", "sku": "S", "qty": 1}),
    )
    .await;
    let (status, _) = call(&bus, "GET", "/allocations/order%201%2F%C3%A4", "").await;
    assert_eq!(status, 200);
    assert_eq!(call(&bus, "GET", "/allocations/%FF", "").await.0, 400);
}

#[test]
fn contention_or_throttling_past_the_retries_is_503_with_retry_after_and_409_stays_for_business() {
    use allocation::entrypoints::http::error_response;
    use allocation::service::{ServiceError, StoreError};
    let retry_after = |response: &HttpResponse| {
        response
            .headers
            .iter()
            .find(|(name, _)| *name == "retry-after")
            .map(|(_, value)| value.clone())
    };
    let cases = [
        (
            ServiceError::Store(StoreError::VersionConflict { sku: "HOT".into() }),
            503,
            "too many concurrent updates of product HOT; try again",
        ),
        (
            ServiceError::Store(StoreError::Throttled("capacity".into())),
            503,
            "service busy, try again",
        ),
        (
            ServiceError::Store(StoreError::Unavailable("network".into())),
            503,
            "service unavailable, try again",
        ),
        (
            ServiceError::OutOfStock("HOT".into()),
            409,
            "Out of stock for sku HOT",
        ),
        (
            ServiceError::DuplicateBatch("b1".into()),
            409,
            "Batch b1 already exists",
        ),
    ];
    for (error, status, message) in cases {
        let response = error_response(&error);
        assert_eq!(response.status, status, "{error}");
        let body: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(body, json!({ "message": message }));
        let expected = (status == 503).then(|| "1".to_owned());
        assert_eq!(retry_after(&response), expected, "{error}");
    }
}
