//! Integration tests of `philo-ingest-api`: the whole router over a real `AppState` (embedded
//! log, SQLite accounts, fjall idempotency store, local object store) in a temporary directory,
//! driven with `oneshot`, plus one test through a real listener. Every test checks the status,
//! the error `code` (and `field`), and what the action log holds afterwards.

mod actions;
mod auth;
mod batch;
mod harness;
mod idempotency;
mod images;
mod kafka;
mod meta;
mod notifications;
mod props;
mod reads;
mod server;
mod tokens;
