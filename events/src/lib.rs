//! Philo's action vocabulary, the envelope every action travels in, and the [`Log`] abstraction.
//!
//! Every other crate depends on this one; it depends on no other Philo crate.
//!
//! # What it owns
//! - [`action`]: the typed, versioned vocabulary of everything a user (or the server) can do —
//!   one enum, JSON on the wire as `{"type": "<kind>", ...}`, with a strict decoder of untrusted
//!   bytes ([`Action::from_json`], stable [`DecodeError`] codes), validation against an injected
//!   clock ([`Action::validate`], stable [`ValidationError`] codes) and one JSON Schema per kind
//!   generated from the types ([`action::json_schemas`]).
//! - [`Envelope`]: the server's wrapper — UUIDv7 action id (also the id of the entity the action
//!   creates, and the id every sink dedupes on), actor, receive time, schema version.
//! - [`log`]: the [`Log`] trait with Kafka's semantics, the durable embedded backend, and the
//!   contract suite every backend must pass.
//!
//! # Guarantees
//! - Unknown kinds and unknown fields are refused; decoding never panics (fuzzed and
//!   property-tested).
//! - A [`Log::append`] returns only when the records are durable; readers never see past the
//!   durable high watermark (see [`log`] and `docs/adr/001-embedded-log-on-fjall.md`).
pub mod action;
pub mod envelope;
pub mod log;
mod metrics;

pub use action::{Action, ActionKind, DecodeError, ValidationError};
pub use envelope::{Envelope, KIND_HEADER, new_action_id};
pub use log::Log;
