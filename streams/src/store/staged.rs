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

/// A partition's staged rows. Most partitions of a step get one row (a fan-out writes one row
/// into each of thousands of feeds), held inline; a second row moves them into an ordered map.
#[derive(Debug)]
enum Part {
    One(Bytes, Write),
    Many(BTreeMap<Bytes, Write>),
}

/// Per table, staged rows by partition key: one hash lookup per write, rather than an insert
/// into one ordered map of every staged row (which a step of a million feed rows made the
/// job's largest cost) or a map per partition (an allocation of a tree node each).
type Writes = Vec<(&'static str, foldhash::HashMap<Bytes, Part>)>;

/// A store view with staged writes. `apply` stages; `into_batch` hands them over.
pub struct Staged {
    store: Arc<dyn StateStore>,
    writes: Mutex<Writes>,
}

/// Whether `ck` lies in `range`.
fn in_range(ck: &[u8], range: &CkRange) -> bool {
    let above = match &range.start {
        Bound::Unbounded => true,
        Bound::Included(s) => ck >= s.as_slice(),
        Bound::Excluded(s) => ck > s.as_slice(),
    };
    let below = match &range.end {
        Bound::Unbounded => true,
        Bound::Included(e) => ck <= e.as_slice(),
        Bound::Excluded(e) => ck < e.as_slice(),
    };
    above && below
}

fn empty_range(range: &CkRange) -> bool {
    match (&range.start, &range.end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::One(..) => 1,
            Part::Many(m) => m.len(),
        }
    }
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
        self.lock()
            .iter()
            .map(|(_, parts)| parts.values().map(Part::len).sum::<usize>())
            .sum()
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
        batch.mutations.reserve(
            writes
                .iter()
                .map(|(_, parts)| parts.values().map(Part::len).sum::<usize>())
                .sum(),
        );
        let mutation = |table, pk: &Bytes, ck, w| match w {
            Write::Put(value, ttl) => Mutation::Put {
                table,
                pk: pk.clone(),
                ck,
                value,
                ttl,
            },
            Write::Deleted => Mutation::Delete {
                table,
                pk: pk.clone(),
                ck,
            },
        };
        for (table, parts) in writes {
            for (pk, part) in parts {
                match part {
                    Part::One(ck, w) => batch.mutations.push(mutation(table, &pk, ck, w)),
                    Part::Many(rows) => {
                        for (ck, w) in rows {
                            batch.mutations.push(mutation(table, &pk, ck, w));
                        }
                    }
                }
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
        let Some((_, parts)) = writes.iter().find(|(t, _)| *t == table) else {
            return Vec::new();
        };
        match parts.get(pk) {
            None => Vec::new(),
            Some(Part::One(ck, w)) => {
                if in_range(ck, range) {
                    vec![(ck.clone(), w.clone())]
                } else {
                    Vec::new()
                }
            }
            Some(Part::Many(rows)) => rows
                .range::<[u8], _>((
                    range.start.as_ref().map(Vec::as_slice),
                    range.end.as_ref().map(Vec::as_slice),
                ))
                .map(|(k, w)| (k.clone(), w.clone()))
                .collect(),
        }
    }

    fn stage(&self, table: &'static str, pk: Bytes, ck: Bytes, w: Write) {
        let mut writes = self.lock();
        let i = match writes.iter().position(|(t, _)| *t == table) {
            Some(i) => i,
            None => {
                writes.push((table, foldhash::HashMap::default()));
                writes.len() - 1
            }
        };
        let parts = &mut writes[i].1;
        match parts.get_mut(&pk) {
            None => {
                parts.insert(pk, Part::One(ck, w));
            }
            Some(Part::One(k, v)) if *k == ck => *v = w,
            Some(Part::Many(rows)) => {
                rows.insert(ck, w);
            }
            Some(part) => {
                let Part::One(k, v) = std::mem::replace(part, Part::Many(BTreeMap::new())) else {
                    unreachable!("matched above")
                };
                if let Part::Many(rows) = part {
                    rows.insert(k, v);
                    rows.insert(ck, w);
                }
            }
        }
    }
}

impl StateStore for Staged {
    fn get(&self, table: &str, pk: &[u8], ck: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let staged = {
            let writes = self.lock();
            match writes.iter().find(|(t, _)| *t == table) {
                Some((_, parts)) => match parts.get(pk) {
                    Some(Part::One(k, w)) => (k.as_ref() == ck).then(|| w.clone()),
                    Some(Part::Many(rows)) => rows.get(ck).cloned(),
                    None => None,
                },
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
                } => self.stage(table, pk, ck, Write::Put(value, ttl)),
                Mutation::Delete { table, pk, ck } => self.stage(table, pk, ck, Write::Deleted),
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
                        self.stage(table, pk.clone(), ck, Write::Deleted);
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
