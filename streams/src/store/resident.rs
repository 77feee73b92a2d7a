//! Resident tables of the embedded store: held in memory, durable through a changelog.
//!
//! A resident table answers every read from memory. Each [`WriteBatch`](super::WriteBatch) that
//! writes it also writes one changelog record (its mutations of the table, encoded below) into
//! the same fjall batch as the batch's other rows, so the record is exactly as atomic and
//! durable as they are. After the fjall batch commits, the mutations are applied to memory, one
//! partition at a time under its shard's lock (a single-partition read sees all of a batch's
//! writes to that partition or none). Opening the store loads the last checkpoint and replays the
//! changelog after it, in order. When the changelog has grown past both a floor and the table's
//! live size, a checkpoint writes every partition changed since the last one as one block and
//! deletes the changelog records it covers: each row is then written about twice in all, and a
//! restart replays at most about the table's size.
//!
//! This is what home feeds need: a fan-out writes one small row into each of thousands of
//! partitions per post, which as LSM rows costs a memtable insert, a journal entry and later
//! compaction per row; here it costs an insert into a sorted array plus its bytes in one
//! sequential changelog value. The price is memory: the whole table lives in RAM (about 4 bytes of
//! index plus 7 bytes of header per row besides the key and value; see
//! [`EmbeddedStore::resident_bytes`](super::EmbeddedStore::resident_bytes)).
//!
//! Hand-written: the sorted per-partition arrays and the changelog encoding are small, and no
//! crate offers an in-memory ordered store with a changelog inside another store's batches.
//!
//! Replaying a changelog over a newer checkpoint converges (every record sets rows to what they
//! were after it; a range delete removes rows a later record re-puts), so a checkpoint can be
//! written in several fjall batches, the changelog deletion last.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::{Mutex, RwLock};

use bytes::Bytes;

use super::lane::{self, OpRef};
use super::{CkRange, StoreError};

/// Shards of a resident table's partitions (each behind its own lock).
const SHARDS: usize = 64;
// [`Grouped::of`] notes shards in a byte.
const _: () = assert!(SHARDS <= 256);
/// Records with at least this many ops are applied by two threads.
const PARALLEL_APPLY_OPS: usize = 20_000;
/// A row in a partition's arena: clustering-key length (u16 BE), stored-value length (u32 BE),
/// the key, the stored value.
const ROW_HEADER: usize = 6;

/// One partition: rows appended to an arena, ordered by an index of their offsets.
#[derive(Debug, Default, Clone)]
pub(crate) struct Part {
    bytes: Vec<u8>,
    /// Offsets of the live rows in `bytes`, in clustering-key order.
    order: VecDeque<u32>,
    /// Bytes of `bytes` no live row uses any more.
    dead: usize,
    /// Changed since the last checkpoint (then listed in [`LogState::dirty`]).
    dirty: bool,
}

fn row_at(bytes: &[u8], off: u32) -> (&[u8], &[u8]) {
    let b = &bytes[off as usize..];
    let ck_len = u16::from_be_bytes([b[0], b[1]]) as usize;
    let v_len = u32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize;
    let ck = &b[ROW_HEADER..ROW_HEADER + ck_len];
    (ck, &b[ROW_HEADER + ck_len..ROW_HEADER + ck_len + v_len])
}

fn row_len(bytes: &[u8], off: u32) -> usize {
    let (ck, v) = row_at(bytes, off);
    ROW_HEADER + ck.len() + v.len()
}

impl Part {
    /// Rows (clustering key, stored value) in key order.
    pub(crate) fn rows(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> {
        self.order.iter().map(|&o| row_at(&self.bytes, o))
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Memory the partition's rows take (arena without dead bytes, plus the index).
    pub(crate) fn live_bytes(&self) -> usize {
        self.bytes.len() - self.dead + self.order.len() * 4
    }

    fn find(&self, ck: &[u8]) -> Result<usize, usize> {
        self.order
            .binary_search_by(|&o| row_at(&self.bytes, o).0.cmp(ck))
    }

    pub(crate) fn get(&self, ck: &[u8]) -> Option<&[u8]> {
        self.find(ck)
            .ok()
            .map(|i| row_at(&self.bytes, self.order[i]).1)
    }

    /// Index positions `lo..hi` of the rows in `range`.
    pub(crate) fn index_range(&self, range: &CkRange) -> (usize, usize) {
        self.index_bounds(
            range.start.as_ref().map(Vec::as_slice),
            range.end.as_ref().map(Vec::as_slice),
        )
    }

    /// Index positions `lo..hi` of the rows between `start` and `end`.
    pub(crate) fn index_bounds(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> (usize, usize) {
        let pp = |f: &dyn Fn(&[u8]) -> bool| {
            self.order.partition_point(|&o| f(row_at(&self.bytes, o).0))
        };
        let lo = match start {
            Bound::Unbounded => 0,
            Bound::Included(s) => pp(&|ck| ck < s),
            Bound::Excluded(s) => pp(&|ck| ck <= s),
        };
        let hi = match end {
            Bound::Unbounded => self.order.len(),
            Bound::Included(e) => pp(&|ck| ck <= e),
            Bound::Excluded(e) => pp(&|ck| ck < e),
        };
        (lo, hi.max(lo))
    }

    /// The row at index position `i`.
    pub(crate) fn row(&self, i: usize) -> (&[u8], &[u8]) {
        row_at(&self.bytes, self.order[i])
    }

    fn push_row(&mut self, ck: &[u8], value: &[u8]) -> Result<u32, StoreError> {
        let off = self.bytes.len();
        let end = off + ROW_HEADER + ck.len() + value.len();
        if end > u32::MAX as usize || value.len() > u32::MAX as usize {
            return Err(StoreError::Storage(
                "a resident partition holds at most 4 GiB".into(),
            ));
        }
        self.bytes.reserve(end - off);
        self.bytes
            .extend_from_slice(&(ck.len() as u16).to_be_bytes());
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(ck);
        self.bytes.extend_from_slice(value);
        Ok(off as u32)
    }

    pub(crate) fn put(&mut self, ck: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let off = self.push_row(ck, value)?;
        // A new first or last row (a feed's newest item: keys are descending ids) needs no search.
        let first = self.order.front().map(|&o| row_at(&self.bytes, o).0);
        if first.is_none_or(|f| ck < f) {
            self.order.push_front(off);
            return Ok(());
        }
        let last = self.order.back().map(|&o| row_at(&self.bytes, o).0);
        if last.is_some_and(|l| ck > l) {
            self.order.push_back(off);
            return Ok(());
        }
        match self.find(ck) {
            Ok(i) => {
                self.dead += row_len(&self.bytes, self.order[i]);
                self.order[i] = off;
            }
            Err(i) => self.order.insert(i, off),
        }
        self.maybe_compact();
        Ok(())
    }

    pub(crate) fn delete(&mut self, ck: &[u8]) {
        if let Ok(i) = self.find(ck) {
            let off = self.order.remove(i).expect("found");
            self.dead += row_len(&self.bytes, off);
            self.maybe_compact();
        }
    }

    pub(crate) fn delete_range(&mut self, start: Bound<&[u8]>, end: Bound<&[u8]>) {
        let (lo, hi) = self.index_bounds(start, end);
        let bytes = &self.bytes;
        for off in self.order.drain(lo..hi) {
            self.dead += row_len(bytes, off);
        }
        self.maybe_compact();
    }

    /// Compacts the arena in place once more than half of it is dead: the live rows slide down
    /// over the dead bytes in arena order. In place, because a new exact-size arena was grown
    /// again by the next put (a full feed compacts every few hundred deliveries), each time a
    /// copy into fresh pages; the capacity is given back only when it is far above the need.
    fn maybe_compact(&mut self) {
        if self.dead < 4_096 || self.dead * 2 < self.bytes.len() {
            return;
        }
        let mut by_offset: Vec<(u32, u32)> = (0u32..)
            .zip(self.order.iter())
            .map(|(i, &off)| (off, i))
            .collect();
        by_offset.sort_unstable();
        let mut at = 0usize;
        for (off, i) in by_offset {
            let len = row_len(&self.bytes, off);
            self.bytes.copy_within(off as usize..off as usize + len, at);
            self.order[i as usize] = at as u32;
            at += len;
        }
        self.bytes.truncate(at);
        if self.bytes.capacity() > 4 * at.max(4_096) {
            self.bytes.shrink_to(2 * at);
        }
        self.dead = 0;
    }

    /// The partition as a checkpoint block: its live rows in order, back to back.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() - self.dead);
        for &off in &self.order {
            let len = row_len(&self.bytes, off);
            out.extend_from_slice(&self.bytes[off as usize..off as usize + len]);
        }
        out
    }

    /// A partition from its checkpoint block.
    pub(crate) fn decode(block: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Storage("corrupt resident checkpoint block".into());
        if block.len() > u32::MAX as usize {
            return Err(corrupt());
        }
        let mut part = Part {
            bytes: block.to_vec(),
            order: VecDeque::new(),
            dead: 0,
            dirty: false,
        };
        let mut at = 0usize;
        while at < block.len() {
            let head = block.get(at..at + ROW_HEADER).ok_or_else(corrupt)?;
            let len = ROW_HEADER
                + u16::from_be_bytes([head[0], head[1]]) as usize
                + u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
            if at + len > block.len() {
                return Err(corrupt());
            }
            if let Some(&prev) = part.order.back()
                && row_at(block, prev).0 >= row_at(block, at as u32).0
            {
                return Err(corrupt());
            }
            part.order.push_back(at as u32);
            at += len;
        }
        Ok(part)
    }
}

/// Where the changelog stands.
#[derive(Debug, Default)]
pub(crate) struct LogState {
    /// Sequence number of the oldest changelog record not yet covered by a checkpoint.
    pub first_seq: u64,
    /// Sequence number the next record gets.
    pub next_seq: u64,
    /// Bytes of changelog records since the last checkpoint.
    pub log_bytes: u64,
    /// Partitions changed since the last checkpoint (each once, but for one emptied and
    /// written again).
    pub dirty: Vec<Bytes>,
}

/// A changelog record checked and its ops grouped by shard, as byte offsets into the record
/// (four bytes an op: decoded ops of a fan-out step took hundreds of megabytes, all in fresh
/// pages, before one was applied).
pub(crate) struct Grouped {
    /// Offsets of the ops, shard by shard, in record order within each shard.
    offsets: Vec<u32>,
    /// Per shard with ops: (shard, start, end) of its run in `offsets`, in shard order.
    runs: Vec<(usize, usize, usize)>,
}

impl Grouped {
    /// Checks every op of `record` and groups them.
    pub(crate) fn of(record: &[u8]) -> Result<Self, StoreError> {
        if record.len() > u32::MAX as usize {
            return Err(StoreError::Storage(
                "a resident changelog record holds at most 4 GiB".into(),
            ));
        }
        // A feed row's op takes 59 bytes; a guess that rarely needs a second allocation.
        let guess = record.len() / 40;
        let (mut shards, mut ats) = (Vec::with_capacity(guess), Vec::with_capacity(guess));
        let mut counts = [0usize; SHARDS];
        for op in lane::ops_from(record, 0) {
            let (at, op) = op?;
            let s = shard_of(op.pk());
            counts[s] += 1;
            shards.push(s as u8);
            ats.push(at as u32);
        }
        let mut next = [0usize; SHARDS];
        let mut runs = Vec::new();
        let mut total = 0;
        for (s, &n) in counts.iter().enumerate() {
            next[s] = total;
            if n > 0 {
                runs.push((s, total, total + n));
            }
            total += n;
        }
        let mut offsets = vec![0u32; ats.len()];
        for (&s, &at) in shards.iter().zip(&ats) {
            offsets[next[s as usize]] = at;
            next[s as usize] += 1;
        }
        Ok(Self { offsets, runs })
    }
}

/// A resident table's rows, in shards of partitions.
pub(crate) struct Rows {
    shards: Vec<RwLock<foldhash::HashMap<Key, Part>>>,
    live_bytes: Mutex<i64>,
}

/// A partition key, inline when short (a user id), so a lookup compares keys without
/// following a pointer: at a million feed rows a step, that miss was the largest cost.
#[derive(Clone)]
enum Key {
    Inline(u8, [u8; INLINE_KEY]),
    Heap(Box<[u8]>),
}

const INLINE_KEY: usize = 30;

impl Key {
    fn new(pk: &[u8]) -> Self {
        if pk.len() <= INLINE_KEY {
            let mut buf = [0u8; INLINE_KEY];
            buf[..pk.len()].copy_from_slice(pk);
            Key::Inline(pk.len() as u8, buf)
        } else {
            Key::Heap(pk.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline(len, buf) => &buf[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    // As `[u8]` hashes: lookups by `&[u8]` must find it.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

/// FNV-1a: which shard a partition key lives in (hand-written: four lines).
fn shard_of(pk: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in pk {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as usize) % SHARDS
}

impl Rows {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(foldhash::HashMap::default()))
                .collect(),
            live_bytes: Mutex::new(0),
        }
    }

    /// Runs `f` on `pk`'s partition, if it exists, under its shard's read lock.
    pub(crate) fn with_part<R>(&self, pk: &[u8], f: impl FnOnce(&Part) -> R) -> Option<R> {
        let shard = self.shards[shard_of(pk)].read().expect("resident shard");
        shard.get(pk).map(f)
    }

    /// Every partition key, in the embedded store's key order (length, then bytes).
    pub(crate) fn pks(&self) -> Vec<Bytes> {
        let mut pks: Vec<Bytes> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .expect("resident shard")
                    .keys()
                    .map(|k| Bytes::copy_from_slice(k.as_slice()))
                    .collect::<Vec<_>>()
            })
            .collect();
        pks.sort_unstable_by(|a, b| (a.len(), a.as_ref()).cmp(&(b.len(), b.as_ref())));
        pks
    }

    /// Applies a changelog record (ops in the [`lane`] encoding) in order, each partition's ops
    /// under one hold of its shard's lock. Adds the partitions that became dirty to `dirty`.
    pub(crate) fn apply_record(
        &self,
        record: &[u8],
        dirty: &mut Vec<Bytes>,
    ) -> Result<(), StoreError> {
        self.apply_grouped(record, &Grouped::of(record)?, dirty)
    }

    /// Applies `record`, whose ops `grouped` groups, as [`Rows::apply_record`] does.
    pub(crate) fn apply_grouped(
        &self,
        record: &[u8],
        grouped: &Grouped,
        dirty: &mut Vec<Bytes>,
    ) -> Result<(), StoreError> {
        let runs = &grouped.runs[..];
        // A large record (a fan-out step) is applied by two threads, each taking whole shards:
        // the partitions of different shards are independent, and the work is mostly cache
        // misses, which two cores overlap.
        let ops = grouped.offsets.len();
        let workers = if ops >= PARALLEL_APPLY_OPS {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
        } else {
            1
        };
        let (delta, more) = if workers > 1 {
            // Split where half the ops are done, not half the shards.
            let half = runs
                .partition_point(|r| r.2 <= ops / 2)
                .clamp(1, runs.len());
            let (a, b) = runs.split_at(half);
            std::thread::scope(|scope| {
                let other = scope.spawn(|| self.apply_shards(record, &grouped.offsets, a));
                let mine = self.apply_shards(record, &grouped.offsets, b);
                let other = other.join().expect("resident apply thread");
                let (d1, mut v1) = other?;
                let (d2, v2) = mine?;
                v1.extend(v2);
                Ok::<_, StoreError>((d1 + d2, v1))
            })?
        } else {
            self.apply_shards(record, &grouped.offsets, runs)?
        };
        dirty.extend(more);
        *self.live_bytes.lock().expect("live bytes") += delta;
        Ok(())
    }

    /// Applies each run's ops (shard, range of `offsets`) under one hold of its shard's lock;
    /// returns the change of live bytes and the partitions that became dirty.
    fn apply_shards(
        &self,
        record: &[u8],
        offsets: &[u32],
        runs: &[(usize, usize, usize)],
    ) -> Result<(i64, Vec<Bytes>), StoreError> {
        let mut delta = 0i64;
        let mut dirty = Vec::new();
        for &(s, start, end) in runs {
            let mut shard = self.shards[s].write().expect("resident shard");
            for &at in &offsets[start..end] {
                let op = lane::op_at(record, at as usize)?;
                let pk = op.pk();
                let (before, part) = match op {
                    OpRef::Put { ck, stored, .. } => {
                        // One lookup: most puts go to an existing partition.
                        let part = shard.entry(Key::new(pk)).or_default();
                        let before = part.live_bytes() as i64;
                        part.put(ck, stored)?;
                        (before, Some(part))
                    }
                    OpRef::Delete { ck, .. } => match shard.get_mut(pk) {
                        Some(p) => {
                            let before = p.live_bytes() as i64;
                            p.delete(ck);
                            (before, Some(p))
                        }
                        None => (0, None),
                    },
                    OpRef::DeleteRange { start, end, .. } => match shard.get_mut(pk) {
                        Some(p) => {
                            let before = p.live_bytes() as i64;
                            p.delete_range(start, end);
                            (before, Some(p))
                        }
                        None => (0, None),
                    },
                };
                let Some(part) = part else { continue };
                if !part.dirty {
                    part.dirty = true;
                    dirty.push(Bytes::copy_from_slice(pk));
                }
                delta += part.live_bytes() as i64 - before;
                let empty = part.len() == 0;
                if empty {
                    shard.remove(pk);
                }
            }
        }
        Ok((delta, dirty))
    }

    /// Inserts a partition loaded from a checkpoint block.
    pub(crate) fn load(&self, pk: &[u8], part: Part) {
        let bytes = part.live_bytes() as i64;
        let mut shard = self.shards[shard_of(pk)].write().expect("resident shard");
        if let Some(old) = shard.insert(Key::new(pk), part) {
            *self.live_bytes.lock().expect("live bytes") -= old.live_bytes() as i64;
        }
        *self.live_bytes.lock().expect("live bytes") += bytes;
    }

    /// The checkpoint block of `pk`'s partition (`None`: the partition is empty), marking it
    /// clean.
    pub(crate) fn checkpoint_block(&self, pk: &[u8]) -> Option<Vec<u8>> {
        let mut shard = self.shards[shard_of(pk)].write().expect("resident shard");
        shard.get_mut(pk).map(|p| {
            p.dirty = false;
            p.encode()
        })
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.write().expect("resident shard").clear();
        }
        *self.live_bytes.lock().expect("live bytes") = 0;
    }

    /// Memory the rows take (see [`Part::live_bytes`]).
    pub(crate) fn live_bytes(&self) -> u64 {
        (*self.live_bytes.lock().expect("live bytes")).max(0) as u64
    }

    /// Rows stored, expired ones not yet purged included.
    pub(crate) fn count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .expect("resident shard")
                    .values()
                    .map(|p| p.len() as u64)
                    .sum::<u64>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cks(p: &Part) -> Vec<Vec<u8>> {
        p.rows().map(|(ck, _)| ck.to_vec()).collect()
    }

    #[test]
    fn a_part_keeps_rows_ordered_and_compacts() {
        let mut p = Part::default();
        for i in (0..100u32).rev() {
            p.put(&i.to_be_bytes(), format!("v{i}").as_bytes()).unwrap();
        }
        p.put(&5u32.to_be_bytes(), b"five").unwrap();
        assert_eq!(p.len(), 100);
        assert_eq!(p.get(&5u32.to_be_bytes()), Some(&b"five"[..]));
        assert_eq!(p.get(&7u32.to_be_bytes()), Some(&b"v7"[..]));
        assert_eq!(p.get(&100u32.to_be_bytes()), None);
        let want: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(cks(&p), want);
        p.delete(&0u32.to_be_bytes());
        p.delete(&0u32.to_be_bytes());
        p.delete_range(
            Bound::Excluded(&10u32.to_be_bytes()[..]),
            Bound::Included(&90u32.to_be_bytes()[..]),
        );
        let want: Vec<Vec<u8>> = (1..=10u32)
            .chain(91..100)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        assert_eq!(cks(&p), want);
        // Churn: the arena is rewritten when mostly dead, the rows stay.
        for round in 0..200u32 {
            p.put(&3u32.to_be_bytes(), &round.to_be_bytes().repeat(20))
                .unwrap();
        }
        // 200 rewrites of 90 bytes: 18 KB written, at most the 4 KiB floor of dead bytes kept.
        assert!(p.dead < 4_096 + 90, "{} dead", p.dead);
        assert_eq!(p.bytes.len() - p.dead, p.encode().len());
        assert_eq!(cks(&p), want);
        assert_eq!(
            p.get(&3u32.to_be_bytes()),
            Some(&199u32.to_be_bytes().repeat(20)[..])
        );
        let back = Part::decode(&p.encode()).unwrap();
        assert_eq!(
            back.rows().collect::<Vec<_>>(),
            p.rows().collect::<Vec<_>>()
        );
        assert!(Part::decode(&p.encode()[..10]).is_err());
        let mut swapped = Part::default();
        swapped.push_row(b"b", b"").unwrap();
        swapped.push_row(b"a", b"").unwrap();
        assert!(Part::decode(&swapped.bytes).is_err(), "out of order");
    }

    #[test]
    fn index_ranges_follow_bounds() {
        let mut p = Part::default();
        for k in [&b"a"[..], b"ab", b"b", b"c"] {
            p.put(k, b"").unwrap();
        }
        let r = |start, end| p.index_range(&CkRange { start, end });
        let inc = |s: &[u8]| Bound::Included(s.to_vec());
        let exc = |s: &[u8]| Bound::Excluded(s.to_vec());
        assert_eq!(r(Bound::Unbounded, Bound::Unbounded), (0, 4));
        assert_eq!(r(inc(b"ab"), inc(b"b")), (1, 3));
        assert_eq!(r(exc(b"ab"), exc(b"c")), (2, 3));
        assert_eq!(r(inc(b"z"), Bound::Unbounded), (4, 4));
        assert_eq!(r(inc(b"c"), exc(b"a")), (3, 3));
        assert_eq!(p.row(1).0, b"ab");
    }

    #[test]
    fn rows_apply_in_order_and_count_memory() {
        let rows = Rows::new();
        let put = |buf: &mut Vec<u8>, pk: &[u8], ck: &[u8]| lane::put(buf, pk, ck, &[0], b"v");
        let mut record = Vec::new();
        put(&mut record, b"a", b"1");
        put(&mut record, b"b", b"1");
        lane::delete_range(&mut record, b"a", &CkRange::all());
        put(&mut record, b"a", b"2");
        let mut dirty = Vec::new();
        rows.apply_record(&record, &mut dirty).unwrap();
        // "a" emptied by the range delete, then written again: listed twice.
        dirty.sort();
        assert_eq!(
            dirty,
            [&b"a"[..], b"a", b"b"].map(Bytes::from_static).to_vec()
        );
        assert_eq!(rows.count(), 2);
        assert_eq!(rows.with_part(b"a", cks), Some(vec![b"2".to_vec()]));
        assert_eq!(rows.live_bytes(), 2 * (ROW_HEADER as u64 + 3 + 4));
        let mut record = Vec::new();
        lane::delete(&mut record, b"b", b"1");
        rows.apply_record(&record, &mut dirty).unwrap();
        assert_eq!(dirty.len(), 3, "b was dirty already");
        assert!(rows.checkpoint_block(b"a").is_some());
        assert!(rows.checkpoint_block(b"b").is_none());
        let mut record = Vec::new();
        put(&mut record, b"a", b"3");
        rows.apply_record(&record, &mut dirty).unwrap();
        assert_eq!(dirty.len(), 4, "a is dirty again after its checkpoint");
        assert!(
            rows.with_part(b"b", |_| ()).is_none(),
            "empty partitions go"
        );
        assert_eq!(rows.pks(), vec![Bytes::from_static(b"a")]);
        assert_eq!(
            rows.live_bytes(),
            2 * (ROW_HEADER as u64 + 3 + 4),
            "a/2 and a/3"
        );
        assert!(rows.apply_record(&[7], &mut dirty).is_err());
    }

    #[test]
    fn a_feed_like_part_compacts_in_place() {
        // Newest rows first (descending keys), the oldest deleted past 300: the arena's live
        // rows are in the reverse of their key order, so compaction must reorder offsets.
        let mut p = Part::default();
        let mut model = std::collections::BTreeMap::new();
        for i in 0..5_000u32 {
            let ck = (u32::MAX - i).to_be_bytes();
            p.put(&ck, &i.to_be_bytes().repeat(4)).unwrap();
            model.insert(ck.to_vec(), i.to_be_bytes().repeat(4));
            if model.len() > 300 {
                let oldest = model.keys().next_back().unwrap().clone();
                p.delete(&oldest);
                model.remove(&oldest);
            }
        }
        let rows: Vec<(Vec<u8>, Vec<u8>)> =
            p.rows().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(rows, model.into_iter().collect::<Vec<_>>());
        let live = p.encode().len();
        assert_eq!(p.bytes.len() - p.dead, live);
        assert!(
            p.bytes.len() <= 2 * live + 4_096 + 26,
            "{} bytes",
            p.bytes.len()
        );
    }

    #[test]
    fn a_large_record_applies_as_its_ops_one_by_one() {
        // Enough ops for two threads, over many partitions, deletes among them: the same rows
        // as applying each op as its own record.
        let (big, small) = (Rows::new(), Rows::new());
        let (mut record, mut singles) = (Vec::new(), Vec::new());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let n = PARALLEL_APPLY_OPS + 5_000;
        for i in 0..n as u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (pk, ck) = ((x % 3_000).to_be_bytes(), ((x >> 20) % 50).to_be_bytes());
            let mut one = Vec::new();
            if i % 7 == 0 {
                lane::delete(&mut one, &pk, &ck);
            } else {
                lane::put(&mut one, &pk, &ck, &[0], &i.to_be_bytes());
            }
            record.extend_from_slice(&one);
            singles.push(one);
        }
        let grouped = Grouped::of(&record).unwrap();
        assert_eq!(grouped.offsets.len(), n);
        assert!(grouped.runs.len() > 1);
        let mut dirty = Vec::new();
        big.apply_grouped(&record, &grouped, &mut dirty).unwrap();
        for one in &singles {
            small.apply_record(one, &mut Vec::new()).unwrap();
        }
        assert_eq!(big.pks(), small.pks());
        let dirty: std::collections::BTreeSet<Bytes> = dirty.into_iter().collect();
        assert!(big.pks().iter().all(|pk| dirty.contains(pk)));
        for pk in big.pks() {
            assert_eq!(
                big.with_part(&pk, Part::encode),
                small.with_part(&pk, Part::encode)
            );
        }
        assert_eq!(big.live_bytes(), small.live_bytes());
        assert!(Grouped::of(&record[..record.len() - 1]).is_err());
    }
}
