//! `Idempotency-Key` support: a retried request within the TTL returns the first result and
//! appends nothing new.
//!
//! Protocol (safe across crashes):
//! 1. Before appending, the request's planned log records (with their action ids) and planned
//!    response are stored as *pending*, durably.
//! 2. The records are appended to the log.
//! 3. The entry is marked *done*.
//!
//! A retry that finds a *done* entry replays the response. A retry that finds a *pending* entry
//! (the first attempt crashed somewhere between 1 and 3) re-appends the *same* records — same
//! action ids — and replays the planned response. If the first append had reached the log, the
//! log now holds the action twice under one id, which every consumer dedupes (DESIGN invariant
//! 3); no second action is ever created. Concurrent requests with one key are refused with 409
//! while the first is in flight.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One remembered request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdempotencyEntry {
    /// SHA-256 of method, path and body: the same key with another request is an error.
    pub fingerprint: [u8; 32],
    pub created_ms: i64,
    pub status: u16,
    pub body: Vec<u8>,
    /// Log records still to be (re-)appended: non-empty only while pending.
    pub pending: Vec<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("idempotency store: {0}")]
pub struct IdempotencyError(String);

/// Where idempotency entries live. Embedded: fjall; a shared store (Redis, the accounts DB)
/// can implement it for multi-process ingest.
pub trait IdempotencyStore: Send + Sync + 'static {
    fn get(
        &self,
        user: Uuid,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<IdempotencyEntry>, IdempotencyError>;
    /// Stores `entry`; `durable` fsyncs before returning.
    fn put(
        &self,
        user: Uuid,
        key: &str,
        entry: &IdempotencyEntry,
        durable: bool,
    ) -> Result<(), IdempotencyError>;
    /// Claims `(user, key)` for one in-flight request; false if another holds it.
    fn begin(&self, user: Uuid, key: &str) -> bool;
    fn end(&self, user: Uuid, key: &str);
    /// Drops entries created before `cutoff_ms`; returns how many.
    fn purge(&self, cutoff_ms: i64) -> Result<u64, IdempotencyError>;
}

/// The embedded store, in its own fjall database under the data directory.
pub struct FjallIdempotencyStore {
    db: Database,
    entries: Keyspace,
    /// created_ms (BE) ++ entry key: lets `purge` walk entries oldest first.
    by_time: Keyspace,
    ttl_ms: i64,
    in_flight: Mutex<HashSet<(Uuid, String)>>,
}

fn err(e: impl std::fmt::Display) -> IdempotencyError {
    IdempotencyError(e.to_string())
}

fn entry_key(user: Uuid, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + key.len());
    k.extend_from_slice(user.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

impl FjallIdempotencyStore {
    pub fn open(dir: &Path, ttl: std::time::Duration) -> Result<Self, IdempotencyError> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let db = Database::builder(dir)
            .cache_size(16 << 20)
            .worker_threads(1)
            .open()
            .map_err(err)?;
        let entries = db
            .keyspace("entries", KeyspaceCreateOptions::default)
            .map_err(err)?;
        let by_time = db
            .keyspace("by_time", KeyspaceCreateOptions::default)
            .map_err(err)?;
        Ok(Self {
            db,
            entries,
            by_time,
            ttl_ms: ttl.as_millis() as i64,
            in_flight: Mutex::new(HashSet::new()),
        })
    }
}

impl IdempotencyStore for FjallIdempotencyStore {
    fn get(
        &self,
        user: Uuid,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<IdempotencyEntry>, IdempotencyError> {
        let Some(raw) = self.entries.get(entry_key(user, key)).map_err(err)? else {
            return Ok(None);
        };
        let entry: IdempotencyEntry = serde_json::from_slice(&raw).map_err(err)?;
        Ok((entry.created_ms + self.ttl_ms > now_ms).then_some(entry))
    }

    fn put(
        &self,
        user: Uuid,
        key: &str,
        entry: &IdempotencyEntry,
        durable: bool,
    ) -> Result<(), IdempotencyError> {
        let k = entry_key(user, key);
        let mut t = entry.created_ms.max(0).to_be_bytes().to_vec();
        t.extend_from_slice(&k);
        let mut batch = self.db.batch();
        batch.insert(&self.entries, k, serde_json::to_vec(entry).map_err(err)?);
        batch.insert(&self.by_time, t, Vec::new());
        batch.commit().map_err(err)?;
        if durable {
            self.db.persist(PersistMode::SyncAll).map_err(err)?;
        }
        Ok(())
    }

    fn begin(&self, user: Uuid, key: &str) -> bool {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert((user, key.to_owned()))
    }

    fn end(&self, user: Uuid, key: &str) {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&(user, key.to_owned()));
    }

    fn purge(&self, cutoff_ms: i64) -> Result<u64, IdempotencyError> {
        let mut batch = self.db.batch();
        let mut n = 0;
        for kv in self
            .by_time
            .range(..cutoff_ms.max(0).to_be_bytes().to_vec())
            .take(100_000)
        {
            let k = kv.key().map_err(err)?;
            let entry = k[8..].to_vec();
            // Only drop the entry if it was not re-written later (its own time is old too).
            if let Some(raw) = self.entries.get(&entry).map_err(err)? {
                let e: IdempotencyEntry = serde_json::from_slice(&raw).map_err(err)?;
                if e.created_ms < cutoff_ms {
                    batch.remove(&self.entries, entry);
                }
            }
            batch.remove(&self.by_time, k);
            n += 1;
        }
        batch.commit().map_err(err)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(created_ms: i64) -> IdempotencyEntry {
        IdempotencyEntry {
            fingerprint: [7; 32],
            created_ms,
            status: 202,
            body: b"{}".to_vec(),
            pending: vec![],
        }
    }

    #[test]
    fn entries_expire_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            FjallIdempotencyStore::open(dir.path(), std::time::Duration::from_secs(10)).unwrap();
        let user = Uuid::now_v7();
        store.put(user, "k1", &entry(1_000), true).unwrap();
        assert_eq!(store.get(user, "k1", 5_000).unwrap(), Some(entry(1_000)));
        assert_eq!(
            store.get(user, "k1", 11_001).unwrap(),
            None,
            "expired after the TTL"
        );
        assert_eq!(
            store.get(Uuid::now_v7(), "k1", 5_000).unwrap(),
            None,
            "keys are per user"
        );
        assert_eq!(store.purge(2_000).unwrap(), 1);
        assert_eq!(store.get(user, "k1", 5_000).unwrap(), None);
    }

    #[test]
    fn one_request_in_flight_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            FjallIdempotencyStore::open(dir.path(), std::time::Duration::from_secs(10)).unwrap();
        let user = Uuid::now_v7();
        assert!(store.begin(user, "k"));
        assert!(!store.begin(user, "k"));
        store.end(user, "k");
        assert!(store.begin(user, "k"));
    }
}
