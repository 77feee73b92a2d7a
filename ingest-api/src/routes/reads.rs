//! The read endpoints: home feed, follower graph, profiles, threads, events, campaigns and job
//! offers, answered from the stream jobs' views ([`philo_streams::read::SocialViews`]).
//!
//! Every read takes the same common query parameters:
//! - `limit` (1–100, default 20) and an opaque `cursor` (the previous page's `next_cursor`);
//!   threads have one cursor per list (`approaches_cursor`, `comments_cursor`).
//! - `after=<partition>:<offset>`, a position token returned by ingest: the read first waits (at
//!   most `read_wait_ms`) until the views have applied that action, so a client sees its own
//!   writes; if they have not by then, 503 `not_caught_up` with `Retry-After`. A token that is
//!   malformed, names an unknown partition or lies beyond the end of the log is a 400
//!   `invalid_position`: no wait could make it readable.
//!
//! Unknown query parameters are refused (400 `invalid_query`), as everywhere in this API.
//! The views are synchronous store reads, so they run on the blocking pool.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use philo_events::log::{ACTIONS_TOPIC, LogError, Position};
use philo_streams::read::{
    CampaignView, EventView, Item, MAX_LIMIT, OfferBox, Page, Profile, ReadError, SocialViews,
    Thread, UserSummary,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::extract::AuthUser;
use crate::state::{AppState, ReadSide};

/// Rows per page when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 20;
/// Longest cursor accepted, characters: the views' own bound (cursors they hand out are far
/// shorter; it keeps an arbitrary string from becoming an oversized store key).
pub use philo_streams::read::MAX_CURSOR_CHARS;

/// Query of a plain list: the home feed, followers, following, job offers.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Rows per page, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The previous page's `next_cursor`, unchanged; absent or empty for the first page.
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// A position token `<partition>:<offset>` from ingest: answer only once the views include
    /// that action.
    #[param(pattern = r"^[0-9]+:[0-9]+$")]
    pub after: Option<String>,
}

/// Query of a single entity without lists: profiles, campaigns.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntityParams {
    /// A position token `<partition>:<offset>` from ingest: answer only once the views include
    /// that action.
    #[param(pattern = r"^[0-9]+:[0-9]+$")]
    pub after: Option<String>,
}

/// Query of a post: one cursor for its approaches, one for its comments.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PostParams {
    /// Rows per list (approaches, comments), 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The previous thread's `approaches.next_cursor`, unchanged.
    #[param(max_length = 512)]
    pub approaches_cursor: Option<String>,
    /// The previous thread's `comments.next_cursor`, unchanged.
    #[param(max_length = 512)]
    pub comments_cursor: Option<String>,
    /// A position token `<partition>:<offset>` from ingest: answer only once the views include
    /// that action.
    #[param(pattern = r"^[0-9]+:[0-9]+$")]
    pub after: Option<String>,
}

/// Query of an approach or an event: a cursor for its comments.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CommentsParams {
    /// Comments per page, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The previous answer's `comments.next_cursor`, unchanged.
    #[param(max_length = 512)]
    pub comments_cursor: Option<String>,
    /// A position token `<partition>:<offset>` from ingest: answer only once the views include
    /// that action.
    #[param(pattern = r"^[0-9]+:[0-9]+$")]
    pub after: Option<String>,
}

/// Which job-offer box to list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferBoxParam {
    Received,
    Sent,
}

/// Query of the job-offer boxes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OfferParams {
    /// `received` (default) or `sent`.
    #[serde(rename = "box")]
    #[param(rename = "box", inline, value_type = Option<OfferBoxParam>)]
    pub which: Option<String>,
    /// Rows per page, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The previous page's `next_cursor`, unchanged; absent or empty for the first page.
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// A position token `<partition>:<offset>` from ingest: answer only once the views include
    /// that action.
    #[param(pattern = r"^[0-9]+:[0-9]+$")]
    pub after: Option<String>,
}

/// A query string that does not deserialise: 400 `invalid_query`, naming the parameter when
/// the error does.
fn query_error(e: &QueryRejection) -> ApiError {
    let text = e.body_text();
    let field = ["unknown field `", "duplicate field `"]
        .iter()
        .find_map(|p| {
            let (_, rest) = text.split_once(p)?;
            rest.split('`').next().map(str::to_owned)
        });
    let err = ApiError::bad_request("invalid_query", text);
    match field {
        Some(f) => err.field(f),
        None => err,
    }
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|e| query_error(&e))
}

fn path_id(p: Result<Path<Uuid>, PathRejection>) -> Result<Uuid, ApiError> {
    p.map(|Path(id)| id).map_err(|e| {
        ApiError::bad_request(
            "invalid_path",
            format!("the id must be a UUID: {}", e.body_text()),
        )
        .field("id")
    })
}

/// `limit`: 1–[`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
pub(crate) fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_limit",
                format!("limit must be an integer from 1 to {MAX_LIMIT}"),
            )
            .field("limit")
        })
}

/// A cursor parameter: empty means absent; longer than any cursor the views issue is refused.
pub(crate) fn cursor(raw: Option<String>, field: &'static str) -> Result<Option<String>, ApiError> {
    match raw {
        Some(c) if c.is_empty() => Ok(None),
        Some(c) if c.len() > MAX_CURSOR_CHARS => Err(invalid_cursor(field)),
        c => Ok(c),
    }
}

fn invalid_cursor(field: &'static str) -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "invalid cursor: pass back the `next_cursor` of the previous page unchanged",
    )
    .field(field)
}

fn invalid_position(raw: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_position",
        format!(
            "`{}` is not a position token `<partition>:<offset>` from this log",
            raw.chars().take(64).collect::<String>()
        ),
    )
    .field("after")
}

/// The read side, once the views include `after` (if given). Checks the token's syntax before
/// the read side's presence, so a malformed token is a 400 whether or not views run here.
///
/// A token must name a record the log holds: a partition the views consume and an offset below
/// the partition's high watermark (every offset ingest hands out is, once it has answered). A
/// token beyond the end cannot be from this log (a reset data directory, a forged token); it is
/// refused at once rather than waited on, as no wait can make it readable.
pub(crate) async fn ready(state: &AppState, after: Option<&str>) -> Result<ReadSide, ApiError> {
    let after = after
        .map(|raw| raw.parse::<Position>().map_err(|_| invalid_position(raw)))
        .transpose()?;
    let reads = state.reads.clone().ok_or_else(|| {
        ApiError::unavailable(
            "views_unavailable",
            "this server runs no views; reads are served where the stream jobs run",
        )
    })?;
    let Some(pos) = after else {
        return Ok(reads);
    };
    if !reads.progress.knows(pos) {
        return Err(invalid_position(&pos.to_string()));
    }
    if reads.progress.covers(pos) {
        return Ok(reads);
    }
    let started = std::time::Instant::now();
    let high = state
        .log
        .watermarks(ACTIONS_TOPIC, pos.partition)
        .await
        .map_err(|e| match e {
            LogError::PartitionOutOfRange { .. } => invalid_position(&pos.to_string()),
            e => ApiError::from(e),
        })?
        .high;
    if pos.offset >= high {
        return Err(ApiError::bad_request(
            "invalid_position",
            format!(
                "position {pos} is beyond the end of the log (partition {} ends at offset {high})",
                pos.partition
            ),
        )
        .field("after"));
    }
    let checked = std::time::Instant::now();
    let covered = reads.progress.wait_for(pos, state.config.read_wait()).await;
    crate::metrics::read_wait(checked - started, checked.elapsed());
    if covered {
        Ok(reads)
    } else {
        Err(ApiError::unavailable(
            "not_caught_up",
            format!("the views have not reached position {pos} yet; retry shortly"),
        ))
    }
}

/// Runs a read on the blocking pool. `cursor_field` names the parameter an `InvalidCursor`
/// blames (none when the read takes several cursors and the error cannot tell which).
pub(crate) async fn run<T: Send + 'static>(
    reads: ReadSide,
    cursor_field: Option<&'static str>,
    read: impl FnOnce(&SocialViews) -> Result<T, ReadError> + Send + 'static,
) -> Result<Json<T>, ApiError> {
    view(reads, cursor_field, read).await.map(Json)
}

/// [`run`] without the JSON wrapping, for handlers that use what they read.
pub(crate) async fn view<T: Send + 'static>(
    reads: ReadSide,
    cursor_field: Option<&'static str>,
    read: impl FnOnce(&SocialViews) -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ApiError> {
    let result = tokio::task::spawn_blocking(move || read(&reads.views))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "read task failed");
            ApiError::internal("internal error")
        })?;
    result.map_err(|e| match (e, cursor_field) {
        (ReadError::InvalidCursor, Some(f)) => invalid_cursor(f),
        (e, _) => e.into(),
    })
}

#[utoipa::path(get, path = "/v1/feed", tag = "reads",
    description = "The caller's home feed, newest first: posts and other items of the people they follow.",
    params(ListParams),
    responses(
        (status = 200, description = "One page of the feed", body = Page<Item>),
        (status = 400, description = "`invalid_query`, `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn feed(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<Item>>, ApiError> {
    let p = query(params)?;
    let limit = limit(p.limit.as_deref())?;
    let cursor = cursor(p.cursor, "cursor")?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, Some("cursor"), move |v| {
        v.feed(&claims.sub, cursor.as_deref(), limit)
    })
    .await
}

/// Followers or following of the user in the path.
async fn user_list(
    state: AppState,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<ListParams>, QueryRejection>,
    followers: bool,
) -> Result<Json<Page<UserSummary>>, ApiError> {
    let id = path_id(id)?;
    let p = query(params)?;
    let limit = limit(p.limit.as_deref())?;
    let cursor = cursor(p.cursor, "cursor")?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, Some("cursor"), move |v| {
        if followers {
            v.followers(&id, cursor.as_deref(), limit)
        } else {
            v.following(&id, cursor.as_deref(), limit)
        }
    })
    .await
}

#[utoipa::path(get, path = "/v1/users/{id}/followers", tag = "reads",
    description = "Who follows the user, newest follow first.",
    params(("id" = Uuid, Path, description = "The user's id"), ListParams),
    responses(
        (status = 200, description = "One page of followers", body = Page<UserSummary>),
        (status = 400, description = "`invalid_path`, `invalid_query`, `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn followers(
    State(state): State<AppState>,
    _caller: AuthUser,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<UserSummary>>, ApiError> {
    user_list(state, id, params, true).await
}

#[utoipa::path(get, path = "/v1/users/{id}/following", tag = "reads",
    description = "Whom the user follows, newest follow first.",
    params(("id" = Uuid, Path, description = "The user's id"), ListParams),
    responses(
        (status = 200, description = "One page of followed users", body = Page<UserSummary>),
        (status = 400, description = "`invalid_path`, `invalid_query`, `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn following(
    State(state): State<AppState>,
    _caller: AuthUser,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<UserSummary>>, ApiError> {
    user_list(state, id, params, false).await
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "reads",
    description = "A user's profile with follower and following counts.",
    params(("id" = Uuid, Path, description = "The user's id"), EntityParams),
    responses(
        (status = 200, description = "The profile", body = Profile),
        (status = 400, description = "`invalid_path`, `invalid_query`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn profile(
    State(state): State<AppState>,
    _caller: AuthUser,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<EntityParams>, QueryRejection>,
) -> Result<Json<Profile>, ApiError> {
    let id = path_id(id)?;
    let p = query(params)?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, None, move |v| v.profile(&id)).await
}

#[utoipa::path(get, path = "/v1/posts/{id}", tag = "reads",
    description = "A post with a page of its approaches and a page of its comments, each oldest first with its own cursor.",
    params(("id" = Uuid, Path, description = "The post's id"), PostParams),
    responses(
        (status = 200, description = "The post's thread", body = Thread),
        (status = 400, description = "`invalid_path`, `invalid_query`, `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such post, or it was deleted", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn post(
    State(state): State<AppState>,
    _caller: AuthUser,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<PostParams>, QueryRejection>,
) -> Result<Json<Thread>, ApiError> {
    let id = path_id(id)?;
    let p = query(params)?;
    let limit = limit(p.limit.as_deref())?;
    let approaches = cursor(p.approaches_cursor, "approaches_cursor")?;
    let comments = cursor(p.comments_cursor, "comments_cursor")?;
    // With both cursors given, a bad one cannot be told apart from the other.
    let field = match (&approaches, &comments) {
        (Some(_), None) => Some("approaches_cursor"),
        (None, Some(_)) => Some("comments_cursor"),
        _ => None,
    };
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, field, move |v| {
        v.post(&id, approaches.as_deref(), comments.as_deref(), limit)
    })
    .await
}

#[utoipa::path(get, path = "/v1/approaches/{id}", tag = "reads",
    description = "An approach with a page of its comments, oldest first (`approaches` is always empty).",
    params(("id" = Uuid, Path, description = "The approach's id"), CommentsParams),
    responses(
        (status = 200, description = "The approach's thread", body = Thread),
        (status = 400, description = "`invalid_path`, `invalid_query`, `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such approach, or it was deleted", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn approach(
    State(state): State<AppState>,
    _caller: AuthUser,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<CommentsParams>, QueryRejection>,
) -> Result<Json<Thread>, ApiError> {
    let id = path_id(id)?;
    let p = query(params)?;
    let limit = limit(p.limit.as_deref())?;
    let comments = cursor(p.comments_cursor, "comments_cursor")?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, Some("comments_cursor"), move |v| {
        v.approach(&id, comments.as_deref(), limit)
    })
    .await
}

#[utoipa::path(get, path = "/v1/events/{id}", tag = "reads",
    description = "An event with its RSVP counts, the caller's own RSVP and a page of its comments.",
    params(("id" = Uuid, Path, description = "The event's id"), CommentsParams),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 400, description = "`invalid_path`, `invalid_query`, `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such event, or it was deleted", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn event(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<CommentsParams>, QueryRejection>,
) -> Result<Json<EventView>, ApiError> {
    let id = path_id(id)?;
    let p = query(params)?;
    let limit = limit(p.limit.as_deref())?;
    let comments = cursor(p.comments_cursor, "comments_cursor")?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, Some("comments_cursor"), move |v| {
        v.event(&id, &claims.sub, comments.as_deref(), limit)
    })
    .await
}

#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "reads",
    description = "A donation campaign with its goal and the exact amount raised (minor units of its currency).",
    params(("id" = Uuid, Path, description = "The campaign's id"), EntityParams),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 400, description = "`invalid_path`, `invalid_query`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such campaign, or it was deleted", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn campaign(
    State(state): State<AppState>,
    _caller: AuthUser,
    id: Result<Path<Uuid>, PathRejection>,
    params: Result<Query<EntityParams>, QueryRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = path_id(id)?;
    let p = query(params)?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, None, move |v| v.campaign(&id)).await
}

#[utoipa::path(get, path = "/v1/job-offers", tag = "reads",
    description = "The job offers the caller received (`box=received`, the default) or sent (`box=sent`), newest first, with their state.",
    params(OfferParams),
    responses(
        (status = 200, description = "One page of job offers", body = Page<Item>),
        (status = 400, description = "`invalid_query` (also an unknown `box`), `invalid_limit`, `invalid_cursor`, `invalid_position`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "`views_unavailable` (no views on this server), `not_caught_up` (`after` not reached in time) or `log_unavailable`; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn job_offers(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    params: Result<Query<OfferParams>, QueryRejection>,
) -> Result<Json<Page<Item>>, ApiError> {
    let p = query(params)?;
    let which = match p.which.as_deref() {
        None | Some("received") => OfferBox::Received,
        Some("sent") => OfferBox::Sent,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_query", "box must be `received` or `sent`")
                    .field("box"),
            );
        }
    };
    let limit = limit(p.limit.as_deref())?;
    let cursor = cursor(p.cursor, "cursor")?;
    let reads = ready(&state, p.after.as_deref()).await?;
    run(reads, Some("cursor"), move |v| {
        v.job_offers(&claims.sub, which, cursor.as_deref(), limit)
    })
    .await
}
