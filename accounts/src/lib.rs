//! Philo's accounts: users, data procurers and admins, their sessions and tokens.
//!
//! # What this crate owns
//! - The accounts database schema (`migrations/`, embedded and run by [`Accounts::connect`]),
//!   one schema for SQLite (embedded scale: a file in WAL mode with a busy timeout) and
//!   PostgreSQL (distributed scale), used through sqlx's `Any` driver. The SQL is portable:
//!   UUIDs are text, timestamps are BIGINT unix milliseconds, there are no booleans.
//! - Registration and login ([`Accounts::register`], [`Accounts::login`],
//!   [`Accounts::create_admin`] for the CLI), sessions, access tokens and refresh tokens
//!   ([`Accounts::refresh`], [`Accounts::logout`], [`Accounts::verify_access`]).
//! - The transactional outbox of account actions bound for the log ([`Accounts::pending_outbox`],
//!   [`Accounts::ack_outbox`]).
//!
//! # Guarantees
//! - **Uniqueness is the database's.** Usernames and emails are unique case-insensitively,
//!   enforced by unique indexes on lowercased keys; of two concurrent registrations of the same
//!   name exactly one succeeds, the other gets [`AccountsError::Conflict`].
//! - **Passwords** are stored only as Argon2id PHC strings, hashed and verified on tokio's
//!   blocking pool. Unknown login and wrong password give the same
//!   [`AccountsError::InvalidCredentials`] after the same work (a dummy hash is verified).
//! - **Access tokens** are HS256 JWTs (secret ≥ 32 bytes); only HS256 is accepted, the issuer
//!   and `exp` are required, and expiry is checked against the injected [`Clock`] with zero
//!   leeway. Checking one needs no database read.
//! - **Refresh tokens** are 32 random bytes, stored only as SHA-256. Each is spent by one
//!   refresh (rotation). Presenting a spent one revokes its whole session (reuse detection);
//!   concurrent refreshes of one token cannot both succeed.
//! - **Revocation** (logout, reuse) is immediate for refresh tokens everywhere and for access
//!   tokens in the revoking process; other processes learn it at their next
//!   [`Accounts::sync_revocations`], which the binary runs every few seconds.
//! - **Outbox:** the log action of `register`, `login` and `logout` is written in the same
//!   transaction as its rows. Delivery to the log is at-least-once; the action id (UUIDv7) is
//!   the deduplication key.
//! - **Time is injected** ([`Clock`]); [`ManualClock`] drives tests.
//! - Errors say whose fault they are ([`AccountsError`]), carry a stable [`AccountsError::code`],
//!   and input never panics.

mod clock;
mod config;
mod error;
mod model;
mod outbox;
mod password;
mod revocations;
mod sessions;
mod store;
mod tokens;
mod validate;
mod verified;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AccountsConfig, MIN_JWT_SECRET_BYTES};
pub use error::AccountsError;
pub use model::{Erasure, NewUser, Role, User};
pub use outbox::OutboxEntry;
pub use store::Accounts;
pub use tokens::{Claims, TokenPair};
