//! Philo's action vocabulary, the envelope every action travels in, and the [`Log`] abstraction.
//!
//! Placeholder docs, completed by the lead.
pub mod action;
pub mod envelope;
pub mod log;
mod metrics;

pub use action::{Action, ActionKind, DecodeError, ValidationError};
pub use envelope::{Envelope, new_action_id};
pub use log::Log;
