//! `GET /v1/notifications/stream`: the caller's new notifications, live, as Server-Sent Events.
//!
//! A stream remembers the id of the last notification it sent and, whenever the social job has
//! applied more of the log, reads the notifications after it (`notifications_since`, oldest
//! first). Ids are time-ordered and the job applies the log in time order (ADR 005), so "after
//! the last id" is "new since": resuming with `Last-Event-ID` loses nothing that is retained. A
//! grouped notification that gets a new actor gets a new id and is sent again.
//!
//! The stream ends when the server shuts down ([`AppState::with_shutdown`]) — graceful shutdown
//! waits for open responses, and an event stream never finishes by itself — and when the access
//! token it was opened with expires, so a revoked session does not keep listening.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use philo_streams::read::NotificationView;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::extract::AuthUser;
use crate::metrics::OpenStream;
use crate::routes::reads::{query, ready, view};
use crate::state::{AppState, ReadSide};

/// Interval of the stream's keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Shortest time between two looks of one stream at the view: under load the job applies
/// something every few milliseconds, and each open stream reads its user's notifications at
/// most this often (a notification reaches the stream at most this much later).
pub const LOOK_INTERVAL: Duration = Duration::from_millis(100);
/// Notifications read per look (more follow at once when a look fills it).
const LOOK_BATCH: usize = 100;

/// The stream takes no query parameters (unknown ones are refused).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {}

/// `Last-Event-ID`: absent or empty means none; anything else must be a notification id.
fn last_event_id(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(raw) = headers.get("last-event-id") else {
        return Ok(None);
    };
    match raw.to_str().map(str::trim) {
        Ok("") => Ok(None),
        Ok(text) => text.parse().map(Some).map_err(|_| invalid_last_event_id()),
        Err(_) => Err(invalid_last_event_id()),
    }
}

fn invalid_last_event_id() -> ApiError {
    ApiError::bad_request(
        "invalid_last_event_id",
        "Last-Event-ID must be the `id` of a notification (a UUID) from this stream",
    )
    .field("Last-Event-ID")
}

#[utoipa::path(get, path = "/v1/notifications/stream", tag = "notifications",
    description = "The caller's new notifications, live, as Server-Sent Events: each is an event with `id: <notification id>`, `event: notification` and `data: <the notification as JSON>` (as in `GET /v1/notifications`), oldest first. A comment line (`:`) is sent every 15 s to keep the connection open.\n\nWithout `Last-Event-ID` the stream starts at the caller's newest notification and sends only later ones. **Resuming:** reconnect with `Last-Event-ID: <id of the last event received>` (browsers' EventSource does it by itself) to get every notification after it first, then the live ones; nothing is lost between connections while the notification is retained (the newest 500 per user). A grouped notification that gets a new actor is sent again with a new `id`: replace the earlier one with the same `kind` and `target_id`.\n\nThe stream ends when the access token expires or the server shuts down; reconnect with a fresh token and `Last-Event-ID`.",
    params(
        ("Last-Event-ID" = Option<Uuid>, Header, description = "Resume after this notification id (the `id` of the last event received)"),
        StreamParams,
    ),
    responses(
        (status = 200, description = "An open event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_last_event_id` (not a UUID; `field: \"Last-Event-ID\"`), `invalid_query`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "`views_unavailable`: no views on this server; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    query(params)?;
    let resume = last_event_id(&headers)?;
    let reads = ready(&state, None).await?;
    let mut applied = applied_signal(&state, &reads);
    // Anything applied from here on wakes the stream, so nothing falls between the first look
    // and the first wait.
    applied.mark_unchanged();
    let user = claims.sub;
    let (last, more) = match resume {
        Some(id) => (Some(id), true),
        None => {
            let newest = view(reads.clone(), None, move |v| {
                v.notifications(&user, None, 1)
            })
            .await?;
            (newest.items.first().map(|n| n.id), false)
        }
    };
    // Capped so that no `exp` can overflow the timer (access tokens live minutes).
    let left = (claims.exp - state.clock.now().timestamp()).clamp(0, 7 * 24 * 3600);
    let live = Live {
        reads,
        user,
        last,
        more,
        pending: VecDeque::new(),
        applied,
        shutdown: state.shutdown.clone(),
        expires: Instant::now() + Duration::from_secs(left as u64),
        last_look: Instant::now(),
        _open: OpenStream::new(),
    };
    let events = futures::stream::unfold(live, Live::next);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Reverse proxies (nginx) must pass events on as they come, not buffer them.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The signal open streams wait on: it changes when the job has applied more of the log. One
/// task per server derives it from the job's progress, which changes on every step, idle polls
/// included (hundreds a second), so an idle job wakes no stream.
fn applied_signal(state: &AppState, reads: &ReadSide) -> watch::Receiver<()> {
    state
        .applied
        .get_or_init(|| {
            let (tx, rx) = watch::channel(());
            let progress = reads.progress.clone();
            // Sampled before any stream looks at the view: an advance after that is signalled.
            let mut steps = progress.subscribe();
            let mut seen = progress.positions();
            let shutdown = state.shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        changed = steps.changed() => if changed.is_err() { break },
                    }
                    let now = progress.positions();
                    if now != seen {
                        seen = now;
                        tx.send_replace(());
                    }
                }
            });
            rx
        })
        .clone()
}

/// One open stream.
struct Live {
    reads: ReadSide,
    user: Uuid,
    /// The id of the last notification sent (or skipped as old); the next look starts after it.
    last: Option<Uuid>,
    /// Look again without waiting: on resume, or when the last look filled its batch.
    more: bool,
    pending: VecDeque<NotificationView>,
    applied: watch::Receiver<()>,
    shutdown: CancellationToken,
    /// When the access token the stream was opened with expires.
    expires: Instant,
    last_look: Instant,
    _open: OpenStream,
}

impl Live {
    /// The next event; `None` ends the stream.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(n) = self.pending.pop_front() {
                return Some((Ok(event(&n)?), self));
            }
            if !self.more && !self.wait().await {
                return None;
            }
            self.look().await?;
        }
    }

    /// Waits until the job has applied more and the last look is [`LOOK_INTERVAL`] old. False
    /// when the stream is to end (shutdown, token expiry).
    async fn wait(&mut self) -> bool {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return false,
            () = tokio::time::sleep_until(self.expires) => return false,
            changed = self.applied.changed() => if changed.is_err() { return false },
        }
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep_until(self.expires) => false,
            () = tokio::time::sleep_until(self.last_look + LOOK_INTERVAL) => true,
        }
    }

    /// Reads the notifications after `last` into `pending`.
    async fn look(&mut self) -> Option<()> {
        let (user, after) = (self.user, self.last);
        let batch = view(self.reads.clone(), None, move |v| {
            v.notifications_since(&user, after, LOOK_BATCH)
        })
        .await
        .inspect_err(|e| {
            tracing::warn!(code = %e.body.code, "notification stream ended: reading the view failed");
        })
        .ok()?;
        self.last_look = Instant::now();
        self.more = batch.len() == LOOK_BATCH;
        if let Some(n) = batch.last() {
            self.last = Some(n.id);
        }
        self.pending.extend(batch);
        Some(())
    }
}

fn event(n: &NotificationView) -> Option<Event> {
    let data = serde_json::to_string(n)
        .inspect_err(|e| tracing::error!(error = %e, "a notification does not serialise"))
        .ok()?;
    Some(
        Event::default()
            .id(n.id.to_string())
            .event("notification")
            .data(data),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn last_event_id_is_a_uuid_or_absent() {
        let mut h = HeaderMap::new();
        assert_eq!(last_event_id(&h).unwrap(), None);
        h.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(last_event_id(&h).unwrap(), None);
        let id = Uuid::now_v7();
        h.insert(
            "last-event-id",
            HeaderValue::from_str(&id.to_string()).unwrap(),
        );
        assert_eq!(last_event_id(&h).unwrap(), Some(id));
        h.insert("last-event-id", HeaderValue::from_static("42"));
        let e = last_event_id(&h).unwrap_err();
        assert_eq!(
            (e.status, e.body.code.as_str(), e.body.field.as_deref()),
            (
                StatusCode::BAD_REQUEST,
                "invalid_last_event_id",
                Some("Last-Event-ID")
            )
        );
    }
}
