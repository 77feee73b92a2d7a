//! The notification endpoints: the caller's notifications, their unread count, the read marker,
//! per-type preferences, and a live stream over Server-Sent Events.
//!
//! Reads answer from the social job's notification view with the conventions of
//! [`reads`](super::reads): `limit`, `cursor`, `after=<position>`, the same error codes, 503
//! `views_unavailable` without a read side. Marking read and changing preferences are actions
//! of the vocabulary (`notifications.read`, `notifications.preferences_updated`), so the view
//! stays a function of the log: the two writes go through the same path as `POST /v1/actions`
//! (rate limit, decoding and validation, `Idempotency-Key`, durable append) and answer 202
//! [`Accepted`] with a position to pass as `after=` to the next read.
//!
//! Decisions:
//! - `POST /v1/notifications/read` without `up_to` (an empty body, `{}`) marks read up to the
//!   newest notification the view holds for the caller; with none there is nothing to mark:
//!   204 and nothing appended. With `up_to` no read side is needed (an ingest-only server takes
//!   it); without, the lookup needs one (503 `views_unavailable`).
//! - The request bodies are the action's members without `"type"`; the handlers splice the
//!   type in front of the client's bytes, so the vocabulary's decoder judges exactly what was
//!   sent (duplicate members, field paths, codes) as it does for `POST /v1/actions`.
//! - The stream ([`live`]) ends when the access token expires or the server shuts down;
//!   clients reconnect with a fresh token and `Last-Event-ID`, and lose nothing.

pub mod live;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use philo_streams::read::{NotificationView, Page, UNREAD_COUNT_CAP};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::actions::{Accepted, submit};
use super::reads::{EntityParams, ListParams, cursor, limit, query, ready, run, view};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AuthUser, JsonBody, OptionalJsonBody, serde_error};
use crate::state::AppState;

const READ_KIND: &str = "notifications.read";
const PREFERENCES_KIND: &str = "notifications.preferences_updated";

/// The unread count.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnreadCount {
    /// Notifications newer than the read marker, at most 1000.
    pub unread: u32,
    /// Whether the count stopped at its cap (1000): show "1000+".
    pub capped: bool,
}

/// Body of `POST /v1/notifications/read`. The body may also be left out (or be `null`): the
/// same as `{}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// The newest notification being marked read (a notification `id`); every notification up
    /// to and including it is read. Absent: up to the newest one the caller has.
    #[schema(nullable = false)]
    pub up_to: Option<Uuid>,
}

/// Per-type notification preferences: `true` is on. Every type is on by default except
/// `post_by_followed`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPreferences {
    /// Someone followed you.
    pub new_follower: bool,
    /// An approach was attached to your post.
    pub approach_on_post: bool,
    /// A comment on your post, approach or event, or a reply to your comment.
    pub comment: bool,
    /// Reactions to your content (grouped).
    pub reaction: bool,
    /// A donation to your approach or campaign.
    pub donation: bool,
    /// Your campaign reached its goal.
    pub campaign_goal_reached: bool,
    /// A job offer to you, or an answer to yours.
    pub job_offer: bool,
    /// An event you RSVP'd to changed or was cancelled.
    pub event_change: bool,
    /// Someone mentioned you with `@username`.
    pub mention: bool,
    /// A new post by someone you follow (off unless turned on).
    pub post_by_followed: bool,
}

/// Body of `PUT /v1/notifications/preferences`: the types to change (at least one); the
/// others keep their setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct PreferencesChange {
    /// Someone followed you.
    #[schema(nullable = false)]
    pub new_follower: Option<bool>,
    /// An approach was attached to your post.
    #[schema(nullable = false)]
    pub approach_on_post: Option<bool>,
    /// A comment on your post, approach or event, or a reply to your comment.
    #[schema(nullable = false)]
    pub comment: Option<bool>,
    /// Reactions to your content (grouped).
    #[schema(nullable = false)]
    pub reaction: Option<bool>,
    /// A donation to your approach or campaign.
    #[schema(nullable = false)]
    pub donation: Option<bool>,
    /// Your campaign reached its goal.
    #[schema(nullable = false)]
    pub campaign_goal_reached: Option<bool>,
    /// A job offer to you, or an answer to yours.
    #[schema(nullable = false)]
    pub job_offer: Option<bool>,
    /// An event you RSVP'd to changed or was cancelled.
    #[schema(nullable = false)]
    pub event_change: Option<bool>,
    /// Someone mentioned you with `@username`.
    #[schema(nullable = false)]
    pub mention: Option<bool>,
    /// A new post by someone you follow (off unless turned on).
    #[schema(nullable = false)]
    pub post_by_followed: Option<bool>,
}

/// A request body's members, which must form a JSON object.
fn members(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(ApiError::bad_request(
            "not_an_object",
            "the body must be a JSON object",
        )),
        Err(e) => Err(serde_error(&e)),
    }
}

/// The action `{"type": kind, <the body's members>}`: the body's bytes with the type spliced in
/// after its opening brace. `body` parsed as the object `members`.
fn with_type(kind: &str, body: &[u8], members: &Map<String, Value>) -> Result<Vec<u8>, ApiError> {
    if members.contains_key("type") {
        return Err(ApiError::unprocessable(
            "unknown_field",
            "`type` is set by the endpoint; leave it out of the body",
        )
        .field("type"));
    }
    // It parsed as an object, so its first byte that is not JSON whitespace is `{`.
    let open = body
        .iter()
        .position(|b| !b" \t\r\n".contains(b))
        .filter(|&i| body[i] == b'{')
        .ok_or_else(|| ApiError::internal("an object body does not start with `{`"))?;
    let mut action = format!(r#"{{"type":"{kind}""#).into_bytes();
    if !members.is_empty() {
        action.push(b',');
    }
    action.extend_from_slice(&body[open + 1..]);
    Ok(action)
}

const UNAVAILABLE: &str = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After";

#[utoipa::path(get, path = "/v1/notifications", tag = "notifications",
    description = "The caller's notifications, newest first. A grouped notification (reactions: \"A and 4 others\") that gets a new actor moves to the top with a new `id`. `read` is whether the read marker covers it.",
    params(ListParams),
    responses(
        (status = 200, description = "One page of notifications", body = Page<NotificationView>),
        (status = 400, description = "`invalid_query`, `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<NotificationView>>, ApiError> {
    let p = query(params)?;
    let limit = limit(p.limit.as_deref())?;
    let cursor = cursor(p.cursor, "cursor")?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, Some("cursor"), move |v| {
        v.notifications(&claims.sub, cursor.as_deref(), limit)
    })
    .await
}

#[utoipa::path(get, path = "/v1/notifications/unread-count", tag = "notifications",
    description = "How many of the caller's notifications are newer than their read marker, counted up to 1000 (`capped` then).",
    params(EntityParams),
    responses(
        (status = 200, description = "The unread count", body = UnreadCount),
        (status = 400, description = "`invalid_query`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn unread_count(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    params: Result<Query<EntityParams>, QueryRejection>,
) -> Result<Json<UnreadCount>, ApiError> {
    let p = query(params)?;
    let reads = ready(&state, p.after.as_deref()).await?;
    let unread = view(reads, None, move |v| v.unread_count(&claims.sub)).await?;
    Ok(Json(UnreadCount {
        unread: u32::try_from(unread).unwrap_or(u32::MAX),
        capped: unread >= UNREAD_COUNT_CAP,
    }))
}

#[utoipa::path(post, path = "/v1/notifications/read", tag = "notifications",
    description = "Marks the caller's notifications read up to and including `up_to` (appends a `notifications.read` action; the marker only moves forward). Without `up_to` (body `{}` or no body): up to the newest notification the caller has. Answers once the action is durable; pass the returned `position` as `after=` to see the change in reads.",
    request_body(content = Option<MarkRead>, content_type = "application/json", description = "`{\"up_to\": \"<notification id>\"}`, or `{}` (also no body, or `null`) for everything"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key within 24 h return the first result and append nothing")),
    responses(
        (status = 202, description = "Durable in the log", body = Accepted),
        (status = 204, description = "No `up_to` and the caller has no notifications: nothing to mark, nothing appended"),
        (status = 400, description = "`malformed_json`, `not_an_object`, `invalid_body`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "`unknown_field`, `invalid_type`, `invalid_value` (`up_to` not a UUID, or nil), `idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited`; see Retry-After", body = ErrorBody),
        (status = 503, description = "`log_unavailable` (nothing was appended), `idempotency_unavailable`, or `views_unavailable` (no `up_to` and no views on this server); see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn mark_read(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    state.limits.check_user(claims.sub, 1)?;
    let body = body.unwrap_or_else(|| bytes::Bytes::from_static(b"{}"));
    // The document says the body is optional, which OpenAPI tools render as "`null` or the
    // object": take a JSON `null` as no body.
    let members = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Null) => Map::new(),
        Ok(Value::Object(members)) => members,
        _ => members(&body)?,
    };
    let action = if members.is_empty() {
        let reads = ready(&state, None).await?;
        let user = claims.sub;
        let newest = view(reads, None, move |v| v.notifications(&user, None, 1)).await?;
        let Some(newest) = newest.items.first() else {
            return Ok(StatusCode::NO_CONTENT.into_response());
        };
        serde_json::to_vec(&serde_json::json!({"type": READ_KIND, "up_to": newest.id}))
            .map_err(|e| ApiError::internal(e.to_string()))?
    } else {
        with_type(READ_KIND, &body, &members)?
    };
    let route = "/v1/notifications/read";
    submit(&state, claims.sub, &headers, route, &body, &action).await
}

#[utoipa::path(get, path = "/v1/notifications/preferences", tag = "notifications",
    description = "The caller's per-type notification preferences.",
    params(EntityParams),
    responses(
        (status = 200, description = "Every type with whether it is on", body = NotificationPreferences),
        (status = 400, description = "`invalid_query`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn preferences(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    params: Result<Query<EntityParams>, QueryRejection>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let p = query(params)?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, None, move |v| {
        v.notification_preferences(&claims.sub)
    })
    .await
}

#[utoipa::path(put, path = "/v1/notifications/preferences", tag = "notifications",
    description = "Turns notification types on or off; types left out keep their setting (appends a `notifications.preferences_updated` action). Answers once the action is durable; pass the returned `position` as `after=` to `GET /v1/notifications/preferences` to read the change.",
    request_body(content = PreferencesChange, content_type = "application/json", description = "e.g. `{\"reaction\": false, \"post_by_followed\": true}`"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key within 24 h return the first result and append nothing")),
    responses(
        (status = 202, description = "Durable in the log", body = Accepted),
        (status = 400, description = "`malformed_json`, `not_an_object`, `invalid_body`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`unknown_field` (a type that does not exist, named in `field`), `invalid_type` (not a boolean), `no_changes` (no type given), `idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited`; see Retry-After", body = ErrorBody),
        (status = 503, description = "`log_unavailable` (nothing was appended) or `idempotency_unavailable`; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update_preferences(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    state.limits.check_user(claims.sub, 1)?;
    let action = with_type(PREFERENCES_KIND, &body, &members(&body)?)?;
    let route = "/v1/notifications/preferences";
    submit(&state, claims.sub, &headers, route, &body, &action).await
}

#[cfg(test)]
mod tests {
    use philo_events::action::NotificationPreferencesUpdated;
    use philo_streams::social::notify::{default_preferences, preferences_map};
    use utoipa::PartialSchema;

    use super::*;

    fn properties<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    #[test]
    fn documented_preferences_are_the_vocabularys_and_the_views() {
        let mut vocabulary: Vec<String> = NotificationPreferencesUpdated::default()
            .fields()
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        vocabulary.sort();
        let mut view: Vec<String> = preferences_map(default_preferences())
            .keys()
            .cloned()
            .collect();
        view.sort();
        assert_eq!(properties::<NotificationPreferences>(), vocabulary);
        assert_eq!(properties::<PreferencesChange>(), vocabulary);
        assert_eq!(view, vocabulary);
    }

    #[test]
    fn the_type_is_spliced_in_front_of_the_clients_members() {
        let splice = |body: &str| {
            let m = members(body.as_bytes()).unwrap();
            String::from_utf8(with_type("k", body.as_bytes(), &m).unwrap()).unwrap()
        };
        assert_eq!(splice("{}"), r#"{"type":"k"}"#);
        assert_eq!(splice(" \n{ } "), r#"{"type":"k" } "#);
        assert_eq!(splice(r#"{"a":true}"#), r#"{"type":"k","a":true}"#);
        let e = with_type(
            "k",
            br#"{"type":"x"}"#,
            &members(br#"{"type":"x"}"#).unwrap(),
        );
        assert_eq!(e.unwrap_err().body.field.as_deref(), Some("type"));
        assert_eq!(members(b"[1]").unwrap_err().body.code, "not_an_object");
        assert_eq!(members(b"{").unwrap_err().body.code, "malformed_json");
    }
}
