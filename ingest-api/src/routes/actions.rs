//! `POST /v1/actions` and `POST /v1/actions/batch`: validate, authenticate, append durably.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use philo_events::log::{ACTIONS_TOPIC, Position, Record};
use philo_events::{Action, Envelope};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{AuthUser, JsonBody};
use crate::idempotency::{IdempotencyEntry, IdempotencyStore};
use crate::metrics;
use crate::state::AppState;

/// An accepted action: durable in the log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Accepted {
    /// The action's id (UUIDv7), also the id of the entity it creates.
    pub id: Uuid,
    /// The action's kind, e.g. `post.created`.
    pub kind: String,
    /// Position token `<partition>:<offset>`; pass it as `after=` to reads to see this write.
    pub position: String,
}

/// One item of a batch response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BatchItem {
    Accepted {
        index: usize,
        id: Uuid,
        kind: String,
        #[serde(default)]
        position: String,
    },
    Rejected {
        index: usize,
        #[serde(flatten)]
        error: ErrorBody,
    },
}

/// The answer to a batch: every item's fate, in input order. When nothing was accepted (422)
/// it is also an [`ErrorBody`]: `code` is `all_rejected`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BatchResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<BatchItem>,
    /// `all_rejected` when no action was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a request will append and answer; stored while pending under an idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Plan {
    Single { id: Uuid, kind: String },
    Batch { results: Vec<BatchItem> },
}

/// Decodes, authorises and validates one action for `actor`.
pub(crate) fn prepare(raw: &[u8], actor: Uuid, now: DateTime<Utc>) -> Result<Envelope, ApiError> {
    let action = Action::from_json(raw)?;
    let kind = action.kind();
    if !kind.client_submittable() {
        return Err(ApiError::forbidden(
            "server_only_kind",
            format!(
                "`{}` actions are emitted by the server, not submitted",
                kind.as_str()
            ),
        )
        .field("type"));
    }
    action.validate(now)?;
    Ok(Envelope::new(actor, action, now))
}

/// W3C trace context (`traceparent`) for the records one request appends: the caller's trace
/// continued under a new span id when the request carries a valid `traceparent`, else a new
/// trace. Consumers of the topic join their work to the request that caused it.
pub(crate) fn trace_context(headers: Option<&HeaderMap>) -> Bytes {
    // Random hex from UUIDv4s, encoded into stack buffers: this runs once per request.
    let mut span_buf = Uuid::encode_buffer();
    let span = &Uuid::new_v4().simple().encode_lower(&mut span_buf)[..16];
    let caller = headers
        .and_then(|h| h.get("traceparent"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let mut parts = v.trim().split('-');
            let is_hex = |s: &str, n: usize| {
                s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            };
            let (version, trace, parent, flags) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            (is_hex(version, 2)
                && version != "ff"
                && is_hex(trace, 32)
                && trace.bytes().any(|b| b != b'0')
                && is_hex(parent, 16)
                && is_hex(flags, 2))
            .then_some((trace, flags))
        });
    let mut trace_buf = Uuid::encode_buffer();
    let (trace, flags) = match caller {
        Some(c) => c,
        None => (&*Uuid::new_v4().simple().encode_lower(&mut trace_buf), "01"),
    };
    let mut out = Vec::with_capacity(55);
    for part in ["00-", trace, "-", span, "-", flags] {
        out.extend_from_slice(part.as_bytes());
    }
    Bytes::from(out)
}

/// The log record for an envelope: keyed by actor, with headers for the content type, the kind
/// and its schema version, and the trace context.
pub(crate) fn record_of(env: &Envelope, trace: &Bytes) -> Record {
    Record::new(
        Bytes::copy_from_slice(env.actor_id.as_bytes()),
        env.to_json(),
        env.received_at.timestamp_millis(),
    )
    .with_header("content-type", Bytes::from_static(b"application/json"))
    .with_header(
        philo_events::KIND_HEADER,
        Bytes::from_static(env.action.kind().as_str().as_bytes()),
    )
    .with_header(
        "philo-schema-version",
        Bytes::from(env.schema_version.to_string()),
    )
    .with_header("traceparent", trace.clone())
}

#[utoipa::path(
    post, path = "/v1/actions", tag = "ingest",
    description = "Append one action. The body is `{\"type\": \"<kind>\", ...}`; the kinds and their JSON Schemas are at `GET /v1/schema`. Answers 202 only once the action is durable in the log.",
    request_body(content = Object, content_type = "application/json", description = "An action, e.g. `{\"type\":\"post.created\",\"title\":\"…\",\"body\":\"…\",\"tags\":[]}`"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key within 24 h return the first result and append nothing")),
    responses(
        (status = 202, description = "Durable in the log", body = Accepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Server-only kind", body = ErrorBody),
        (status = 409, description = "Same Idempotency-Key in flight", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Unknown kind/field, invalid value", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
        (status = 503, description = "Log unavailable; nothing was appended", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_action(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    state.limits.check_user(claims.sub, 1)?;
    submit(&state, claims.sub, &headers, "/v1/actions", &body, &body).await
}

/// Appends one action of `actor` the way `POST /v1/actions` does: the size limit, the
/// vocabulary's decoding and validation, the request's `Idempotency-Key`, the durable append;
/// answers 202 [`Accepted`]. `request` is the request body as sent (what an idempotency key's
/// fingerprint covers, with `route`), `action` the action's JSON. Callers check the rate limit
/// first, as they may do other work before.
pub(crate) async fn submit(
    state: &AppState,
    actor: Uuid,
    headers: &HeaderMap,
    route: &str,
    request: &[u8],
    action: &[u8],
) -> Result<Response, ApiError> {
    if action.len() > state.config.max_action_bytes {
        return Err(ApiError::too_large(
            "payload_too_large",
            format!(
                "an action is at most {} bytes",
                state.config.max_action_bytes
            ),
        ));
    }
    let now = state.clock.now();
    let plan = || -> Result<(Plan, Vec<Envelope>), ApiError> {
        let env = prepare(action, actor, now).inspect_err(|e| metrics::rejected(&e.body.code))?;
        Ok((
            Plan::Single {
                id: env.id,
                kind: env.action.kind().as_str().to_owned(),
            },
            vec![env],
        ))
    };
    run(state, actor, headers, route, request, plan).await
}

#[utoipa::path(
    post, path = "/v1/actions/batch", tag = "ingest",
    description = "Append up to 500 actions (512 KiB) in one request. Valid actions are appended durably; invalid ones are rejected with their code. 202 when all were accepted, 207 when some were, 422 when none were.",
    request_body(content = Vec<Object>, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key within 24 h return the first result and append nothing")),
    responses(
        (status = 202, description = "All accepted", body = BatchResponse),
        (status = 207, description = "Some accepted, some rejected", body = BatchResponse),
        (status = 400, description = "Not a JSON array", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Too many actions or too many bytes", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Every action was rejected (`all_rejected`; the body also carries `accepted`, `rejected` and per-item `results`), the batch is empty, or the Idempotency-Key was reused", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Log unavailable; nothing was appended", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_batch(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let items: Vec<&RawValue> = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::bad_request(
            "expected_array",
            "the batch body must be a JSON array of actions",
        ),
        _ => ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}")),
    })?;
    let max = state.config.max_batch_actions;
    if items.len() > max {
        return Err(ApiError::too_large(
            "batch_too_large",
            format!("a batch holds at most {max} actions, got {}", items.len()),
        ));
    }
    if items.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_batch",
            "the batch holds no actions",
        ));
    }
    state.limits.check_user(claims.sub, items.len() as u32)?;
    let now = state.clock.now();
    let plan = || -> Result<(Plan, Vec<Envelope>), ApiError> {
        let mut results = Vec::with_capacity(items.len());
        let mut envelopes = Vec::with_capacity(items.len());
        for (index, raw) in items.iter().enumerate() {
            match prepare(raw.get().as_bytes(), claims.sub, now) {
                Ok(env) => {
                    results.push(BatchItem::Accepted {
                        index,
                        id: env.id,
                        kind: env.action.kind().as_str().to_owned(),
                        position: String::new(),
                    });
                    envelopes.push(env);
                }
                Err(e) => {
                    metrics::rejected(&e.body.code);
                    results.push(BatchItem::Rejected {
                        index,
                        error: e.body,
                    });
                }
            }
        }
        Ok((Plan::Batch { results }, envelopes))
    };
    run(
        &state,
        claims.sub,
        &headers,
        "/v1/actions/batch",
        &body,
        plan,
    )
    .await
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Runs a plan, under the request's idempotency key when it has one.
async fn run(
    state: &AppState,
    user: Uuid,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    plan: impl FnOnce() -> Result<(Plan, Vec<Envelope>), ApiError>,
) -> Result<Response, ApiError> {
    let trace = trace_context(Some(headers));
    let Some(key) = headers.get(IDEMPOTENCY_HEADER) else {
        let (plan, envelopes) = plan()?;
        let records = envelopes.iter().map(|e| record_of(e, &trace)).collect();
        let positions = append(state, records).await?;
        let (status, body) = finish(plan, &positions);
        return Ok(json_bytes(status, body));
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
            .field("Idempotency-Key")
        })?
        .to_owned();
    let fingerprint: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        h.update([0]);
        h.update(body);
        h.finalize().into()
    };
    if !state.idempotency.begin(user, &key) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still being processed",
        ));
    }
    let result = run_idempotent(state, user, &key, fingerprint, &trace, plan).await;
    state.idempotency.end(user, &key);
    result
}

async fn run_idempotent(
    state: &AppState,
    user: Uuid,
    key: &str,
    fingerprint: [u8; 32],
    trace: &Bytes,
    plan: impl FnOnce() -> Result<(Plan, Vec<Envelope>), ApiError>,
) -> Result<Response, ApiError> {
    let now_ms = state.clock.now().timestamp_millis();
    let store = state.idempotency.clone();
    let (owned_key, stored) = (key.to_owned(), store.clone());
    if let Some(entry) = on_store(move || stored.get(user, &owned_key, now_ms)).await? {
        if entry.fingerprint != fingerprint {
            return Err(ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ));
        }
        metrics::idempotent_replay();
        if entry.status != 0 {
            let mut response = (
                StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK),
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                entry.body,
            )
                .into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return Ok(response);
        }
        // Pending: the first attempt may or may not have reached the log. Re-append the same
        // records (same ids): consumers dedupe on id, so no second action comes to exist.
        let plan: Plan =
            serde_json::from_slice(&entry.body).map_err(|e| ApiError::internal(e.to_string()))?;
        let records = entry
            .pending
            .iter()
            .map(|raw| Envelope::from_json(raw).map(|env| record_of(&env, trace)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let positions = append(state, records).await?;
        return complete(
            state,
            user,
            key,
            entry.fingerprint,
            entry.created_ms,
            plan,
            &positions,
        )
        .await;
    }
    let (plan, envelopes) = match plan() {
        Ok(p) => p,
        Err(e) => {
            // A refused request is remembered too (except transient failures), so a retry
            // with the same key gets the same answer.
            if e.status.is_client_error() && e.status != StatusCode::TOO_MANY_REQUESTS {
                let entry = IdempotencyEntry {
                    fingerprint,
                    created_ms: now_ms,
                    status: e.status.as_u16(),
                    body: serde_json::to_vec(&e.body).unwrap_or_default(),
                    pending: vec![],
                };
                put_entry(&store, user, key, entry, false).await?;
            }
            return Err(e);
        }
    };
    let pending = IdempotencyEntry {
        fingerprint,
        created_ms: now_ms,
        status: 0,
        body: serde_json::to_vec(&plan).map_err(|e| ApiError::internal(e.to_string()))?,
        pending: envelopes.iter().map(Envelope::to_json).collect(),
    };
    put_entry(&store, user, key, pending, true).await?;
    let records = envelopes.iter().map(|e| record_of(e, trace)).collect();
    let positions = append(state, records).await?;
    complete(state, user, key, fingerprint, now_ms, plan, &positions).await
}

/// Runs an idempotency-store call on the blocking pool: the embedded store reads and writes (for
/// pending entries, fsyncs) a local database, which must not stall an async worker.
async fn on_store<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, crate::idempotency::IdempotencyError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| ApiError::internal(format!("idempotency task failed: {e}")))?
        .map_err(|e| ApiError::unavailable("idempotency_unavailable", e.to_string()))
}

async fn put_entry(
    store: &Arc<dyn IdempotencyStore>,
    user: Uuid,
    key: &str,
    entry: IdempotencyEntry,
    durable: bool,
) -> Result<(), ApiError> {
    let (store, key) = (store.clone(), key.to_owned());
    on_store(move || store.put(user, &key, &entry, durable)).await
}

async fn complete(
    state: &AppState,
    user: Uuid,
    key: &str,
    fingerprint: [u8; 32],
    created_ms: i64,
    plan: Plan,
    positions: &[Position],
) -> Result<Response, ApiError> {
    let (status, bytes) = finish(plan, positions);
    let done = IdempotencyEntry {
        fingerprint,
        created_ms,
        status: status.as_u16(),
        body: bytes.clone(),
        pending: vec![],
    };
    // Not fsync'd: if this is lost in a crash the entry stays pending, which is safe (above).
    if let Err(e) = put_entry(&state.idempotency, user, key, done, false).await {
        tracing::warn!(error = %e.body.message, "could not mark idempotency entry done; it stays pending");
    }
    Ok(json_bytes(status, bytes))
}

async fn append(state: &AppState, records: Vec<Record>) -> Result<Vec<Position>, ApiError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let n = records.len();
    let started = std::time::Instant::now();
    let positions = state
        .log
        .append(ACTIONS_TOPIC, records)
        .await
        .inspect_err(|e| {
            tracing::warn!(error = %e, "append failed");
        })?;
    metrics::appended(n, started.elapsed());
    Ok(positions)
}

/// The response for a completed plan: status and JSON bytes (serialised once, also what an
/// idempotency entry stores).
fn finish(plan: Plan, positions: &[Position]) -> (StatusCode, Vec<u8>) {
    match plan {
        Plan::Single { id, kind } => {
            let position = positions
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            (
                StatusCode::ACCEPTED,
                serde_json::to_vec(&Accepted { id, kind, position }).expect("serialisable"),
            )
        }
        Plan::Batch { mut results } => {
            let mut positions = positions.iter();
            let mut accepted = 0;
            for item in &mut results {
                if let BatchItem::Accepted { position, .. } = item {
                    *position = positions
                        .next()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    accepted += 1;
                }
            }
            let rejected = results.len() - accepted;
            let status = match (accepted, rejected) {
                (_, 0) => StatusCode::ACCEPTED,
                (0, _) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::MULTI_STATUS,
            };
            (
                status,
                serde_json::to_vec(&BatchResponse {
                    accepted,
                    rejected,
                    results,
                    code: (accepted == 0).then(|| "all_rejected".to_owned()),
                    message: (accepted == 0)
                        .then(|| "no action of the batch was accepted; see `results`".to_owned()),
                })
                .expect("serialisable"),
            )
        }
    }
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Lets handlers answer `Json` directly.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: T) -> Response {
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traceparent(value: &str) -> String {
        let mut h = HeaderMap::new();
        h.insert("traceparent", value.parse().unwrap());
        String::from_utf8(trace_context(Some(&h)).to_vec()).unwrap()
    }

    #[test]
    fn continues_a_valid_caller_trace_under_a_new_span() {
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let got = traceparent(caller);
        let parts: Vec<&str> = got.split('-').collect();
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
        assert_ne!(parts[2], "00f067aa0ba902b7", "a new span");
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
    }

    #[test]
    fn invalid_or_missing_caller_trace_starts_a_new_one() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
        ] {
            let got = traceparent(bad);
            assert!(
                !got.contains("4bf92f35"),
                "{bad} must not be continued: {got}"
            );
            let parts: Vec<&str> = got.split('-').collect();
            assert_eq!(parts.len(), 4);
            assert_eq!(parts[1].len(), 32);
        }
        let a = String::from_utf8(trace_context(None).to_vec()).unwrap();
        let b = String::from_utf8(trace_context(None).to_vec()).unwrap();
        assert_ne!(a, b, "each request its own trace");
    }
}
