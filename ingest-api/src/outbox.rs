//! Relays the accounts outbox (register, login, logout) into the action log.
//!
//! Accounts writes each account action in the same database transaction as the change itself;
//! this relay appends them to the log and then deletes them. A crash between the two re-appends
//! the same action id later, which consumers dedupe. Handlers drain right after their change so
//! the action is usually in the log before they answer; a background loop retries failures.

use std::time::Duration;

use philo_events::log::ACTIONS_TOPIC;
use philo_events::{Action, Envelope};
use tokio_util::sync::CancellationToken;

use crate::routes::actions::{record_of, trace_context};
use crate::state::AppState;

/// Appends every pending outbox entry; returns how many. Errors are logged and left for the
/// background loop.
pub async fn drain(state: &AppState) -> usize {
    let _guard = state.outbox_lock.lock().await;
    let mut total = 0;
    loop {
        let entries = match state.accounts.pending_outbox(500).await {
            Ok(e) if e.is_empty() => return total,
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "reading the accounts outbox failed");
                return total;
            }
        };
        let mut records = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        for entry in &entries {
            match Action::from_json(entry.action_json.as_bytes()) {
                Ok(action) => {
                    let env = Envelope::with_id(entry.id, entry.actor_id, action, entry.created_at);
                    // Relayed in the background: a new trace per account action.
                    records.push(record_of(&env, &trace_context(None)));
                }
                // A row the vocabulary cannot read is a bug; keep the relay moving and say so.
                Err(e) => {
                    tracing::error!(id = %entry.id, error = %e, "undecodable outbox entry dropped")
                }
            }
            ids.push(entry.id);
        }
        if let Err(e) = state.log.append(ACTIONS_TOPIC, records).await {
            tracing::warn!(error = %e, "appending outbox entries failed; will retry");
            return total;
        }
        if let Err(e) = state.accounts.ack_outbox(&ids).await {
            tracing::warn!(error = %e, "acknowledging outbox entries failed; they will be re-appended");
            return total;
        }
        total += ids.len();
    }
}

/// Background upkeep until `shutdown`: outbox relay, idempotency purge, revocation sync,
/// rate-limiter cleanup.
pub async fn run_maintenance(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        drain(&state).await;
        if let Err(e) = state.accounts.sync_revocations().await {
            tracing::warn!(error = %e, "syncing revoked sessions failed");
        }
        if n.is_multiple_of(30) {
            state.limits.retain_recent();
            let cutoff = state.clock.now().timestamp_millis()
                - state.config.idempotency_ttl().as_millis() as i64;
            let store = state.idempotency.clone();
            match tokio::task::spawn_blocking(move || store.purge(cutoff)).await {
                Ok(Ok(n)) if n > 0 => tracing::debug!(purged = n, "idempotency keys expired"),
                Ok(Err(e)) => tracing::warn!(error = %e, "idempotency purge failed"),
                _ => {}
            }
        }
    }
}
