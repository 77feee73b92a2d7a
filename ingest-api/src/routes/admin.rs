//! `/v1/admin/*`: operator endpoints, admin role only.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use philo_accounts::Role;
use philo_events::log::{ACTIONS_TOPIC, StoredRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::AuthUser;
use crate::state::AppState;

fn require_admin(user: &AuthUser) -> Result<(), ApiError> {
    if user.0.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "admin_only",
            "this endpoint is for admins",
        ))
    }
}

/// The retained range of one partition.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartitionInfo {
    pub partition: u32,
    pub low: u64,
    pub high: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogInfo {
    pub topic: String,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// First offset to return (default: the partition's low watermark).
    pub from: Option<u64>,
    /// At most this many records (1–1000, default 100).
    pub limit: Option<usize>,
}

/// One log record: its position, producer time and the envelope.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogRecord {
    pub position: String,
    pub timestamp_ms: i64,
    #[schema(value_type = Object)]
    pub record: serde_json::Value,
}

impl From<&StoredRecord> for LogRecord {
    /// The envelope as JSON; a value that is not JSON is shown as (lossy) text.
    fn from(r: &StoredRecord) -> Self {
        LogRecord {
            position: r.position().to_string(),
            timestamp_ms: r.timestamp_ms,
            record: serde_json::from_slice(&r.value).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&r.value).into_owned())
            }),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub records: Vec<LogRecord>,
    /// Offset to ask for next.
    pub next: u64,
    /// The partition's high watermark when read.
    pub high: u64,
}

#[utoipa::path(get, path = "/v1/admin/log", tag = "admin",
    responses((status = 200, body = LogInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn log_info(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<LogInfo>, ApiError> {
    require_admin(&user)?;
    let n = state.log.partitions(ACTIONS_TOPIC).await?;
    let mut partitions = Vec::with_capacity(n as usize);
    for p in 0..n {
        let wm = state.log.watermarks(ACTIONS_TOPIC, p).await?;
        partitions.push(PartitionInfo {
            partition: p,
            low: wm.low,
            high: wm.high,
        });
    }
    Ok(Json(LogInfo {
        topic: ACTIONS_TOPIC.into(),
        partitions,
    }))
}

#[utoipa::path(get, path = "/v1/admin/log/{partition}", tag = "admin",
    params(("partition" = u32, Path, description = "Partition number"), ReadParams),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "No such partition", body = ErrorBody),
        (status = 416, description = "Offset outside the retained range", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read_log(
    State(state): State<AppState>,
    user: AuthUser,
    partition: Result<Path<u32>, PathRejection>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<LogPage>, ApiError> {
    require_admin(&user)?;
    let Path(partition) = partition
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()).field("partition"))?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be 1-1000").field("limit"));
    }
    let wm = state
        .log
        .watermarks(ACTIONS_TOPIC, partition)
        .await
        .map_err(|e| match e {
            philo_events::log::LogError::PartitionOutOfRange { .. } => ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "no_such_partition",
                e.to_string(),
            ),
            e => e.into(),
        })?;
    let from = params.from.unwrap_or(wm.low);
    let records = state
        .log
        .read(ACTIONS_TOPIC, partition, from, limit)
        .await
        .map_err(|e| match e {
            philo_events::log::LogError::OffsetOutOfRange { .. } => ApiError::new(
                axum::http::StatusCode::RANGE_NOT_SATISFIABLE,
                "offset_out_of_range",
                e.to_string(),
            )
            .field("from"),
            e => e.into(),
        })?;
    let next = records.last().map_or(from, |r| r.offset + 1);
    let records = records.into_iter().map(|r| LogRecord::from(&r)).collect();
    Ok(Json(LogPage {
        records,
        next,
        high: wm.high,
    }))
}

/// What `DELETE /v1/admin/users/{id}` started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureAccepted {
    pub user_id: uuid::Uuid,
    /// `accepted` (erasure under way) or `already_erased`.
    pub status: String,
    /// The `account.erased` action; `None` when the account had been erased before.
    pub action_id: Option<uuid::Uuid>,
    /// Where the lake's receipt appears once the anonymizer has deleted and vacuumed the
    /// user's rows.
    pub receipt: Option<String>,
}

#[utoipa::path(delete, path = "/v1/admin/users/{id}", tag = "admin",
    params(("id" = uuid::Uuid, Path, description = "The account to erase")),
    responses((status = 202, body = ErasureAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "No such account", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
/// Erases an account: credentials and sessions now; `account.erased` goes to the log, so the
/// views forget the user and the lake deletes (and vacuums) every row of theirs.
pub async fn erase_user(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<uuid::Uuid>, PathRejection>,
) -> Result<(axum::http::StatusCode, Json<ErasureAccepted>), ApiError> {
    require_admin(&user)?;
    let Path(id) =
        id.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()).field("id"))?;
    let erasure = state.accounts.erase(id).await?;
    crate::outbox::drain(&state).await;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(ErasureAccepted {
            user_id: id,
            status: if erasure.action_id.is_some() {
                "accepted".into()
            } else {
                "already_erased".into()
            },
            action_id: erasure.action_id,
            receipt: erasure.action_id.map(|a| format!("/v1/admin/erasures/{a}")),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/admin/erasures/{action_id}", tag = "admin",
    params(("action_id" = uuid::Uuid, Path, description = "The `account.erased` action")),
    responses((status = 200, description = "The lake's receipt: tables, Delta versions, rows removed", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No receipt (yet)", body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
/// The lake's receipt of an erasure, once the anonymizer completed it.
pub async fn erasure_receipt(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<uuid::Uuid>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&user)?;
    let Path(id) =
        id.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()).field("action_id"))?;
    let Some(erasures) = &state.erasures else {
        return Err(ApiError::unavailable(
            "lake_unavailable",
            "this process runs no lake; ask the one that does",
        ));
    };
    match erasures.receipt(id).await {
        Ok(Some(receipt)) => Ok(Json(receipt)),
        Ok(None) => Err(ApiError::not_found(
            "no_receipt",
            "no erasure receipt for this action (yet): the lake writes it once the user's rows are gone",
        )),
        Err(e) => Err(ApiError::unavailable("lake_unavailable", e.to_string())),
    }
}
