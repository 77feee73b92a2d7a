//! The backend-agnostic suite. Every function takes a [`Fixture`] on a fresh database; the
//! `accounts_test_suite!` macro in `main.rs` runs each against every backend.
//!
//! [`Fixture`]: crate::harness::Fixture

mod registration;
mod sessions;

pub use registration::*;
pub use sessions::*;

use philo_accounts::{Accounts, AccountsError};
use serde_json::Value;

pub(crate) const PW: &str = "correct horse battery";

pub(crate) fn code<T: std::fmt::Debug>(r: Result<T, AccountsError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

/// The pending outbox actions, oldest first, as JSON.
pub(crate) async fn actions(accounts: &Accounts) -> Vec<Value> {
    accounts
        .pending_outbox(1000)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(&e.action_json).unwrap())
        .collect()
}
