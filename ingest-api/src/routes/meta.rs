//! Health, readiness, metrics and the published schemas.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use philo_events::log::ACTIONS_TOPIC;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, description = "A dependency is down", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state
        .accounts
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("accounts_unavailable", e.to_string()))?;
    state
        .log
        .partitions(ACTIONS_TOPIC)
        .await
        .map_err(|e| ApiError::unavailable("log_unavailable", e.to_string()))?;
    Ok(Json(Health { status: "ready" }))
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_disabled",
            "no metrics recorder is installed",
        )
        .into_response(),
    }
}

/// The JSON Schema of the envelope and of every action kind, generated from the Rust types.
pub fn schema_document() -> serde_json::Value {
    let mut doc = philo_events::action::json_schemas();
    doc["envelope"] =
        serde_json::to_value(schemars::schema_for!(philo_events::Envelope)).unwrap_or_default();
    doc
}

#[utoipa::path(get, path = "/v1/schema", tag = "ingest",
    description = "JSON Schemas of the envelope and of every action kind (with its schema version and whether clients may submit it).",
    responses((status = 200, description = "`{\"kinds\": {\"post.created\": {\"schema_version\": 1, \"client_submittable\": true, \"schema\": {…}}, …}, \"envelope\": {…}}`", body = Object)))]
pub async fn schema() -> Json<serde_json::Value> {
    Json(schema_document())
}
