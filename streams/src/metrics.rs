//! The streams' Prometheus metrics (`philo_streams_*`).

use std::time::Duration;

use crate::job::StepStats;

pub(crate) fn step(job: &'static str, s: &StepStats, took: Duration) {
    metrics::counter!("philo_streams_records_total", "job" => job).increment(s.records as u64);
    metrics::counter!("philo_streams_actions_applied_total", "job" => job)
        .increment(s.applied as u64);
    metrics::counter!("philo_streams_duplicates_skipped_total", "job" => job)
        .increment(s.duplicates as u64);
    metrics::histogram!("philo_streams_step_seconds", "job" => job).record(took.as_secs_f64());
}

/// Time of one phase of a step: `sample` (watermarks), `read`, `apply` (processing and
/// aggregation), `publish` (failed actions to their topic), `sync` (the store's atomic batch and
/// fsync), `commit` (the consumer-group commit, off the step's path).
pub(crate) fn phase(job: &'static str, phase: &'static str, took: Duration) {
    metrics::histogram!("philo_streams_step_phase_seconds", "job" => job, "phase" => phase)
        .record(took.as_secs_f64());
}

pub(crate) fn failed(job: &'static str, reason: &'static str) {
    metrics::counter!("philo_streams_failed_actions_total", "job" => job, "reason" => reason)
        .increment(1);
}

pub(crate) fn lag(job: &'static str, partition: u32, records: u64) {
    metrics::gauge!("philo_streams_lag_records", "job" => job, "partition" => partition.to_string())
        .set(records as f64);
}

pub(crate) fn deliveries(n: u64) {
    metrics::counter!("philo_streams_feed_deliveries_total").increment(n);
}

pub(crate) fn step_rows(job: &'static str, rows: usize) {
    metrics::histogram!("philo_streams_step_rows", "job" => job).record(rows as f64);
}

pub(crate) fn owned_partitions(job: &'static str, n: usize) {
    metrics::gauge!("philo_streams_owned_partitions", "job" => job).set(n as f64);
}

pub(crate) fn reshard(job: &'static str, replayed: usize) {
    metrics::counter!("philo_streams_reshards_total", "job" => job).increment(1);
    metrics::counter!("philo_streams_reshard_replayed_records_total", "job" => job)
        .increment(replayed as u64);
}

pub(crate) fn positions(job: &'static str, positions: &[u64]) {
    for (p, offset) in positions.iter().enumerate() {
        metrics::gauge!("philo_streams_position", "job" => job, "partition" => p.to_string())
            .set(*offset as f64);
    }
}
