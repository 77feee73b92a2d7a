//! The account types callers see.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an account may do. Serialized lowercase: `"user"`, `"procurer"`, `"admin"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A product user (posts, approaches, follows, ...).
    User,
    /// A data procurer (queries the lake).
    Procurer,
    /// An operator; created only through [`Accounts::create_admin`](crate::Accounts::create_admin).
    Admin,
}

impl Role {
    /// The lowercase name stored in the database and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Procurer => "procurer",
            Role::Admin => "admin",
        }
    }

    /// Parses the lowercase name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "procurer" => Some(Role::Procurer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registration request. The password never prints (`SecretString`).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: SecretString,
    pub role: Role,
}

/// A stored account, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    /// As typed at registration (uniqueness is case-insensitive).
    pub username: String,
    /// As typed at registration (uniqueness is case-insensitive).
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_serializes_lowercase_and_round_trips() {
        for role in [Role::User, Role::Procurer, Role::Admin] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}

/// The outcome of [`Accounts::erase`](crate::Accounts::erase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Erasure {
    pub user_id: Uuid,
    /// The `account.erased` action written; `None` when the account had been erased before.
    pub action_id: Option<Uuid>,
}
