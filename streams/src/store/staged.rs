//! [`Staged`]: writes held in memory on top of a store, read through, and handed over as one
//! batch. A job step applies every action to a `Staged` view of the store (so each action reads
//! the writes of the ones before it) and commits the step's writes, markers and positions as one
//! atomic batch: a crash leaves the store at a step boundary, never inside one.
//!
//! Hand-written: this is the read-your-writes overlay of a micro-batch, specific to the
//! `StateStore` model; no library provides it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::{CkRange, Mutation, Order, Row, StateStore, StoreError, WriteBatch};

#[derive(Debug, Clone)]
enum Write {
    Put(Bytes, Option<Duration>),
    Deleted,
}

/// Per table, staged writes by one flat key: the partition key's length (u32 big-endian), the
/// partition key, the clustering key. A partition's rows are contiguous and ordered by
/// clustering key, and a write costs one key allocation and one insert into a shared map
/// rather than a map per partition (a fan-out step stages one row in each of thousands of
/// partitions).
type Writes = Vec<(&'static str, BTreeMap<Bytes, Write>)>;

/// A store view with staged writes. `apply` stages; `into_batch` hands them over.
pub struct Staged {
    store: Arc<dyn StateStore>,
    writes: Mutex<Writes>,
}

fn partition_prefix(pk: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + pk.len() + 16);
    k.extend_from_slice(&(pk.len() as u32).to_be_bytes());
    k.extend_from_slice(pk);
    k
}

fn flat_key(pk: &[u8], ck: &[u8]) -> Vec<u8> {
    let mut k = partition_prefix(pk);
    k.extend_from_slice(ck);
    k
}

/// Calls `f` with the flat key of (`pk`, `ck`), built on the stack when it is short (reads are
/// the job's most frequent operation).
fn with_flat_key<T>(pk: &[u8], ck: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let total = 4 + pk.len() + ck.len();
    if total > 128 {
        return f(&flat_key(pk, ck));
    }
    let mut buf = [0u8; 128];
    buf[..4].copy_from_slice(&(pk.len() as u32).to_be_bytes());
    buf[4..4 + pk.len()].copy_from_slice(pk);
    buf[4 + pk.len()..total].copy_from_slice(ck);
    f(&buf[..total])
}

/// Splits a flat key into (partition key, clustering key), sharing its bytes.
fn split_key(key: &Bytes) -> (Bytes, Bytes) {
    let len = u32::from_be_bytes(key[..4].try_into().expect("4-byte prefix")) as usize;
    (key.slice(4..4 + len), key.slice(4 + len..))
}

fn empty_range(range: &CkRange) -> bool {
    match (&range.start, &range.end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

/// A clustering-key bound within the partition `prefix`, as a flat-key bound.
fn flat_bound(prefix: &[u8], b: &Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    b.as_ref().map(|ck| [prefix, ck].concat())
}

impl Staged {
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self {
            store,
            writes: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writes> {
        self.writes.lock().expect("staged lock")
    }

    /// Number of staged rows.
    pub fn len(&self) -> usize {
        self.lock().iter().map(|(_, rows)| rows.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The staged writes as one batch (each key once: the last write wins).
    pub fn into_batch(self) -> WriteBatch {
        let writes = self.writes.into_inner().expect("staged lock");
        let mut batch = WriteBatch::new();
        // One write per key, and range deletes were resolved to single deletes when staged.
        batch.unique_keys = true;
        batch
            .mutations
            .reserve(writes.iter().map(|(_, r)| r.len()).sum());
        for (table, rows) in writes {
            for (key, w) in rows {
                let (pk, ck) = split_key(&key);
                batch.mutations.push(match w {
                    Write::Put(value, ttl) => Mutation::Put {
                        table,
                        pk,
                        ck,
                        value,
                        ttl,
                    },
                    Write::Deleted => Mutation::Delete { table, pk, ck },
                });
            }
        }
        batch
    }

    /// Staged rows of one partition within `range`, in ascending order.
    fn staged_rows(&self, table: &str, pk: &[u8], range: &CkRange) -> Vec<(Bytes, Write)> {
        if empty_range(range) {
            return Vec::new();
        }
        let writes = self.lock();
        let Some((_, rows)) = writes.iter().find(|(t, _)| *t == table) else {
            return Vec::new();
        };
        let prefix = partition_prefix(pk);
        let start = match flat_bound(&prefix, &range.start) {
            Bound::Unbounded => Bound::Included(prefix.clone()),
            b => b,
        };
        let end = flat_bound(&prefix, &range.end);
        rows.range::<[u8], _>((
            start.as_ref().map(Vec::as_slice),
            end.as_ref().map(Vec::as_slice),
        ))
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, w)| (k.slice(prefix.len()..), w.clone()))
        .collect()
    }

    fn stage(&self, table: &'static str, pk: &[u8], ck: &[u8], w: Write) {
        let key = Bytes::from(flat_key(pk, ck));
        let mut writes = self.lock();
        let i = match writes.iter().position(|(t, _)| *t == table) {
            Some(i) => i,
            None => {
                writes.push((table, BTreeMap::new()));
                writes.len() - 1
            }
        };
        writes[i].1.insert(key, w);
    }
}

impl StateStore for Staged {
    fn get(&self, table: &str, pk: &[u8], ck: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let staged = {
            let writes = self.lock();
            match writes.iter().find(|(t, _)| *t == table) {
                Some((_, rows)) => with_flat_key(pk, ck, |k| rows.get(k).cloned()),
                None => None,
            }
        };
        match staged {
            Some(Write::Put(v, _)) => Ok(Some(v)),
            Some(Write::Deleted) => Ok(None),
            None => self.store.get(table, pk, ck),
        }
    }

    fn scan(
        &self,
        table: &str,
        pk: &[u8],
        range: &CkRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let staged = self.staged_rows(table, pk, range);
        if staged.is_empty() {
            return self.store.scan(table, pk, range, order, limit);
        }
        // Every staged delete may hide one stored row: read that many more.
        let deletes = staged
            .iter()
            .filter(|(_, w)| matches!(w, Write::Deleted))
            .count();
        let want = limit.saturating_add(deletes);
        let stored = self.store.scan(table, pk, range, order, want)?;
        // When the store returned all it was asked for, rows past its last one are unknown, so
        // staged rows past that boundary cannot be placed yet.
        let boundary = (stored.len() == want).then(|| stored.last().map(|r| r.ck.clone()));
        let mut merged: BTreeMap<Bytes, Option<Bytes>> =
            stored.into_iter().map(|r| (r.ck, Some(r.value))).collect();
        for (ck, w) in staged {
            let beyond = match (&boundary, order) {
                (Some(Some(b)), Order::Asc) => ck > *b,
                (Some(Some(b)), Order::Desc) => ck < *b,
                _ => false,
            };
            if beyond {
                continue;
            }
            merged.insert(
                ck,
                match w {
                    Write::Put(v, _) => Some(v),
                    Write::Deleted => None,
                },
            );
        }
        let rows = merged
            .into_iter()
            .filter_map(|(ck, v)| v.map(|value| Row { ck, value }));
        Ok(match order {
            Order::Asc => rows.take(limit).collect(),
            Order::Desc => {
                let mut all: Vec<Row> = rows.collect();
                all.reverse();
                all.truncate(limit);
                all
            }
        })
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        for m in batch.mutations {
            match m {
                Mutation::Put {
                    table,
                    pk,
                    ck,
                    value,
                    ttl,
                } => self.stage(table, &pk, &ck, Write::Put(value, ttl)),
                Mutation::Delete { table, pk, ck } => self.stage(table, &pk, &ck, Write::Deleted),
                Mutation::DeleteRange { table, pk, range } => {
                    // Resolve to single deletes: the stored rows in range, and staged ones.
                    let stored = self
                        .store
                        .scan(table, &pk, &range, Order::Asc, usize::MAX)?;
                    let staged = self.staged_rows(table, &pk, &range);
                    for ck in stored
                        .into_iter()
                        .map(|r| r.ck)
                        .chain(staged.into_iter().map(|(ck, _)| ck))
                    {
                        self.stage(table, &pk, &ck, Write::Deleted);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Err(StoreError::Storage(
            "a staged view cannot sync; commit its batch to the store".into(),
        ))
    }

    fn truncate(&self, _table: &str) -> Result<(), StoreError> {
        Err(StoreError::Storage("a staged view cannot truncate".into()))
    }

    fn for_each(
        &self,
        _table: &str,
        _visit: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        Err(StoreError::Storage(
            "a staged view cannot iterate whole tables".into(),
        ))
    }
}
