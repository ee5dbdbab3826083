//! The process's logs and, with `--otlp-endpoint`, its traces.
//!
//! Logs go to standard error, filtered by `STOCKROOM_LOG`. Traces are the
//! `tracing` spans of each request, handler, storage call and event a
//! consumer handles, made at `debug` level, exported over OTLP/HTTP in
//! batches. Without an endpoint no OpenTelemetry layer is installed at all:
//! there is no exporter and no background thread, and unless the logs ask
//! for `debug` the spans are not even made, so nothing is propagated either.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How often finished spans are sent to the collector: short enough that a
/// trace shows up while one still looks for it, long enough to batch.
pub const OTLP_EXPORT_INTERVAL_MS: u64 = 1_000;

/// The most finished spans held for export; beyond it spans are dropped
/// rather than letting a dead collector grow the process.
pub const MAX_QUEUED_SPANS: usize = 8_192;

/// The path of the OTLP/HTTP traces endpoint under a collector's base URL.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// The crates whose spans are exported: Stockroom's own, none of its
/// libraries' (the exporter's own HTTP client among them, which must not
/// trace itself).
const EXPORTED_TARGET_PREFIX: &str = "stockroom";

/// Whether the trace exporter takes a span or event: Stockroom's spans down
/// to `debug`, the level they are made at so that they cost nothing when no
/// exporter wants them, and its events (span events in the trace) down to
/// `info`, as the logs show them.
fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    let lowest = if metadata.is_span() {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    metadata.target().starts_with(EXPORTED_TARGET_PREFIX) && *metadata.level() <= lowest
}

/// Keeps the exporter alive; [`Telemetry::shutdown`] sends what is left.
#[must_use = "dropping it without shutdown loses the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("stockroom: the last traces could not be exported: {error}");
        }
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot export traces to {endpoint}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The full traces URL of a collector given by its base URL (Jaeger's or a
/// collector's OTLP/HTTP port, `http://127.0.0.1:4318`) or by the traces URL
/// itself.
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with(OTLP_TRACES_PATH) {
        endpoint.to_owned()
    } else {
        format!("{endpoint}{OTLP_TRACES_PATH}")
    }
}

/// Installs the process's subscriber: logs to standard error in `json` or
/// text, and traces to `otlp_endpoint` when one is given, as `service_name`.
/// Call it before any async runtime starts (the exporter owns a blocking
/// HTTP client).
pub fn init(
    json: bool,
    default_filter: &str,
    otlp_endpoint: Option<&str>,
    service_name: &'static str,
) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_from_env("STOCKROOM_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let logs = if json {
        logs.json().with_filter(filter).boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    let Some(endpoint) = otlp_endpoint else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry { provider: None });
    };
    let endpoint = traces_url(endpoint);
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(&endpoint)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            source,
        })?;
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(OTLP_EXPORT_INTERVAL_MS))
        .with_max_queue_size(MAX_QUEUED_SPANS)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batches)
                .build(),
        )
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("stockroom"))
        .with_filter(tracing_subscriber::filter::filter_fn(exported));
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    tracing::info!(%endpoint, "exporting traces over OTLP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector/v1/traces"),
            "http://collector/v1/traces"
        );
    }
}
