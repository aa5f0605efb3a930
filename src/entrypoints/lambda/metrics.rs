//! Metrics in CloudWatch Embedded Metric Format (EMF): one JSON document per invocation, written to
//! stdout, from which CloudWatch extracts the metrics (namespace `METRICS_NAMESPACE`, the template's
//! `Allocation/<stack>`, else `Allocation`; dimension `function`, never a SKU). Each document carries
//! the function's own application log level as its `level`, so Lambda's log-level filtering, which
//! drops JSON lines under that level, never drops a metric.
//!
//! The counts come from the function's own bus (`BusStats` and its store's records read, before and
//! after the invocation)
//! and from its adapter (events published, failed records). The document is emitted as a `tracing`
//! event with target [`EMF_TARGET`]; `logging::init` writes those events' `emf` field to stdout as
//! is, beside the JSON logs, so the tests can read the documents with a subscriber of their own.
//! The counts are the bus's own, not a process-global metrics recorder's, so each bus's are its own
//! even when a test process runs several.

use std::sync::atomic::{AtomicBool, Ordering};

use lambda_runtime::Context;
use serde_json::{json, Map, Value};

use crate::service::{App, ProductRepository, RecordsRead};

/// The CloudWatch namespace of the service's metrics when `METRICS_NAMESPACE` is not set.
pub const NAMESPACE: &str = "Allocation";
/// The variable naming the namespace (template.yaml: `Allocation/<stack name>`, one per stack).
pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";

/// Where a document goes and at which level it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'a> {
    pub namespace: &'a str,
    /// Lambda's application log level name (`TRACE` ... `FATAL`).
    pub level: &'a str,
}

impl Destination<'static> {
    /// From the environment, read once: `METRICS_NAMESPACE` and `AWS_LAMBDA_LOG_LEVEL` (Lambda's
    /// `INFO` when unset or unknown).
    pub fn from_env() -> Destination<'static> {
        static DESTINATION: std::sync::OnceLock<(String, &'static str)> =
            std::sync::OnceLock::new();
        let (namespace, level) = DESTINATION.get_or_init(|| {
            let namespace = std::env::var(METRICS_NAMESPACE)
                .ok()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| NAMESPACE.to_owned());
            let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_default();
            (namespace, lambda_log_level(&level))
        });
        Destination { namespace, level }
    }
}

/// Lambda's name for an application log level, `INFO` for anything it does not know.
pub fn lambda_log_level(level: &str) -> &'static str {
    const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let level = level.trim().to_ascii_uppercase();
    LEVELS.into_iter().find(|l| *l == level).unwrap_or("INFO")
}
pub use crate::entrypoints::logging::EMF_TARGET;

/// What one invocation did, as counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvocationMetrics {
    /// Allocations answered with a batch.
    pub allocations: u64,
    /// Allocations answered out of stock.
    pub out_of_stock: u64,
    /// Units of work started again after a version conflict or throttling.
    pub version_conflict_retries: u64,
    /// Events published to the events topic.
    pub events_published: u64,
    /// Queue records reported failed (redelivered later).
    pub reallocation_failures: u64,
    /// 1 on the first invocation of an execution environment.
    pub cold_starts: u64,
    /// Product, batch and allocation records the loads read: what the invocation's work cost, which
    /// must not grow with a SKU's history (`docs/storage.md`).
    pub records_read: u64,
}

/// The bus's counters at one moment, to subtract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusCounts {
    allocations: u64,
    out_of_stock: u64,
    retries: u64,
    records_read: u64,
}

impl BusCounts {
    /// The counters of the bus and of its store's loads.
    pub fn of<S: ProductRepository + RecordsRead>(app: &App<S>) -> Self {
        let stats = app.bus.stats();
        Self {
            allocations: stats.allocations.load(Ordering::Relaxed),
            out_of_stock: stats.out_of_stock.load(Ordering::Relaxed),
            retries: stats.conflict_retries.load(Ordering::Relaxed),
            records_read: app.store.records_read(),
        }
    }

    /// The metrics of what the bus did since `before`.
    pub fn since(self, before: BusCounts) -> InvocationMetrics {
        InvocationMetrics {
            allocations: self.allocations.saturating_sub(before.allocations),
            out_of_stock: self.out_of_stock.saturating_sub(before.out_of_stock),
            version_conflict_retries: self.retries.saturating_sub(before.retries),
            records_read: self.records_read.saturating_sub(before.records_read),
            ..InvocationMetrics::default()
        }
    }
}

impl InvocationMetrics {
    /// The metrics' names and values, in the document's order.
    pub fn values(&self) -> [(&'static str, u64); 7] {
        [
            ("Allocations", self.allocations),
            ("OutOfStock", self.out_of_stock),
            ("VersionConflictRetries", self.version_conflict_retries),
            ("EventsPublished", self.events_published),
            ("ReallocationFailures", self.reallocation_failures),
            ("ColdStarts", self.cold_starts),
            ("RecordsRead", self.records_read),
        ]
    }

    /// The EMF document: the metrics under dimension `function`, with the request and trace ids as
    /// properties (searchable in CloudWatch Logs Insights), logged at `destination.level`.
    pub fn document(
        &self,
        destination: Destination<'_>,
        function: &str,
        request_id: &str,
        trace_id: Option<&str>,
        timestamp_ms: u64,
    ) -> Value {
        let definitions: Vec<Value> = self
            .values()
            .iter()
            .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
            .collect();
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": destination.namespace,
                    "Dimensions": [["function"]],
                    "Metrics": definitions,
                }],
            }),
        );
        document.insert("level".into(), json!(destination.level));
        document.insert("function".into(), json!(function));
        for (name, value) in self.values() {
            document.insert(name.into(), json!(value));
        }
        document.insert("requestId".into(), json!(request_id));
        if let Some(trace_id) = trace_id {
            document.insert("traceId".into(), json!(trace_id));
        }
        Value::Object(document)
    }

    /// Emits the document of this invocation (see the module documentation). The first emission of
    /// the process counts its cold start.
    pub fn emit(mut self, context: &Context) {
        static STARTED: AtomicBool = AtomicBool::new(false);
        if !STARTED.swap(true, Ordering::Relaxed) {
            self.cold_starts = 1;
        }
        // The runtime read it from `AWS_LAMBDA_FUNCTION_NAME` at start.
        let function = match context.env_config.function_name.as_str() {
            "" => "unknown",
            name => name,
        };
        let timestamp_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let document = self.document(
            Destination::from_env(),
            function,
            &context.request_id,
            context.xray_trace_id.as_deref(),
            timestamp_ms,
        );
        tracing::info!(target: EMF_TARGET, emf = %document);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_declares_every_metric_under_the_function_dimension() {
        let metrics = InvocationMetrics {
            allocations: 3,
            out_of_stock: 1,
            records_read: 4,
            ..InvocationMetrics::default()
        };
        let destination = Destination {
            namespace: "Allocation/prod",
            level: "WARN",
        };
        let document = metrics.document(
            destination,
            "allocate",
            "req-1",
            Some("Root=1-abc"),
            1_700_000_000_000,
        );
        let declared = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "Allocation/prod");
        assert_eq!(document["level"], "WARN", "kept by Lambda's filter at WARN");
        assert_eq!(declared["Dimensions"], json!([["function"]]));
        assert_eq!(declared["Metrics"].as_array().unwrap().len(), 7);
        assert_eq!(document["function"], "allocate");
        assert_eq!(document["Allocations"], 3);
        assert_eq!(document["OutOfStock"], 1);
        assert_eq!(document["ColdStarts"], 0);
        assert_eq!(document["RecordsRead"], 4);
        assert_eq!(document["traceId"], "Root=1-abc");
        assert_eq!(document["_aws"]["Timestamp"], 1_700_000_000_000_u64);
    }
}

#[cfg(test)]
mod level_tests {
    use super::lambda_log_level;

    #[test]
    fn a_document_is_logged_at_the_function_s_own_level_whatever_it_is() {
        for (configured, level) in [
            ("WARN", "WARN"),
            ("error", "ERROR"),
            ("FATAL", "FATAL"),
            ("", "INFO"),
            ("verbose", "INFO"),
        ] {
            assert_eq!(lambda_log_level(configured), level, "{configured:?}");
        }
    }
}
