//! The crate's one error type. Each variant says whose fault it is: the caller's input
//! (`Invalid`, `Conflict`, `InvalidCredentials`, `Unauthorized`, `Forbidden`), the operator's
//! configuration (`Config`), the database being unreachable (`Unavailable`, retryable) or a bug
//! (`Internal`). [`AccountsError::code`] is a stable machine code for API bodies.

use sqlx::error::ErrorKind as DbErrorKind;

/// Everything that can go wrong in `philo-accounts`.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The input failed validation; `field` names the offending input.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: &'static str,
        message: String,
    },
    /// The input collides with existing data (`username_taken`, `email_taken`).
    #[error("{field} is already taken")]
    Conflict {
        code: &'static str,
        field: &'static str,
    },
    /// Unknown login or wrong password; deliberately indistinguishable.
    #[error("invalid username/email or password")]
    InvalidCredentials,
    /// A token was missing, malformed, expired, reused or belongs to a revoked session.
    #[error("{}", unauthorized_message(code))]
    Unauthorized { code: &'static str },
    /// The addressed account does not exist (`unknown_user`).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The caller is known but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The configuration is unusable (short secret, unknown database URL scheme, ...).
    #[error("invalid accounts configuration: {0}")]
    Config(String),
    /// The database is down, overloaded or the operation lost a lock race: retry later.
    #[error("accounts database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A bug or corrupted data; not the caller's fault and not helped by a retry.
    #[error("internal accounts error: {0}")]
    Internal(String),
}

impl AccountsError {
    /// A stable, machine-readable code (`username_taken`, `token_expired`, `unavailable`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unauthorized { code }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. } => code,
            Self::InvalidCredentials => "invalid_credentials",
            Self::Config(_) => "config",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub(crate) fn invalid(
        code: &'static str,
        field: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            code,
            field,
            message: message.into(),
        }
    }

    pub(crate) fn unauthorized(code: &'static str) -> Self {
        Self::Unauthorized { code }
    }
}

impl From<sqlx::Error> for AccountsError {
    fn from(e: sqlx::Error) -> Self {
        if is_transient(&e) {
            Self::Unavailable(e)
        } else {
            Self::Internal(format!("database: {e}"))
        }
    }
}

impl From<sqlx::migrate::MigrateError> for AccountsError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => Self::Internal(format!("migrations: {other}")),
        }
    }
}

fn unauthorized_message(code: &str) -> &'static str {
    match code {
        "token_expired" => "the access token has expired",
        "session_revoked" => "the session has been revoked; log in again",
        "refresh_token_expired" => "the refresh token has expired; log in again",
        "refresh_token_reused" => {
            "the refresh token was already used; the session has been revoked, log in again"
        }
        _ => "the token is missing, malformed or invalid",
    }
}

/// Errors a retry can cure: the connection or pool failed, or the database reported a
/// lock/serialization conflict (PostgreSQL SQLSTATE class 40, 53, 57P0x, 08; SQLite BUSY/LOCKED).
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes (low byte).
                code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            } else {
                // PostgreSQL SQLSTATE classes: 40 transaction rollback (serialization failure,
                // deadlock), 53 insufficient resources, 08 connection exception, 57P0x shutdown.
                code.starts_with("40")
                    || code.starts_with("53")
                    || code.starts_with("08")
                    || code.starts_with("57P0")
            }
        }
        _ => false,
    }
}

/// Which unique index a database error violated, if it is a unique violation.
pub(crate) fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.kind() == DbErrorKind::UniqueViolation => Some(
            db.constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned()),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            AccountsError::InvalidCredentials.code(),
            "invalid_credentials"
        );
        assert_eq!(
            AccountsError::unauthorized("token_expired").code(),
            "token_expired"
        );
        let e = AccountsError::Conflict {
            code: "email_taken",
            field: "email",
        };
        assert_eq!(e.code(), "email_taken");
        assert_eq!(e.to_string(), "email is already taken");
        assert!(!e.is_retryable());
    }

    #[test]
    fn only_connection_failures_are_retryable() {
        assert!(AccountsError::from(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!AccountsError::from(sqlx::Error::RowNotFound).is_retryable());
        assert_eq!(
            AccountsError::from(sqlx::Error::PoolClosed).code(),
            "unavailable"
        );
    }
}
