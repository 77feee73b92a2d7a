//! Registration, login, refresh-token rotation, logout and access-token checks.
//!
//! Every flow that changes sessions runs in one write transaction, together with its outbox
//! row. Refresh rotation claims the presented token with a conditional `UPDATE ... WHERE used_at
//! IS NULL` and checks the row count, so of two concurrent refreshes of one token exactly one
//! wins; the loser is treated as reuse and the whole session is revoked.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::AnyConnection;
use sqlx::Row;
use uuid::Uuid;

use crate::store::{USER_COLUMNS, insert_user, parse_uuid, user_from_row};
use crate::tokens::{new_refresh_token, refresh_token_hash};
use crate::{
    Accounts, AccountsError, Claims, Erasure, NewUser, Role, TokenPair, User, outbox, password,
    validate,
};

/// Longest login (username or email) or password looked at; longer ones cannot match.
const MAX_LOGIN_LEN: usize = validate::EMAIL_MAX;
const MAX_PASSWORD_BYTES: usize = 4 * validate::PASSWORD_MAX;
/// Longest refresh token looked up (ours are 43 characters).
const MAX_REFRESH_TOKEN_LEN: usize = 256;

impl Accounts {
    /// Creates a `user` or `procurer` account and logs it in (a new session).
    ///
    /// Errors: `Forbidden{code:"role_forbidden"}` for `Role::Admin` (admins come only from
    /// [`create_admin`](Self::create_admin)); `Invalid` for a bad username, email or password;
    /// `Conflict{code:"username_taken"|"email_taken"}`, case-insensitively, decided by the
    /// database's unique indexes so concurrent registrations cannot both win.
    ///
    /// Writes the outbox action `{"type":"user.registered","username":..,"role":..}`.
    pub async fn register(&self, new: NewUser) -> Result<(User, TokenPair), AccountsError> {
        if new.role == Role::Admin {
            return Err(AccountsError::Forbidden {
                code: "role_forbidden",
                message: "admin accounts cannot be registered".into(),
            });
        }
        self.check_new_user(&new).await?;
        let password_hash = password::hash(new.password.clone()).await?;
        let user = User {
            id: Uuid::now_v7(),
            username: new.username,
            email: new.email,
            role: new.role,
            created_at: self.now(),
        };

        let mut tx = self.begin_write().await?;
        insert_user(&mut tx, &user, &password_hash).await?;
        let pair = self.start_session(&mut tx, &user).await?;
        let action = json!({
            "type": "user.registered",
            "username": user.username,
            "role": user.role,
        });
        outbox::insert(&mut tx, user.id, user.created_at, &action).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.id, role = %user.role, "user registered");
        Ok((user, pair))
    }

    /// Creates an admin account (for the CLI). `new.role` is ignored: the account is always
    /// `Role::Admin`. No session is opened; the outbox action `user.registered` (role `admin`)
    /// is written like for any other account, so the log knows every actor.
    pub async fn create_admin(&self, new: NewUser) -> Result<User, AccountsError> {
        self.check_new_user(&new).await?;
        let password_hash = password::hash(new.password.clone()).await?;
        let user = User {
            id: Uuid::now_v7(),
            username: new.username,
            email: new.email,
            role: Role::Admin,
            created_at: self.now(),
        };
        let mut tx = self.begin_write().await?;
        insert_user(&mut tx, &user, &password_hash).await?;
        let action = json!({
            "type": "user.registered",
            "username": user.username,
            "role": user.role,
        });
        outbox::insert(&mut tx, user.id, user.created_at, &action).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.id, "admin created");
        Ok(user)
    }

    /// Logs in by username or email (case-insensitive) and opens a new session.
    ///
    /// An unknown login and a wrong password both answer `InvalidCredentials`, and both cost one
    /// Argon2 verification, so neither the answer nor its timing says whether the account
    /// exists. Writes the outbox action `{"type":"user.logged_in"}`.
    pub async fn login(
        &self,
        login: &str,
        password: &SecretString,
    ) -> Result<(User, TokenPair), AccountsError> {
        if login.is_empty()
            || login.len() > MAX_LOGIN_LEN
            || password.expose_secret().len() > MAX_PASSWORD_BYTES
        {
            return Err(AccountsError::InvalidCredentials);
        }
        let key = validate::key(login);
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users \
             WHERE username_key = $1 OR email_key = $2"
        ))
        .bind(&key)
        .bind(&key)
        .fetch_optional(&self.inner.pool)
        .await?;

        let (user, hash) = match &row {
            Some(row) => (
                Some(user_from_row(row)?),
                row.try_get::<String, _>("password_hash")?,
            ),
            None => (None, self.inner.dummy_hash.clone()),
        };
        let matches = password::verify(password.clone(), hash).await?;
        let user = match user {
            Some(user) if matches => user,
            _ => return Err(AccountsError::InvalidCredentials),
        };

        let now = self.now();
        let mut tx = self.begin_write().await?;
        let pair = self.start_session(&mut tx, &user).await?;
        outbox::insert(&mut tx, user.id, now, &json!({"type": "user.logged_in"})).await?;
        tx.commit().await?;
        tracing::debug!(user_id = %user.id, "user logged in");
        Ok((user, pair))
    }

    /// Exchanges a refresh token for a new pair in the same session; the presented token is
    /// spent.
    ///
    /// Errors (all `Unauthorized`): `invalid_token` (unknown), `refresh_token_expired`,
    /// `session_revoked`, and `refresh_token_reused` when the token was already spent: the whole
    /// session is then revoked, since either the client or a thief holds a stolen copy.
    pub async fn refresh(&self, refresh_token: &str) -> Result<(User, TokenPair), AccountsError> {
        if refresh_token.is_empty() || refresh_token.len() > MAX_REFRESH_TOKEN_LEN {
            return Err(AccountsError::unauthorized("invalid_token"));
        }
        let hash = refresh_token_hash(refresh_token);
        let now_ms = self.now_ms();

        let mut tx = self.begin_write().await?;
        // Lock order: the session row first, then its tokens — the order `revoke_session` uses.
        // A no-op UPDATE takes the row lock portably. Without it PostgreSQL deadlocked under
        // concurrent refreshes of one token: a loser keeps the lock on the token row it
        // re-checked, then waits for the session row that another loser holds while that one
        // waits for the token row.
        let Some(session) =
            sqlx::query("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Err(AccountsError::unauthorized("invalid_token"));
        };
        sqlx::query("UPDATE sessions SET revoked_at = revoked_at WHERE id = $1")
            .bind(session.try_get::<String, _>("session_id")?)
            .execute(&mut *tx)
            .await?;
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(now_ms)
        .bind(&hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();

        let row = sqlx::query(
            "SELECT t.session_id, t.used_at, t.revoked_at, s.user_id, \
             s.revoked_at AS session_revoked_at \
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
             WHERE t.token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(AccountsError::unauthorized("invalid_token"));
        };
        let sid = parse_uuid(&row.try_get::<String, _>("session_id")?)?;
        let session_revoked_at: Option<i64> = row.try_get("session_revoked_at")?;
        let token_revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let used_at: Option<i64> = row.try_get("used_at")?;

        if let Some(at) = session_revoked_at.or(token_revoked_at) {
            drop(tx);
            self.inner.revoked.insert(sid, at);
            return Err(AccountsError::unauthorized("session_revoked"));
        }
        if claimed == 0 {
            if used_at.is_some() {
                revoke_session(&mut tx, sid, now_ms, "refresh_token_reused").await?;
                tx.commit().await?;
                self.inner.revoked.insert(sid, now_ms);
                tracing::warn!(session_id = %sid, "refresh token reused; session revoked");
                return Err(AccountsError::unauthorized("refresh_token_reused"));
            }
            return Err(AccountsError::unauthorized("refresh_token_expired"));
        }

        let user_id = parse_uuid(&row.try_get::<String, _>("user_id")?)?;
        let user_row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(user_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let user = match &user_row {
            Some(row) => user_from_row(row)?,
            None => {
                return Err(AccountsError::Internal(format!(
                    "session {sid} has no user"
                )));
            }
        };
        let pair = self.issue_pair(&mut tx, &user, sid).await?;
        tx.commit().await?;
        Ok((user, pair))
    }

    /// Revokes the session of `claims` (all its refresh tokens; its access tokens fail
    /// [`verify_access`](Self::verify_access) in this process at once, elsewhere after their
    /// next [`sync_revocations`](Self::sync_revocations)). Idempotent; the first call writes the
    /// outbox action `{"type":"user.logged_out"}`.
    pub async fn logout(&self, claims: &Claims) -> Result<(), AccountsError> {
        let now = self.now();
        let now_ms = now.timestamp_millis();
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoke_reason = 'logout' \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms)
        .bind(claims.sid.to_string())
        .bind(claims.sub.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked > 0 {
            revoke_tokens(&mut tx, claims.sid, now_ms).await?;
            outbox::insert(
                &mut tx,
                claims.sub,
                now,
                &json!({"type": "user.logged_out"}),
            )
            .await?;
        }
        tx.commit().await?;
        self.inner.revoked.insert(claims.sid, now_ms);
        Ok(())
    }

    /// Erases account `user_id` (GDPR art. 17): the username and e-mail are overwritten with
    /// placeholders derived from the id (freeing them for others), the password stops working,
    /// every session and refresh token is revoked, and the outbox action
    /// `{"type":"account.erased"}` is written in the same transaction, so the log, the views and
    /// the lake forget the user. Returns the id of that action; erasing an erased account
    /// writes nothing and returns no action id.
    ///
    /// Errors: `NotFound{code:"unknown_user"}`.
    pub async fn erase(&self, user_id: Uuid) -> Result<Erasure, AccountsError> {
        let now = self.now();
        let now_ms = now.timestamp_millis();
        // `-` is not a username character, so no one can register a placeholder.
        let placeholder = format!("erased-{}", user_id.simple());
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT username_key FROM users WHERE id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(AccountsError::NotFound {
                code: "unknown_user",
                message: format!("no account {user_id}"),
            });
        };
        let key: String = sqlx::Row::try_get(&row, 0)?;
        if key == placeholder {
            tx.rollback().await?;
            return Ok(Erasure {
                user_id,
                action_id: None,
            });
        }
        sqlx::query(
            "UPDATE users SET username = $1, username_key = $1, email = $2, email_key = $2, \
             password_hash = '!' WHERE id = $3",
        )
        .bind(&placeholder)
        .bind(format!("{placeholder}@erased.invalid"))
        .bind(user_id.to_string())
        .execute(&mut *tx)
        .await?;
        let sessions: Vec<String> =
            sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(user_id.to_string())
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoke_reason = 'erased' \
             WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms)
        .bind(user_id.to_string())
        .execute(&mut *tx)
        .await?;
        let mut revoked = Vec::new();
        for sid in sessions {
            if let Ok(sid) = Uuid::parse_str(&sid) {
                revoke_tokens(&mut tx, sid, now_ms).await?;
                revoked.push(sid);
            }
        }
        let action_id =
            outbox::insert(&mut tx, user_id, now, &json!({"type": "account.erased"})).await?;
        tx.commit().await?;
        for sid in revoked {
            self.inner.revoked.insert(sid, now_ms);
        }
        tracing::info!(%user_id, "account erased");
        Ok(Erasure {
            user_id,
            action_id: Some(action_id),
        })
    }

    /// Checks an access token without touching the database: HS256 signature, issuer, expiry
    /// (injected clock, zero leeway) and the in-memory set of revoked sessions.
    ///
    /// Errors (all `Unauthorized`): `invalid_token`, `token_expired`, `session_revoked`.
    pub fn verify_access(&self, token: &str) -> Result<Claims, AccountsError> {
        let now = self.now();
        let claims = match self.inner.verified.get(token) {
            // Verified before: only expiry can have changed (revocation is checked below).
            Some(claims) if now.timestamp() >= claims.exp => {
                return Err(AccountsError::unauthorized("token_expired"));
            }
            Some(claims) => claims,
            None => {
                let claims = self.inner.keys.verify(token, now)?;
                self.inner.verified.insert(token, &claims);
                claims
            }
        };
        if self.inner.revoked.contains(&claims.sid) {
            return Err(AccountsError::unauthorized("session_revoked"));
        }
        Ok(claims)
    }

    /// Validation plus a cheap uniqueness pre-check, so obvious duplicates skip the Argon2 cost.
    /// The unique indexes remain the authority (see `insert_user`).
    async fn check_new_user(&self, new: &NewUser) -> Result<(), AccountsError> {
        validate::username(&new.username)?;
        validate::email(&new.email)?;
        validate::password(new.password.expose_secret())?;
        let (username_key, email_key) = (validate::key(&new.username), validate::key(&new.email));
        let rows = sqlx::query(
            "SELECT username_key, email_key FROM users WHERE username_key = $1 OR email_key = $2",
        )
        .bind(&username_key)
        .bind(&email_key)
        .fetch_all(&self.inner.pool)
        .await?;
        for row in &rows {
            if row.try_get::<String, _>("username_key")? == username_key {
                return Err(AccountsError::Conflict {
                    code: "username_taken",
                    field: "username",
                });
            }
        }
        if !rows.is_empty() {
            return Err(AccountsError::Conflict {
                code: "email_taken",
                field: "email",
            });
        }
        Ok(())
    }

    /// Opens a new session for `user` and issues its first pair.
    async fn start_session(
        &self,
        conn: &mut AnyConnection,
        user: &User,
    ) -> Result<TokenPair, AccountsError> {
        let sid = Uuid::now_v7();
        sqlx::query("INSERT INTO sessions (id, user_id, created_at) VALUES ($1, $2, $3)")
            .bind(sid.to_string())
            .bind(user.id.to_string())
            .bind(self.now_ms())
            .execute(&mut *conn)
            .await?;
        self.issue_pair(conn, user, sid).await
    }

    /// Stores a new refresh token of session `sid` and signs an access token for it.
    async fn issue_pair(
        &self,
        conn: &mut AnyConnection,
        user: &User,
        sid: Uuid,
    ) -> Result<TokenPair, AccountsError> {
        let now = self.now();
        let now_ms = now.timestamp_millis();
        let refresh_token = new_refresh_token();
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(refresh_token_hash(&refresh_token))
        .bind(sid.to_string())
        .bind(now_ms)
        .bind(now_ms.saturating_add(self.refresh_ttl_ms()))
        .execute(&mut *conn)
        .await?;
        let ttl_secs = self.inner.access_ttl.as_secs();
        let (access_token, _claims) = self.inner.keys.issue(
            user.id,
            user.role,
            sid,
            now,
            i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        )?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in: ttl_secs,
        })
    }
}

/// Marks session `sid` revoked (if it is not already) and all its refresh tokens with it.
async fn revoke_session(
    conn: &mut AnyConnection,
    sid: Uuid,
    now_ms: i64,
    reason: &str,
) -> Result<(), AccountsError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms)
    .bind(reason)
    .bind(sid.to_string())
    .execute(&mut *conn)
    .await?;
    revoke_tokens(conn, sid, now_ms).await
}

async fn revoke_tokens(
    conn: &mut AnyConnection,
    sid: Uuid,
    now_ms: i64,
) -> Result<(), AccountsError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms)
    .bind(sid.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
