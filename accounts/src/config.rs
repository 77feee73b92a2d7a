//! Configuration for [`Accounts`](crate::Accounts). The binary builds it from its layered
//! configuration; this crate never reads the environment.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::AccountsError;

/// The shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How to reach the accounts database and how to mint tokens.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// `sqlite:///path/accounts.db?mode=rwc` (embedded) or `postgres://user@host/db`.
    pub database_url: String,
    /// HS256 key for access tokens; at least [`MIN_JWT_SECRET_BYTES`] bytes.
    pub jwt_secret: SecretString,
    /// The `iss` claim written and required (default `"philo"`).
    pub issuer: String,
    /// Lifetime of an access token (default 15 minutes).
    pub access_ttl: Duration,
    /// Lifetime of a refresh token; each rotation starts a new one (default 30 days).
    pub refresh_ttl: Duration,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
}

impl AccountsConfig {
    /// A configuration with the defaults: issuer `philo`, 15 min access, 30 days refresh,
    /// 10 connections.
    pub fn new(database_url: impl Into<String>, jwt_secret: SecretString) -> Self {
        Self {
            database_url: database_url.into(),
            jwt_secret,
            issuer: "philo".to_owned(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            max_connections: 10,
        }
    }

    /// Refuses configurations this crate cannot run safely with.
    pub(crate) fn validate(&self) -> Result<Backend, AccountsError> {
        if self.jwt_secret.expose_secret().len() < MIN_JWT_SECRET_BYTES {
            return Err(AccountsError::Config(format!(
                "jwt_secret must be at least {MIN_JWT_SECRET_BYTES} bytes"
            )));
        }
        if self.issuer.trim().is_empty() {
            return Err(AccountsError::Config("issuer must not be empty".into()));
        }
        if self.access_ttl < Duration::from_secs(1) {
            return Err(AccountsError::Config(
                "access_ttl must be at least 1 s".into(),
            ));
        }
        // Keeps every millisecond timestamp we compute far inside i64.
        let ten_years = Duration::from_secs(10 * 366 * 24 * 60 * 60);
        if self.access_ttl > ten_years || self.refresh_ttl > ten_years {
            return Err(AccountsError::Config(
                "token lifetimes must be under 10 years".into(),
            ));
        }
        if self.refresh_ttl < self.access_ttl {
            return Err(AccountsError::Config(
                "refresh_ttl must be at least access_ttl".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(AccountsError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        Backend::from_url(&self.database_url)
    }
}

/// The database family behind the `AnyPool`; only a few statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn from_url(url: &str) -> Result<Self, AccountsError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(AccountsError::Config(
                "database_url must start with sqlite: or postgres:".into(),
            )),
        }
    }

    /// The statement opening a write transaction. SQLite takes the write lock up front so a
    /// transaction never has to upgrade a read lock (which fails immediately with BUSY in WAL
    /// mode instead of waiting for the busy timeout).
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, secret: &str) -> AccountsConfig {
        AccountsConfig::new(url, SecretString::from(secret))
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults() {
        let c = cfg("sqlite://x.db", SECRET);
        assert_eq!(c.issuer, "philo");
        assert_eq!(c.access_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_ttl, Duration::from_secs(2_592_000));
        assert_eq!(c.validate().unwrap(), Backend::Sqlite);
        assert!(!format!("{c:?}").contains(SECRET), "secret must not print");
    }

    #[test]
    fn refuses_short_secret_and_unknown_scheme() {
        let short = cfg("sqlite://x.db", "too short");
        assert!(matches!(short.validate(), Err(AccountsError::Config(_))));
        let mysql = cfg("mysql://x", SECRET);
        assert!(matches!(mysql.validate(), Err(AccountsError::Config(_))));
        assert_eq!(
            cfg("postgresql://u@h/db", SECRET).validate().unwrap(),
            Backend::Postgres
        );
        let mut zero = cfg("postgres://u@h/db", SECRET);
        zero.max_connections = 0;
        assert!(zero.validate().is_err());
        let mut inverted = cfg("postgres://u@h/db", SECRET);
        inverted.refresh_ttl = Duration::from_secs(1);
        assert!(inverted.validate().is_err());
    }
}
