//! Metrics of the ingest API, named `philo_ingest_<what>_<unit>`.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Actions made durable, and how long the append took.
pub(crate) fn appended(actions: usize, took: Duration) {
    metrics::counter!("philo_ingest_actions_accepted_total").increment(actions as u64);
    metrics::histogram!("philo_ingest_append_duration_seconds").record(took.as_secs_f64());
}

/// A read with `after=` that had to wait for the views: how long, split into the watermark
/// check (`check`, a broker round trip on Kafka) and the wait for the stream job (`views`).
pub(crate) fn read_wait(check: Duration, views: Duration) {
    metrics::histogram!("philo_ingest_read_after_wait_seconds", "part" => "check")
        .record(check.as_secs_f64());
    metrics::histogram!("philo_ingest_read_after_wait_seconds", "part" => "views")
        .record(views.as_secs_f64());
}

/// An action refused, by error code.
pub(crate) fn rejected(code: &str) {
    metrics::counter!("philo_ingest_actions_rejected_total", "code" => code.to_owned())
        .increment(1);
}

/// A request answered from its idempotency key.
pub(crate) fn idempotent_replay() {
    metrics::counter!("philo_ingest_idempotent_replays_total").increment(1);
}

/// An open live notification stream; counted in `philo_ingest_notification_streams` until
/// dropped.
pub(crate) struct OpenStream(());

impl OpenStream {
    pub(crate) fn new() -> Self {
        metrics::gauge!("philo_ingest_notification_streams").increment(1.0);
        Self(())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("philo_ingest_notification_streams").decrement(1.0);
    }
}

/// Counts and times every request by route template, method and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("philo_ingest_http_requests_total", &labels).increment(1);
    metrics::histogram!("philo_ingest_http_request_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    response
}
