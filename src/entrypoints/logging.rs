//! Logging setup: JSON lines on Lambda (CloudWatch), human-readable text locally. The level comes from
//! `RUST_LOG`, else from Lambda's `AWS_LAMBDA_LOG_LEVEL` (the function's application log level), else
//! `info`. On Lambda, the EMF metric documents (`lambda::metrics`) go to stdout as they are.

use std::fmt;
use std::io::{IsTerminal, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The `tracing` target of the EMF metric documents (see `lambda::metrics`).
pub const EMF_TARGET: &str = "allocation::emf";

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The filter: `RUST_LOG` if set, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn filter() -> EnvFilter {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return filter;
    }
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_default();
    EnvFilter::new(lambda_level(&level))
}

/// A `tracing` level for Lambda's application log level (`TRACE` … `FATAL`); `info` otherwise.
pub fn lambda_level(level: &str) -> &'static str {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    }
}

/// Installs the global subscriber once (later calls are ignored).
pub fn init(format: LogFormat) {
    let is_metric = |metadata: &tracing::Metadata<'_>| metadata.target() == EMF_TARGET;
    let _already_set = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(false)
                    .with_filter(filter())
                    .with_filter(filter_fn(move |metadata| !is_metric(metadata))),
            )
            .with(EmfLayer.with_filter(filter_fn(is_metric)))
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter())
                    .with_filter(filter_fn(move |metadata| !is_metric(metadata))),
            )
            .try_init(),
    };
}

/// Writes the `emf` field of each metric event to stdout, one line each.
struct EmfLayer;

impl<S: Subscriber> Layer<S> for EmfLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        if let Some(document) = emf_field(event) {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{document}");
        }
    }
}

/// The `emf` field of an event, as text.
pub fn emf_field(event: &Event<'_>) -> Option<String> {
    struct Find(Option<String>);
    impl Visit for Find {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "emf" {
                self.0 = Some(value.to_owned());
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "emf" {
                self.0 = Some(format!("{value:?}"));
            }
        }
    }
    let mut find = Find(None);
    event.record(&mut find);
    find.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_log_levels_map_to_tracing_levels() {
        assert_eq!(lambda_level("DEBUG"), "debug");
        assert_eq!(lambda_level("FATAL"), "error");
        assert_eq!(lambda_level("warn"), "warn");
        assert_eq!(lambda_level(""), "info");
    }
}
