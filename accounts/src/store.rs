//! [`Accounts`]: the pool, the configuration, the clock and the revocation cache, plus the
//! plain reads and the database plumbing shared by the session flows in `sessions.rs`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sqlx::AnyConnection;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};
use uuid::Uuid;

use crate::config::Backend;
use crate::revocations::{RevokedSessions, SKEW_MARGIN_MS};
use crate::tokens::JwtKeys;
use crate::{AccountsConfig, AccountsError, Clock, OutboxEntry, Role, User, outbox, password};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a caller waits for a pooled connection before getting `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits for another writer's lock before reporting BUSY.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// The accounts service. Cheap to clone: clones share the pool, the clock and the revocation
/// cache.
#[derive(Clone)]
pub struct Accounts {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) keys: JwtKeys,
    pub(crate) access_ttl: Duration,
    pub(crate) refresh_ttl: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) revoked: RevokedSessions,
    /// Access tokens already verified (see [`crate::verified`]).
    pub(crate) verified: crate::verified::VerifiedTokens,
    /// A hash of a random password, verified against when the login names nobody, so an unknown
    /// login costs as much time as a wrong password.
    pub(crate) dummy_hash: String,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("backend", &self.inner.backend)
            .field("access_ttl", &self.inner.access_ttl)
            .field("refresh_ttl", &self.inner.refresh_ttl)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Validates `cfg`, connects (SQLite files are put in WAL mode with a busy timeout) and runs
    /// the embedded migrations.
    ///
    /// Errors: `Config` for an unusable configuration (or a database that refuses us for good:
    /// unknown database, bad credentials, unopenable file), `Unavailable` when the database
    /// cannot be reached (the pool keeps retrying for its 5 s acquire timeout first).
    pub async fn connect(
        cfg: AccountsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AccountsError> {
        let backend = cfg.validate()?;
        sqlx::any::install_default_drivers();

        let pool = AnyPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        let busy = format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}");
                        sqlx::query(&busy).execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&cfg.database_url)
            .await
            .map_err(connect_error)?;

        if backend == Backend::Sqlite {
            // Persistent in the database file; done once, before other connections exist.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;

        let dummy_hash = tokio::task::spawn_blocking(|| {
            password::hash_blocking(&crate::tokens::new_refresh_token())
        })
        .await
        .map_err(|e| AccountsError::Internal(format!("hashing task failed: {e}")))??;

        tracing::info!(backend = ?backend, "accounts database ready");
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                backend,
                keys: JwtKeys::new(cfg.jwt_secret.expose_secret().as_bytes(), &cfg.issuer),
                access_ttl: cfg.access_ttl,
                refresh_ttl: cfg.refresh_ttl,
                clock,
                revoked: RevokedSessions::default(),
                verified: Default::default(),
                dummy_hash,
            }),
        })
    }

    /// The user with this id, if any.
    pub async fn user(&self, id: Uuid) -> Result<Option<User>, AccountsError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.inner.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Up to `limit` outbox entries, oldest first, for the API layer to append to the log (it
    /// then calls [`ack_outbox`](Self::ack_outbox); duplicates after a crash are deduplicated by
    /// consumers on the entry id).
    pub async fn pending_outbox(&self, limit: u32) -> Result<Vec<OutboxEntry>, AccountsError> {
        outbox::pending(&self.inner.pool, limit).await
    }

    /// Deletes outbox entries that were appended to the log.
    pub async fn ack_outbox(&self, ids: &[Uuid]) -> Result<(), AccountsError> {
        outbox::ack(&self.inner.pool, ids).await
    }

    /// Reloads, from the database, the sessions revoked recently enough that some of their
    /// access tokens may still be unexpired (another process may have revoked them), and forgets
    /// older ones. The binary calls this every few seconds; until then a session revoked by
    /// another process still passes [`verify_access`](Self::verify_access) here.
    pub async fn sync_revocations(&self) -> Result<(), AccountsError> {
        let cutoff = self
            .now_ms()
            .saturating_sub(self.access_ttl_ms() + SKEW_MARGIN_MS);
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at > $1",
        )
        .bind(cutoff)
        .fetch_all(&self.inner.pool)
        .await?;
        let mut loaded = Vec::with_capacity(rows.len());
        for row in &rows {
            let sid = parse_uuid(&row.try_get::<String, _>("id")?)?;
            loaded.push((sid, row.try_get::<i64, _>("revoked_at")?));
        }
        tracing::debug!(revoked = loaded.len(), "synced revoked sessions");
        self.inner.revoked.merge(loaded, cutoff);
        Ok(())
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> Result<(), AccountsError> {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
        Ok(())
    }

    /// Closes the pool; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    pub(crate) fn access_ttl_ms(&self) -> i64 {
        i64::try_from(self.inner.access_ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    pub(crate) fn refresh_ttl_ms(&self) -> i64 {
        i64::try_from(self.inner.refresh_ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// A pooled connection in a write transaction (SQLite: `BEGIN IMMEDIATE`).
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, AccountsError> {
        Ok(self
            .inner
            .pool
            .begin_with(self.inner.backend.begin_write())
            .await?)
    }
}

/// Why the first connection failed: a malformed URL or a database that refuses us for good
/// (unknown database, bad credentials, unopenable file) is configuration; the network or a busy
/// server is `Unavailable`.
fn connect_error(e: sqlx::Error) -> AccountsError {
    match e {
        sqlx::Error::Configuration(msg) => AccountsError::Config(format!("database_url: {msg}")),
        sqlx::Error::Database(ref db) if !crate::error::is_transient(&e) => {
            AccountsError::Config(format!("cannot open the accounts database: {db}"))
        }
        other => other.into(),
    }
}

pub(crate) const USER_COLUMNS: &str = "id, username, email, role, created_at";

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User, AccountsError> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        role: Role::parse(&role)
            .ok_or_else(|| AccountsError::Internal(format!("unknown role {role:?} in database")))?,
        created_at: ms_to_datetime(row.try_get("created_at")?)?,
    })
}

/// Inserts `user` with its password hash; a unique-index violation becomes `Conflict`.
pub(crate) async fn insert_user(
    conn: &mut AnyConnection,
    user: &User,
    password_hash: &str,
) -> Result<(), AccountsError> {
    let result = sqlx::query(
        "INSERT INTO users (id, username, username_key, email, email_key, password_hash, role, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(user.id.to_string())
    .bind(&user.username)
    .bind(crate::validate::key(&user.username))
    .bind(&user.email)
    .bind(crate::validate::key(&user.email))
    .bind(password_hash)
    .bind(user.role.as_str())
    .bind(user.created_at.timestamp_millis())
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => match crate::error::unique_violation(&e) {
            Some(index) if index.contains("username_key") => Err(AccountsError::Conflict {
                code: "username_taken",
                field: "username",
            }),
            Some(index) if index.contains("email_key") => Err(AccountsError::Conflict {
                code: "email_taken",
                field: "email",
            }),
            _ => Err(e.into()),
        },
    }
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid, AccountsError> {
    Uuid::parse_str(s)
        .map_err(|e| AccountsError::Internal(format!("bad uuid {s:?} in database: {e}")))
}

pub(crate) fn ms_to_datetime(ms: i64) -> Result<DateTime<Utc>, AccountsError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| AccountsError::Internal(format!("timestamp {ms} out of range")))
}
