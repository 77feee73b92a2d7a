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

use super::lane::{self, OpRef};
use super::{CkRange, Lane, Mutation, Order, Row, StateStore, StoreError, WriteBatch};

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
    /// Lanes ([`WriteBatch::lanes`]) staged as they came, per table. A table is staged either
    /// here or in `writes`: a lane for a table with staged mutations is staged as mutations, and
    /// a mutation for a table with a lane moves the lane into `writes` first.
    lanes: Mutex<Vec<StagedLane>>,
}

/// A table's staged lane ops as they came, in chunks (an action's lane is moved in, not copied:
/// a fan-out step's lane reaches hundreds of megabytes, and growing one buffer cost more in
/// copies and page faults than the rest of the step), with an index by partition built on the
/// first read of the table.
struct StagedLane {
    table: &'static str,
    /// Chunks of encoded ops, with their op counts.
    chunks: Vec<(Vec<u8>, usize)>,
    index: Option<LaneIndex>,
}

/// Chunks below this size take the next lane's bytes by copying; larger ones are left whole.
const LANE_CHUNK: usize = 4 << 20;

/// Each partition's ops as a chain: the partition's last op, and for every op the one before it
/// of the same partition. One hash lookup per op and no allocation per partition.
#[derive(Default)]
struct LaneIndex {
    last: foldhash::HashMap<IndexKey, u32>,
    /// Per op (in order): its chunk, its offset in the chunk, and the index of the partition's
    /// previous op (`u32::MAX`: none).
    ops: Vec<(u32, u32, u32)>,
}

/// A partition key, inline when it is a user id.
#[derive(PartialEq, Eq, Hash)]
enum IndexKey {
    Id([u8; 16]),
    Other(Vec<u8>),
}

impl IndexKey {
    fn of(pk: &[u8]) -> Self {
        match <[u8; 16]>::try_from(pk) {
            Ok(id) => IndexKey::Id(id),
            Err(_) => IndexKey::Other(pk.to_vec()),
        }
    }
}

impl LaneIndex {
    /// Indexes the `n` ops of chunk `c` from byte `from` on.
    fn add(&mut self, c: usize, ops: &[u8], from: usize, n: usize) -> Result<(), StoreError> {
        if ops.len() > u32::MAX as usize || self.ops.len() >= u32::MAX as usize {
            return Err(StoreError::Storage(
                "a staged lane chunk holds at most 4 GiB".into(),
            ));
        }
        self.ops.reserve(n);
        for op in lane::ops_from(ops, from) {
            let (at, op) = op?;
            let i = self.ops.len() as u32;
            let prev = self
                .last
                .insert(IndexKey::of(op.pk()), i)
                .unwrap_or(u32::MAX);
            self.ops.push((c as u32, at as u32, prev));
        }
        Ok(())
    }

    /// (chunk, offset) of `pk`'s ops, in order.
    fn offsets(&self, pk: &[u8]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut i = self
            .last
            .get(&IndexKey::of(pk))
            .copied()
            .unwrap_or(u32::MAX);
        while i != u32::MAX {
            let (c, at, prev) = self.ops[i as usize];
            out.push((c, at));
            i = prev;
        }
        out.reverse();
        out
    }
}

impl StagedLane {
    fn new(table: &'static str, ops: Vec<u8>, len: usize) -> Self {
        Self {
            table,
            chunks: vec![(ops, len)],
            index: None,
        }
    }

    fn append(&mut self, ops: Vec<u8>, len: usize) -> Result<(), StoreError> {
        let (c, from) = match self.chunks.last_mut() {
            Some((last, n)) if last.len() + ops.len() <= LANE_CHUNK => {
                let from = last.len();
                // Room for a whole chunk at once: growing by doubling copied the chunk several
                // times over, into fresh pages each time.
                if last.capacity() < from + ops.len() {
                    last.reserve_exact(LANE_CHUNK - from);
                }
                last.extend_from_slice(&ops);
                *n += len;
                (self.chunks.len() - 1, from)
            }
            _ => {
                self.chunks.push((ops, len));
                (self.chunks.len() - 1, 0)
            }
        };
        if let Some(index) = &mut self.index {
            index.add(c, &self.chunks[c].0, from, len)?;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(|(_, n)| n).sum()
    }

    /// The ops of partition `pk`, in order.
    fn ops_of(&mut self, pk: &[u8]) -> Result<Vec<OpRef<'_>>, StoreError> {
        if self.index.is_none() {
            let mut index = LaneIndex::default();
            for (c, (ops, n)) in self.chunks.iter().enumerate() {
                index.add(c, ops, 0, *n)?;
            }
            self.index = Some(index);
        }
        let offsets = self
            .index
            .as_ref()
            .map(|i| i.offsets(pk))
            .unwrap_or_default();
        offsets
            .iter()
            .map(|&(c, at)| lane::op_at(&self.chunks[c as usize].0, at as usize))
            .collect()
    }
}

/// The row of `ck` after `ops` (one partition's, in order): `Some(Some(value))` put,
/// `Some(None)` deleted, `None` untouched.
fn lane_row(ops: &[OpRef<'_>], ck: &[u8]) -> Result<Option<Option<Bytes>>, StoreError> {
    for op in ops.iter().rev() {
        match *op {
            OpRef::Put { ck: k, stored, .. } if k == ck => {
                return Ok(Some(Some(Bytes::copy_from_slice(lane::value(stored)?))));
            }
            OpRef::Delete { ck: k, .. } if k == ck => return Ok(Some(None)),
            OpRef::DeleteRange { start, end, .. } if in_bounds(ck, start, end) => {
                return Ok(Some(None));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Whether `ck` lies in `range`.
fn in_range(ck: &[u8], range: &CkRange) -> bool {
    in_bounds(
        ck,
        range.start.as_ref().map(Vec::as_slice),
        range.end.as_ref().map(Vec::as_slice),
    )
}

/// Whether `ck` lies between `start` and `end`.
fn in_bounds(ck: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let above = match start {
        Bound::Unbounded => true,
        Bound::Included(s) => ck >= s,
        Bound::Excluded(s) => ck > s,
    };
    let below = match end {
        Bound::Unbounded => true,
        Bound::Included(e) => ck <= e,
        Bound::Excluded(e) => ck < e,
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
            lanes: Mutex::new(Vec::new()),
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
            .sum::<usize>()
            + self
                .lanes
                .lock()
                .expect("staged lanes")
                .iter()
                .map(StagedLane::len)
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The staged writes as one batch (each key once: the last write wins).
    pub fn into_batch(self) -> WriteBatch {
        let writes = self.writes.into_inner().expect("staged lock");
        let lanes = self.lanes.into_inner().expect("staged lanes");
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
        // A lane per chunk: a resident table logs each as its own changelog record, so a large
        // step is never copied into one buffer.
        batch.lanes = lanes
            .into_iter()
            .flat_map(|l| {
                let table = l.table;
                l.chunks.into_iter().map(move |(ops, len)| Lane {
                    table,
                    ops,
                    len,
                    last_put: None,
                })
            })
            .collect();
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

impl Staged {
    fn apply_mutation(&self, m: Mutation) -> Result<(), StoreError> {
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
        Ok(())
    }

    /// Stages encoded ops of `table` as mutations, in order.
    fn stage_lane_ops(&self, table: &'static str, ops: &[u8]) -> Result<(), StoreError> {
        for op in lane::ops(ops) {
            self.apply_mutation(op?.to_mutation(table)?)?;
        }
        Ok(())
    }

    /// Moves `table`'s staged lane, if any, into the staged mutations.
    fn spill_lane(&self, table: &str) -> Result<(), StoreError> {
        let lane = {
            let mut lanes = self.lanes.lock().expect("staged lanes");
            match lanes.iter().position(|l| l.table == table) {
                Some(i) => lanes.remove(i),
                None => return Ok(()),
            }
        };
        for (ops, _) in &lane.chunks {
            self.stage_lane_ops(lane.table, ops)?;
        }
        Ok(())
    }

    /// A scan of a table staged as a lane: the stored rows with the partition's staged ops
    /// applied in order. `None` when the table has no staged lane.
    fn lane_scan(
        &self,
        table: &str,
        pk: &[u8],
        range: &CkRange,
        order: Order,
        limit: usize,
    ) -> Result<Option<Vec<Row>>, StoreError> {
        let ops: Vec<Mutation> = {
            let mut lanes = self.lanes.lock().expect("staged lanes");
            let Some(l) = lanes.iter_mut().find(|l| l.table == table) else {
                return Ok(None);
            };
            let table = l.table;
            l.ops_of(pk)?
                .iter()
                .map(|op| op.to_mutation(table))
                .collect::<Result<_, _>>()?
        };
        if ops.is_empty() {
            return self.store.scan(table, pk, range, order, limit).map(Some);
        }
        if empty_range(range) || limit == 0 {
            return Ok(Some(Vec::new()));
        }
        // Stored rows: as many as the page needs plus one per staged delete (each can hide one);
        // all of them when a range delete is staged. When the store had more, staged puts past
        // the last stored row read may sort after rows not read, so they wait for a later page.
        let deletes = ops
            .iter()
            .filter(|m| matches!(m, Mutation::Delete { .. }))
            .count();
        let want = if ops
            .iter()
            .any(|m| matches!(m, Mutation::DeleteRange { .. }))
        {
            usize::MAX
        } else {
            limit.saturating_add(deletes)
        };
        let stored = self.store.scan(table, pk, range, order, want)?;
        let boundary = (stored.len() == want)
            .then(|| stored.last().map(|r| r.ck.clone()))
            .flatten();
        let beyond = |ck: &Bytes| match (&boundary, order) {
            (Some(b), Order::Asc) => ck > b,
            (Some(b), Order::Desc) => ck < b,
            (None, _) => false,
        };
        let mut rows: BTreeMap<Bytes, Bytes> =
            stored.into_iter().map(|r| (r.ck, r.value)).collect();
        for m in ops {
            match m {
                Mutation::Put { ck, value, .. } if in_range(&ck, range) && !beyond(&ck) => {
                    rows.insert(ck, value);
                }
                Mutation::Put { .. } => {}
                Mutation::Delete { ck, .. } => {
                    rows.remove(&ck);
                }
                Mutation::DeleteRange { range: dr, .. } => {
                    rows.retain(|k, _| !in_range(k, &dr));
                }
            }
        }
        let rows = rows.into_iter().map(|(ck, value)| Row { ck, value });
        Ok(Some(match order {
            Order::Asc => rows.take(limit).collect(),
            Order::Desc => rows.rev().take(limit).collect(),
        }))
    }
}

impl StateStore for Staged {
    fn get(&self, table: &str, pk: &[u8], ck: &[u8]) -> Result<Option<Bytes>, StoreError> {
        {
            let mut lanes = self.lanes.lock().expect("staged lanes");
            if let Some(l) = lanes.iter_mut().find(|l| l.table == table) {
                if let Some(row) = lane_row(&l.ops_of(pk)?, ck)? {
                    return Ok(row);
                }
                return self.store.get(table, pk, ck);
            }
        }
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
        if let Some(rows) = self.lane_scan(table, pk, range, order, limit)? {
            return Ok(rows);
        }
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
            self.spill_lane(m.table())?;
            self.apply_mutation(m)?;
        }
        for l in batch.lanes {
            let has_writes = self.lock().iter().any(|(t, _)| *t == l.table);
            if has_writes {
                self.stage_lane_ops(l.table, &l.ops)?;
                continue;
            }
            let mut lanes = self.lanes.lock().expect("staged lanes");
            match lanes.iter_mut().find(|s| s.table == l.table) {
                Some(s) => s.append(l.ops, l.len)?,
                None => lanes.push(StagedLane::new(l.table, l.ops, l.len)),
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
