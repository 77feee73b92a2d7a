//! One place that sets up logging (and, through `metrics`, the Prometheus recorder).

use anyhow::Result;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::TelemetryConfig;

/// Installs the global tracing subscriber: JSON lines or pretty text to stderr.
pub fn init_logging(config: &TelemetryConfig) -> Result<()> {
    // The storage engines log every flush, and delta-rs and its kernel every snapshot and
    // commit, at info: only their warnings reach Philo's log unless `PHILO_LOG` says otherwise.
    let filter = EnvFilter::try_from_env("PHILO_LOG").or_else(|_| {
        EnvFilter::try_new(format!(
            "{},fjall=warn,lsm_tree=warn,buoyant_kernel=warn,deltalake_core=warn",
            config.log_level
        ))
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format.as_str() {
        "json" => builder.json().flatten_event(true).try_init(),
        "pretty" => builder.compact().try_init(),
        other => anyhow::bail!("telemetry.log_format must be `pretty` or `json`, not `{other}`"),
    };
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// Installs the Prometheus recorder behind the `metrics` facade and returns its handle.
pub fn init_metrics() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])?
        .install_recorder()?;
    Ok(handle)
}
