//! Logging: `tracing` with an env filter, pretty or JSON lines.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
/// Calling it twice is harmless (the second call does nothing), which keeps
/// in-process tests simple.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    // Which actix worker served a line (`actix-rt|system:0|arbiter:N`).
                    .with_thread_names(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    drop(result);
}

/// The process-wide Prometheus recorder, installed on first use (so several
/// applications in one test process share it). Concurrent first callers wait
/// for the one that installs it.
pub fn metrics_handle() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Result<metrics_exporter_prometheus::PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // The request series are kept by `coffee_http::metrics` itself
            // (per thread) and rendered after the recorder's.
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|e| format!("another metrics recorder is installed: {e}"))?;
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}
