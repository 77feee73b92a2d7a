-- Accounts schema. Portable between SQLite and PostgreSQL through sqlx's Any driver:
-- ids are UUID text, timestamps are BIGINT unix milliseconds, no booleans, no sequences.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL,
    email         TEXT NOT NULL,
    email_key     TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'procurer', 'admin')),
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_username_key_uq ON users (username_key);
CREATE UNIQUE INDEX users_email_key_uq ON users (email_key);

-- One row per login: the family of refresh tokens and the `sid` of access tokens.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoke_reason TEXT
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at);

-- Refresh tokens, stored only as the hex SHA-256 of the token.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- Actions to append to the log, written in the same transaction as the rows they describe.
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,
    actor_id    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    action_json TEXT NOT NULL
);
CREATE INDEX outbox_created_idx ON outbox (created_at, id);
