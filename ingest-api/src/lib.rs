//! Philo's product-facing HTTP API (axum): accounts, action ingest, image upload, the read
//! endpoints (feed, follower graph, profiles, threads, events, campaigns, job offers), the
//! notification endpoints (list, unread count, mark read, preferences, a live SSE stream) and
//! the operational endpoints.
//!
//! Guarantees:
//! - **Acknowledged means durable.** `POST /v1/actions` answers 202 only after the action is in
//!   the log (fsync'd embedded, `acks=all` Kafka); a log failure answers 503 with `Retry-After`
//!   and nothing acknowledged.
//! - **The actor is the token's subject.** Actions carry no actor field; an access token's `sub`
//!   is stamped into the envelope.
//! - **Bad input is refused, never swallowed.** Every refusal is a 4xx with the JSON body
//!   [`ErrorBody`] and a stable code; handlers never panic on input (a panic guard still turns
//!   a bug into a JSON 500).
//! - **Idempotent retries.** See [`idempotency`].
//! - **Reads after writes.** Ingest answers a position token; reads given it as `after=` wait
//!   (bounded by `read_wait_ms`) until the views include that action, else answer 503
//!   `not_caught_up`. Reads need a [`ReadSide`] attached with [`AppState::with_reads`]; without
//!   one they answer 503 `views_unavailable`. See [`routes::reads`] and
//!   [`routes::notifications`].
//! - **Shutdown ends live streams.** The notification stream never finishes by itself; attach
//!   the server's shutdown token with [`AppState::with_shutdown`] so that graceful shutdown
//!   ends open streams instead of waiting for their clients.
//!
//! This crate only translates HTTP; the vocabulary and log live in `philo-events`, accounts in
//! `philo-accounts`, the views and their read functions in `philo-streams`.

pub mod config;
pub mod error;
pub mod extract;
pub mod idempotency;
mod metrics;
pub mod outbox;
pub mod ratelimit;
pub mod routes;
pub mod state;

pub use config::{ImageConfig, IngestConfig};
pub use error::{ApiError, ErrorBody};
pub use routes::router;
pub use state::{AppState, ErasureReceipts, ReadSide};
