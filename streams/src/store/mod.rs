//! The `StateStore`: where stream jobs keep their views.
//!
//! Shaped like a wide-column store (ScyllaDB/Cassandra), so such a store can implement it later:
//! data lives in named **tables**; a table holds **partitions** addressed by a partition key
//! (a user id, a post id …); a partition holds **rows** ordered by their clustering key (bytes,
//! compared lexicographically), each with a value and an optional time to live. Reads address
//! one partition: a point get or an ordered range scan. Writes go in [`WriteBatch`]es.
//!
//! Guarantees every backend gives (checked by [`contract`]):
//! - a batch is applied atomically: a reader (or a process restarted after a crash) sees all of
//!   it or none of it; its lanes (the same writes in a compact encoding, [`WriteBatch::lanes`])
//!   apply after its mutations, in order;
//! - batches become durable in the order they were applied, and [`StateStore::sync`] returns once
//!   every batch applied before it is durable. So if a job writes its outputs, then its log
//!   position, then syncs, a crash can never leave the position ahead of the outputs;
//! - a scan returns rows in clustering-key order (or reverse), only rows of that partition, never
//!   an expired row;
//! - a row whose TTL has passed is never returned (it may linger on disk until purged).
//!
//! The trait is synchronous: the embedded backend answers from memory or the page cache in
//! microseconds, and stream jobs run on their own threads. Async callers (HTTP handlers) use
//! `tokio::task::spawn_blocking`.

pub mod contract;
pub mod embedded;
pub(crate) mod lane;
mod resident;
pub mod staged;

use std::ops::Bound;
use std::time::Duration;

use bytes::Bytes;

pub use embedded::{EmbeddedStore, EmbeddedStoreConfig, ResidentTables};
pub use staged::Staged;

/// Errors of every `StateStore` backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid table name `{0}`: 1-64 characters of [a-z0-9_]")]
    InvalidTable(String),
    /// The partition key and clustering key together (bytes) exceed what the backend stores.
    #[error("key too long: partition key + clustering key = {0} bytes, limit 65533")]
    KeyTooLong(usize),
    /// Storage failed underneath (I/O, corruption). Not retryable without an operator.
    #[error("state store error: {0}")]
    Storage(String),
}

/// Scan order by clustering key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// One row of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub ck: Bytes,
    pub value: Bytes,
}

/// A clustering-key range inside one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CkRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl CkRange {
    /// Every row of the partition.
    pub fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Rows whose clustering key starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let end = prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Self {
            start: Bound::Included(prefix.to_vec()),
            end,
        }
    }

    /// Rows strictly after `ck` (in ascending order).
    pub fn after(ck: &[u8]) -> Self {
        Self {
            start: Bound::Excluded(ck.to_vec()),
            end: Bound::Unbounded,
        }
    }

    /// Rows strictly before `ck` (in ascending order).
    pub fn before(ck: &[u8]) -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Excluded(ck.to_vec()),
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put {
        table: &'static str,
        pk: Bytes,
        ck: Bytes,
        value: Bytes,
        /// Row expires this long after the batch is applied (store's clock).
        ttl: Option<Duration>,
    },
    Delete {
        table: &'static str,
        pk: Bytes,
        ck: Bytes,
    },
    /// Deletes every row of one partition in a clustering-key range.
    DeleteRange {
        table: &'static str,
        pk: Bytes,
        range: CkRange,
    },
}

impl Mutation {
    /// The table the mutation writes.
    pub fn table(&self) -> &'static str {
        match self {
            Mutation::Put { table, .. }
            | Mutation::Delete { table, .. }
            | Mutation::DeleteRange { table, .. } => table,
        }
    }
}

/// Writes of one table in a compact encoding: puts, deletes and range deletes back to back in
/// one buffer (see [`WriteBatch::lane_put`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lane {
    pub table: &'static str,
    pub(crate) ops: Vec<u8>,
    /// Ops in `ops`.
    pub(crate) len: usize,
    /// Where in `ops` the last put written in full starts: a put of the same clustering key
    /// and value refers to it (a shared put, see [`lane`]).
    pub(crate) last_put: Option<usize>,
}

impl Lane {
    /// The partition keys the lane writes, in order (with repeats).
    pub fn pks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        lane::ops(&self.ops).filter_map(|op| op.ok().map(|op| op.pk()))
    }
}

/// Writes applied together, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub mutations: Vec<Mutation>,
    /// Set by producers that guarantee no key is written twice and no `DeleteRange` is present
    /// (a [`Staged`] view's batch): a backend may then skip resolving write order.
    pub unique_keys: bool,
    /// Writes in the compact encoding, applied after `mutations`, in order. For the many small
    /// rows of one table (a fan-out's feed rows): no allocation per row, and a resident table
    /// takes the encoding as its changelog record as it is.
    pub lanes: Vec<Lane>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(
        &mut self,
        table: &'static str,
        pk: impl Into<Bytes>,
        ck: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) {
        self.mutations.push(Mutation::Put {
            table,
            pk: pk.into(),
            ck: ck.into(),
            value: value.into(),
            ttl: None,
        });
    }

    pub fn put_with_ttl(
        &mut self,
        table: &'static str,
        pk: impl Into<Bytes>,
        ck: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) {
        self.mutations.push(Mutation::Put {
            table,
            pk: pk.into(),
            ck: ck.into(),
            value: value.into(),
            ttl: Some(ttl),
        });
    }

    pub fn delete(&mut self, table: &'static str, pk: impl Into<Bytes>, ck: impl Into<Bytes>) {
        self.mutations.push(Mutation::Delete {
            table,
            pk: pk.into(),
            ck: ck.into(),
        });
    }

    pub fn delete_range(&mut self, table: &'static str, pk: impl Into<Bytes>, range: CkRange) {
        self.mutations.push(Mutation::DeleteRange {
            table,
            pk: pk.into(),
            range,
        });
    }

    fn lane(&mut self, table: &'static str) -> &mut Lane {
        let i = match self
            .lanes
            .iter()
            .rposition(|l| std::ptr::eq(l.table, table) || l.table == table)
        {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    table,
                    ops: Vec::new(),
                    len: 0,
                    last_put: None,
                });
                self.lanes.len() - 1
            }
        };
        &mut self.lanes[i]
    }

    /// Makes room for `bytes` more of `table`'s lane (a caller that knows how many rows come).
    pub fn lane_reserve(&mut self, table: &'static str, bytes: usize) {
        self.lane(table).ops.reserve(bytes);
    }

    /// Like [`put`](Self::put) (no TTL), into the table's lane. Keys past the store's limit go
    /// in as a plain put, which the store refuses.
    pub fn lane_put(&mut self, table: &'static str, pk: &[u8], ck: &[u8], value: &[u8]) {
        if pk.len() + ck.len() > MAX_LANE_KEYS {
            return self.put(table, pk.to_vec(), ck.to_vec(), value.to_vec());
        }
        let l = self.lane(table);
        // One item put into many partitions in a row (a fan-out) is written once.
        lane::put_shared(&mut l.ops, &mut l.last_put, pk, ck, &[lane::NO_TTL], value);
        l.len += 1;
    }

    /// Like [`delete`](Self::delete), into the table's lane.
    pub fn lane_delete(&mut self, table: &'static str, pk: &[u8], ck: &[u8]) {
        if pk.len() + ck.len() > MAX_LANE_KEYS {
            return self.delete(table, pk.to_vec(), ck.to_vec());
        }
        let l = self.lane(table);
        lane::delete(&mut l.ops, pk, ck);
        l.len += 1;
    }

    /// Like [`delete_range`](Self::delete_range), into the table's lane.
    pub fn lane_delete_range(&mut self, table: &'static str, pk: &[u8], range: &CkRange) {
        let longest = [&range.start, &range.end]
            .iter()
            .map(|b| match b {
                Bound::Included(k) | Bound::Excluded(k) => k.len(),
                Bound::Unbounded => 0,
            })
            .max()
            .unwrap_or(0);
        if pk.len() + longest > MAX_LANE_KEYS {
            return self.delete_range(table, pk.to_vec(), range.clone());
        }
        let l = self.lane(table);
        lane::delete_range(&mut l.ops, pk, range);
        l.len += 1;
    }

    /// Mutations plus lane ops.
    pub fn len(&self) -> usize {
        self.mutations.len() + self.lanes.iter().map(|l| l.len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty() && self.lanes.iter().all(|l| l.len == 0)
    }
}

/// Longest partition key plus clustering key a lane takes (the embedded store's limit).
const MAX_LANE_KEYS: usize = u16::MAX as usize - 2;

/// A wide-column state store. See the module docs for the guarantees.
pub trait StateStore: Send + Sync + 'static {
    /// One row, if present and not expired.
    fn get(&self, table: &str, pk: &[u8], ck: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// Up to `limit` rows of one partition within `range`, in `order`.
    fn scan(
        &self,
        table: &str,
        pk: &[u8],
        range: &CkRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;

    /// Applies a batch atomically. Durable only after the next [`sync`](Self::sync).
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Makes every batch applied so far durable (fsync).
    fn sync(&self) -> Result<(), StoreError>;

    /// Removes every row of `table` (used by rebuilds).
    fn truncate(&self, table: &str) -> Result<(), StoreError>;

    /// Visits every live row of `table` as `(pk, ck, value)`, in key order (digests, rebuild
    /// comparisons, exports). Stops early when `visit` returns `false`.
    #[allow(clippy::type_complexity)] // (pk, ck, value) reads plainly here; an alias would hide it
    fn for_each(
        &self,
        table: &str,
        visit: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
}
