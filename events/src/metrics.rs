//! Metrics of the events crate (the embedded log), named `philo_log_<what>_<unit>`.

use std::time::Duration;

/// Records and batches made durable by one group commit.
pub(crate) fn group_commit(records: usize, took: Duration) {
    metrics::counter!("philo_log_appended_records_total").increment(records as u64);
    metrics::counter!("philo_log_group_commits_total").increment(1);
    metrics::histogram!("philo_log_group_commit_records").record(records as f64);
    metrics::histogram!("philo_log_group_commit_duration_seconds").record(took.as_secs_f64());
}

/// Records whose append failed in storage.
pub(crate) fn append_failed(records: usize) {
    metrics::counter!("philo_log_append_failed_records_total").increment(records as u64);
}

/// Records removed by retention.
pub(crate) fn retention_deleted(records: u64) {
    metrics::counter!("philo_log_retention_deleted_records_total").increment(records);
}
