//! The in-memory set of revoked sessions that [`Accounts::verify_access`] consults, so access
//! tokens of a logged-out session fail at once without a database read.
//!
//! A session's access tokens were all issued before it was revoked, so they are all dead
//! `access_ttl` after the revocation; entries older than that (plus a clock-skew margin) are
//! pruned. Revocations made by other processes arrive through
//! [`Accounts::sync_revocations`](crate::Accounts::sync_revocations).
//!
//! [`Accounts::verify_access`]: crate::Accounts::verify_access

use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;

/// Extra time revocations are kept beyond `access_ttl`, for clock skew between processes.
pub(crate) const SKEW_MARGIN_MS: i64 = 60_000;

/// Revoked session id → revocation time (unix ms).
#[derive(Debug, Default)]
pub(crate) struct RevokedSessions {
    sessions: RwLock<HashMap<Uuid, i64>>,
}

impl RevokedSessions {
    pub(crate) fn contains(&self, sid: &Uuid) -> bool {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(sid)
    }

    pub(crate) fn insert(&self, sid: Uuid, revoked_at_ms: i64) {
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sid)
            .or_insert(revoked_at_ms);
    }

    /// Adds `loaded` (read from the database) and forgets entries revoked at or before
    /// `cutoff_ms`. Entries added locally meanwhile are kept: they were committed before being
    /// added, so a concurrent load simply may not have seen them yet.
    pub(crate) fn merge(&self, loaded: impl IntoIterator<Item = (Uuid, i64)>, cutoff_ms: i64) {
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        for (sid, at) in loaded {
            sessions.entry(sid).or_insert(at);
        }
        sessions.retain(|_, at| *at > cutoff_ms);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_and_prunes() {
        let set = RevokedSessions::default();
        let (old, local, remote) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        set.insert(old, 1_000);
        set.insert(local, 5_000);
        set.merge([(remote, 4_000)], 2_000);
        assert!(!set.contains(&old));
        assert!(set.contains(&local));
        assert!(set.contains(&remote));
        assert_eq!(set.len(), 2);
    }
}
