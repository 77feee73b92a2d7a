//! The transactional outbox. `register`, `login` and `logout` write the action the platform must
//! append to its log in the same database transaction as the rows the action describes, so the
//! two cannot disagree: either both exist or neither. The API layer drains the outbox into the
//! log ([`Accounts::pending_outbox`](crate::Accounts::pending_outbox)) and then deletes what it
//! appended ([`Accounts::ack_outbox`](crate::Accounts::ack_outbox)). A crash between append and
//! ack appends an entry twice; consumers deduplicate on its id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use uuid::Uuid;

use crate::AccountsError;
use crate::store::{ms_to_datetime, parse_uuid};

/// Most ids deleted by one statement (keeps well under every backend's bind limit).
const ACK_CHUNK: usize = 500;

/// One action waiting to be appended to the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// A UUIDv7: the action's id, stable across retries.
    pub id: Uuid,
    /// The user the action is about (the log's key).
    pub actor_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The action body, e.g. `{"type":"user.logged_in"}`.
    pub action_json: String,
}

/// Writes one outbox row on `conn` (inside the caller's transaction).
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    actor_id: Uuid,
    now: DateTime<Utc>,
    action: &serde_json::Value,
) -> Result<Uuid, AccountsError> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox (id, actor_id, created_at, action_json) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.to_string())
    .bind(actor_id.to_string())
    .bind(now.timestamp_millis())
    .bind(action.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Up to `limit` entries, oldest first.
pub(crate) async fn pending(pool: &AnyPool, limit: u32) -> Result<Vec<OutboxEntry>, AccountsError> {
    let rows = sqlx::query(
        "SELECT id, actor_id, created_at, action_json FROM outbox \
         ORDER BY created_at, id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

/// Deletes the given entries; unknown ids are ignored (acks are idempotent).
pub(crate) async fn ack(pool: &AnyPool, ids: &[Uuid]) -> Result<(), AccountsError> {
    for chunk in ids.chunks(ACK_CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM outbox WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.to_string());
        }
        query.execute(pool).await?;
    }
    Ok(())
}

fn entry_from_row(row: &AnyRow) -> Result<OutboxEntry, AccountsError> {
    Ok(OutboxEntry {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        actor_id: parse_uuid(&row.try_get::<String, _>("actor_id")?)?,
        created_at: ms_to_datetime(row.try_get("created_at")?)?,
        action_json: row.try_get("action_json")?,
    })
}
