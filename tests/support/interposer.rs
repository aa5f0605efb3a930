//! An interposer between the SDK and DynamoDB Local: it records every request a client makes
//! (operation, body, when it started and ended) and injects what DynamoDB allows but an emulator
//! that runs one request at a time never shows:
//!
//! - reads that are not isolated from each other: a product item read held back (by a delay, or
//!   until released) while the other reads of the same load go through, so a concurrent commit can
//!   land between them (DynamoDB isolates a single-item read, not two reads from each other);
//! - a global index that lags: a Query on the `lines` index answered from a snapshot taken earlier,
//!   for a given number of queries.
//!
//! Used by the store's snapshot tests (`tests/aws/snapshot_reads.rs`) and to count requests and
//! round trips in the cost test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use allocation::adapters::dynamodb::keys::{LINES_INDEX, LINES_PK, LINES_SK, PK, PRODUCT_SK, SK};

/// One request as the interposer saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GetItem`, `TransactWriteItems`...
    pub operation: String,
    pub request: Value,
    pub started: Instant,
    pub ended: Option<Instant>,
    /// The HTTP status of the answer (0: none yet, or the connection failed).
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    product_read_delay: Option<Duration>,
    hold_product_reads: bool,
    held: usize,
    /// `lines_pk` → (the items the index answers with, in `lines_sk` order; queries left).
    lagging: HashMap<String, (Vec<Value>, usize)>,
    stale_answers: usize,
}

/// See the module docs. Share it with `Arc`; `http_client()` makes the SDK's HTTP client.
#[derive(Debug)]
pub struct Interposer {
    state: Mutex<State>,
    /// Permits for held product reads.
    released: Semaphore,
    inner: SharedHttpClient,
}

impl Interposer {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            released: Semaphore::new(0),
            inner: aws_smithy_http_client::Builder::new().build_http(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An SDK HTTP client whose requests pass through this interposer.
    pub fn http_client(self: &Arc<Self>) -> SharedHttpClient {
        let interposer = Arc::clone(self);
        http_client_fn(move |settings, components| {
            SharedHttpConnector::new(Connector {
                inner: interposer.inner.http_connector(settings, components),
                interposer: Arc::clone(&interposer),
            })
        })
    }

    /// Every request so far, in the order they started.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.state().calls.clear();
    }

    /// How many requests of this operation were made.
    pub fn count(&self, operation: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// Sends every product item read (GetItem of `sk = PRODUCT`) this long after it was made.
    pub fn delay_product_reads(&self, delay: Option<Duration>) {
        self.state().product_read_delay = delay;
    }

    /// Holds every product item read from now on until [`Interposer::release_product_reads`].
    pub fn hold_product_reads(&self) {
        self.state().hold_product_reads = true;
    }

    /// Lets the held product reads (and any later one) go.
    pub fn release_product_reads(&self) {
        let mut state = self.state();
        state.hold_product_reads = false;
        self.released.add_permits(state.held.max(1) * 64);
    }

    /// How many product reads are being held now.
    pub fn held_product_reads(&self) -> usize {
        self.state().held
    }

    /// Answers the next `queries` Queries of `lines_pk` on the `lines` index from these items (as
    /// the index showed them a moment ago), not from the table.
    pub fn lag_index(&self, lines_pk: &str, items: Vec<Value>, queries: usize) {
        self.state()
            .lagging
            .insert(lines_pk.to_owned(), (items, queries));
    }

    /// How many index queries were answered from a lagging snapshot.
    pub fn stale_answers(&self) -> usize {
        self.state().stale_answers
    }

    fn begin(&self, operation: String, request: Value) -> usize {
        let mut state = self.state();
        state.calls.push(Call {
            operation,
            request,
            started: Instant::now(),
            ended: None,
            status: 0,
        });
        state.calls.len() - 1
    }

    fn end(&self, call: usize, status: u16) {
        if let Some(call) = self.state().calls.get_mut(call) {
            call.ended = Some(Instant::now());
            call.status = status;
        }
    }

    /// Waits as this product read must (a delay, or until released).
    async fn product_read(&self) {
        let (delay, hold) = {
            let mut state = self.state();
            if state.hold_product_reads {
                state.held += 1;
            }
            (state.product_read_delay, state.hold_product_reads)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if hold {
            if let Ok(permit) = self.released.acquire().await {
                permit.forget();
            }
            self.state().held -= 1;
        }
    }

    /// The answer of a lagging index to this Query, if it is one the interposer lags.
    fn stale_answer(&self, request: &Value) -> Option<Value> {
        if request["IndexName"] != LINES_INDEX {
            return None;
        }
        let lines_pk = request["ExpressionAttributeValues"][":pk"]["S"].as_str()?;
        let mut state = self.state();
        let (items, left) = state.lagging.get_mut(lines_pk)?;
        if *left == 0 {
            return None;
        }
        *left -= 1;
        let mut items = items.clone();
        state.stale_answers += 1;
        drop(state);
        if request["ScanIndexForward"] == false {
            items.reverse();
        }
        if let Some(start) = request.get("ExclusiveStartKey") {
            let at = items
                .iter()
                .position(|item| item[PK] == start[PK] && item[SK] == start[SK])
                .map_or(items.len(), |at| at + 1);
            items.drain(..at);
        }
        let limit = request["Limit"]
            .as_u64()
            .map_or(items.len(), |l| l as usize);
        let more = items.len() > limit;
        items.truncate(limit);
        let mut answer = json!({"Items": items, "Count": items.len(), "ScannedCount": items.len()});
        if more {
            if let Some(last) = items.last() {
                answer["LastEvaluatedKey"] = json!({
                    PK: last[PK], SK: last[SK], LINES_PK: last[LINES_PK], LINES_SK: last[LINES_SK]
                });
            }
        }
        Some(answer)
    }
}

#[derive(Debug)]
struct Connector {
    inner: SharedHttpConnector,
    interposer: Arc<Interposer>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        let body: Value = request
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or(Value::Null);
        let is_product_read = operation == "GetItem" && body["Key"][SK]["S"] == PRODUCT_SK;
        let stale = (operation == "Query")
            .then(|| self.interposer.stale_answer(&body))
            .flatten();
        let inner = self.inner.clone();
        let interposer = Arc::clone(&self.interposer);
        let call = interposer.begin(operation, body);
        HttpConnectorFuture::new(async move {
            if let Some(answer) = stale {
                interposer.end(call, 200);
                let mut response = HttpResponse::new(
                    StatusCode::try_from(200).expect("200 is a status"),
                    SdkBody::from(answer.to_string()),
                );
                response
                    .headers_mut()
                    .insert("content-type", "application/x-amz-json-1.0");
                return Ok(response);
            }
            if is_product_read {
                interposer.product_read().await;
            }
            let answer = inner.call(request).await;
            let status = answer.as_ref().map_or(0, |r| r.status().as_u16());
            interposer.end(call, status);
            answer
        })
    }
}

/// How many requests were made one after another: a request that starts after every earlier one
/// ended begins a new round trip; requests in flight together share one.
pub fn sequential_round_trips(calls: &[Call]) -> usize {
    let mut calls: Vec<&Call> = calls.iter().collect();
    calls.sort_by_key(|c| c.started);
    let mut rounds = 0;
    let mut busy_until: Option<Instant> = None;
    for call in calls {
        let ended = call.ended.unwrap_or(call.started);
        match busy_until {
            Some(until) if call.started < until => busy_until = Some(until.max(ended)),
            _ => {
                rounds += 1;
                busy_until = Some(ended);
            }
        }
    }
    rounds
}

/// An item as DynamoDB's JSON protocol writes it (`{"S": ...}`, `{"N": ...}`, ...).
pub fn item_json(item: &allocation::adapters::dynamodb::items::Item) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    fn value(v: &A) -> Value {
        match v {
            A::S(s) => json!({"S": s}),
            A::N(n) => json!({"N": n}),
            A::Bool(b) => json!({"BOOL": b}),
            A::Null(_) => json!({"NULL": true}),
            A::L(list) => json!({"L": list.iter().map(value).collect::<Vec<_>>()}),
            A::M(map) => {
                json!({"M": map.iter().map(|(k, v)| (k.clone(), value(v))).collect::<serde_json::Map<_, _>>()})
            }
            other => panic!("no JSON form here for {other:?}"),
        }
    }
    Value::Object(item.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

/// An item from DynamoDB's JSON protocol (the inverse of [`item_json`]).
pub fn item_from_json(item: &Value) -> allocation::adapters::dynamodb::items::Item {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    fn value(v: &Value) -> A {
        let (kind, inner) = v
            .as_object()
            .and_then(|o| o.iter().next())
            .unwrap_or_else(|| panic!("not an attribute value: {v}"));
        match kind.as_str() {
            "S" => A::S(inner.as_str().unwrap_or_default().to_owned()),
            "N" => A::N(inner.as_str().unwrap_or_default().to_owned()),
            "BOOL" => A::Bool(inner.as_bool().unwrap_or_default()),
            "NULL" => A::Null(true),
            "L" => A::L(inner.as_array().into_iter().flatten().map(value).collect()),
            "M" => A::M(
                inner
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), value(v)))
                    .collect(),
            ),
            other => panic!("no attribute value of type {other} here"),
        }
    }
    item.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect()
}
