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

use super::{CkRange, StoreError};

/// Shards of a resident table's partitions (each behind its own lock).
const SHARDS: usize = 64;
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
        let pp = |f: &dyn Fn(&[u8]) -> bool| {
            self.order.partition_point(|&o| f(row_at(&self.bytes, o).0))
        };
        let lo = match &range.start {
            Bound::Unbounded => 0,
            Bound::Included(s) => pp(&|ck| ck < s.as_slice()),
            Bound::Excluded(s) => pp(&|ck| ck <= s.as_slice()),
        };
        let hi = match &range.end {
            Bound::Unbounded => self.order.len(),
            Bound::Included(e) => pp(&|ck| ck <= e.as_slice()),
            Bound::Excluded(e) => pp(&|ck| ck < e.as_slice()),
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

    pub(crate) fn delete_range(&mut self, range: &CkRange) {
        let (lo, hi) = self.index_range(range);
        let bytes = &self.bytes;
        for off in self.order.drain(lo..hi) {
            self.dead += row_len(bytes, off);
        }
        self.maybe_compact();
    }

    /// Rewrites the arena once more than half of it is dead.
    fn maybe_compact(&mut self) {
        if self.dead < 4_096 || self.dead * 2 < self.bytes.len() {
            return;
        }
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.dead);
        for off in self.order.iter_mut() {
            let len = row_len(&self.bytes, *off);
            let at = bytes.len() as u32;
            bytes.extend_from_slice(&self.bytes[*off as usize..*off as usize + len]);
            *off = at;
        }
        self.bytes = bytes;
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

/// One mutation of a resident table, as logged and replayed. Values are stored values (the
/// embedded store's flag byte and optional expiry, then the user's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Put { pk: Bytes, ck: Bytes, stored: Bytes },
    Delete { pk: Bytes, ck: Bytes },
    DeleteRange { pk: Bytes, range: CkRange },
}

impl Op {
    pub(crate) fn pk(&self) -> &Bytes {
        match self {
            Op::Put { pk, .. } | Op::Delete { pk, .. } | Op::DeleteRange { pk, .. } => pk,
        }
    }
}

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_RANGE: u8 = 3;

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_bound(out: &mut Vec<u8>, b: &Bound<Vec<u8>>) {
    match b {
        Bound::Unbounded => out.push(0),
        Bound::Included(k) => {
            out.push(1);
            put_bytes16(out, k);
        }
        Bound::Excluded(k) => {
            out.push(2);
            put_bytes16(out, k);
        }
    }
}

/// A changelog record: the ops, in order. Keys fit u16 lengths (the store refuses longer ones
/// before encoding).
pub(crate) fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let size: usize = ops
        .iter()
        .map(|op| match op {
            Op::Put { pk, ck, stored } => 9 + pk.len() + ck.len() + stored.len(),
            Op::Delete { pk, ck } => 5 + pk.len() + ck.len(),
            Op::DeleteRange { pk, .. } => 16 + pk.len(),
        })
        .sum();
    let mut out = Vec::with_capacity(size);
    for op in ops {
        match op {
            Op::Put { pk, ck, stored } => {
                out.push(PUT);
                put_bytes16(&mut out, pk);
                put_bytes16(&mut out, ck);
                out.extend_from_slice(&(stored.len() as u32).to_be_bytes());
                out.extend_from_slice(stored);
            }
            Op::Delete { pk, ck } => {
                out.push(DELETE);
                put_bytes16(&mut out, pk);
                put_bytes16(&mut out, ck);
            }
            Op::DeleteRange { pk, range } => {
                out.push(DELETE_RANGE);
                put_bytes16(&mut out, pk);
                put_bound(&mut out, &range.start);
                put_bound(&mut out, &range.end);
            }
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Storage(
                "corrupt resident changelog record".into(),
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn bytes16(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.take(2)?;
        let n = u16::from_be_bytes([n[0], n[1]]) as usize;
        self.take(n)
    }
    fn bound(&mut self) -> Result<Bound<Vec<u8>>, StoreError> {
        Ok(match self.u8()? {
            0 => Bound::Unbounded,
            1 => Bound::Included(self.bytes16()?.to_vec()),
            2 => Bound::Excluded(self.bytes16()?.to_vec()),
            _ => {
                return Err(StoreError::Storage(
                    "corrupt resident changelog bound".into(),
                ));
            }
        })
    }
}

pub(crate) fn decode_ops(record: &[u8]) -> Result<Vec<Op>, StoreError> {
    let mut r = Reader(record);
    let mut ops = Vec::new();
    while !r.0.is_empty() {
        let op = match r.u8()? {
            PUT => {
                let pk = Bytes::copy_from_slice(r.bytes16()?);
                let ck = Bytes::copy_from_slice(r.bytes16()?);
                let n = r.take(4)?;
                let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
                let stored = Bytes::copy_from_slice(r.take(n)?);
                Op::Put { pk, ck, stored }
            }
            DELETE => Op::Delete {
                pk: Bytes::copy_from_slice(r.bytes16()?),
                ck: Bytes::copy_from_slice(r.bytes16()?),
            },
            DELETE_RANGE => {
                let pk = Bytes::copy_from_slice(r.bytes16()?);
                let start = r.bound()?;
                let end = r.bound()?;
                Op::DeleteRange {
                    pk,
                    range: CkRange { start, end },
                }
            }
            _ => return Err(StoreError::Storage("corrupt resident changelog op".into())),
        };
        ops.push(op);
    }
    Ok(ops)
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

/// A resident table's rows, in shards of partitions.
pub(crate) struct Rows {
    shards: Vec<RwLock<foldhash::HashMap<Bytes, Part>>>,
    live_bytes: Mutex<i64>,
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
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        pks.sort_unstable_by(|a, b| (a.len(), a.as_ref()).cmp(&(b.len(), b.as_ref())));
        pks
    }

    /// Applies `ops` in order, each partition's under one hold of its shard's lock. Adds the
    /// partitions that became dirty to `dirty`.
    pub(crate) fn apply(&self, ops: &[Op], dirty: &mut Vec<Bytes>) -> Result<(), StoreError> {
        let mut by_shard: Vec<Vec<&Op>> = vec![Vec::new(); SHARDS];
        for op in ops {
            by_shard[shard_of(op.pk())].push(op);
        }
        let mut delta = 0i64;
        for (s, ops) in by_shard.iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            let mut shard = self.shards[s].write().expect("resident shard");
            for op in ops {
                let pk = op.pk();
                let before = shard.get(pk.as_ref()).map_or(0, Part::live_bytes) as i64;
                let part = match op {
                    Op::Put { pk, ck, stored } => {
                        let part = shard.entry(pk.clone()).or_default();
                        part.put(ck, stored)?;
                        Some(part)
                    }
                    Op::Delete { pk, ck } => match shard.get_mut(pk.as_ref()) {
                        Some(p) => {
                            p.delete(ck);
                            Some(p)
                        }
                        None => None,
                    },
                    Op::DeleteRange { pk, range } => match shard.get_mut(pk.as_ref()) {
                        Some(p) => {
                            p.delete_range(range);
                            Some(p)
                        }
                        None => None,
                    },
                };
                let after = match part {
                    Some(p) => {
                        if !p.dirty {
                            p.dirty = true;
                            dirty.push(pk.clone());
                        }
                        p.live_bytes() as i64
                    }
                    None => 0,
                };
                if shard.get(pk.as_ref()).is_some_and(|p| p.len() == 0) {
                    shard.remove(pk.as_ref());
                }
                delta += after - before;
            }
        }
        *self.live_bytes.lock().expect("live bytes") += delta;
        Ok(())
    }

    /// Inserts a partition loaded from a checkpoint block.
    pub(crate) fn load(&self, pk: Bytes, part: Part) {
        let bytes = part.live_bytes() as i64;
        let mut shard = self.shards[shard_of(&pk)].write().expect("resident shard");
        if let Some(old) = shard.insert(pk, part) {
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

    /// The checkpoint block of `pk`'s partition (`None`: the partition is empty).
    pub(crate) fn block(&self, pk: &[u8]) -> Option<Vec<u8>> {
        self.with_part(pk, Part::encode)
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
        p.delete_range(&CkRange {
            start: Bound::Excluded(10u32.to_be_bytes().to_vec()),
            end: Bound::Included(90u32.to_be_bytes().to_vec()),
        });
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
    fn ops_round_trip() {
        let ops = vec![
            Op::Put {
                pk: Bytes::from_static(b"p"),
                ck: Bytes::from_static(b"c"),
                stored: Bytes::from_static(b"\0v"),
            },
            Op::Delete {
                pk: Bytes::from_static(b""),
                ck: Bytes::from_static(b"x"),
            },
            Op::DeleteRange {
                pk: Bytes::from_static(b"q"),
                range: CkRange {
                    start: Bound::Excluded(b"a".to_vec()),
                    end: Bound::Unbounded,
                },
            },
            Op::DeleteRange {
                pk: Bytes::from_static(b"q"),
                range: CkRange::prefix(b"k"),
            },
        ];
        let record = encode_ops(&ops);
        assert_eq!(decode_ops(&record).unwrap(), ops);
        assert!(decode_ops(&record[..record.len() - 1]).is_err());
        assert!(decode_ops(&[9]).is_err());
        assert!(decode_ops(&[]).unwrap().is_empty());
    }

    #[test]
    fn rows_apply_in_order_and_count_memory() {
        let rows = Rows::new();
        let put = |pk: &'static [u8], ck: &'static [u8]| Op::Put {
            pk: Bytes::from_static(pk),
            ck: Bytes::from_static(ck),
            stored: Bytes::from_static(b"\0v"),
        };
        let mut dirty = Vec::new();
        rows.apply(
            &[
                put(b"a", b"1"),
                put(b"b", b"1"),
                Op::DeleteRange {
                    pk: Bytes::from_static(b"a"),
                    range: CkRange::all(),
                },
                put(b"a", b"2"),
            ],
            &mut dirty,
        )
        .unwrap();
        // "a" emptied by the range delete, then written again: listed twice.
        dirty.sort();
        assert_eq!(
            dirty,
            [&b"a"[..], b"a", b"b"].map(Bytes::from_static).to_vec()
        );
        assert_eq!(rows.count(), 2);
        assert_eq!(rows.with_part(b"a", cks), Some(vec![b"2".to_vec()]));
        assert_eq!(rows.live_bytes(), 2 * (ROW_HEADER as u64 + 3 + 4));
        rows.apply(
            &[Op::Delete {
                pk: Bytes::from_static(b"b"),
                ck: Bytes::from_static(b"1"),
            }],
            &mut dirty,
        )
        .unwrap();
        assert_eq!(dirty.len(), 3, "b was dirty already");
        assert!(rows.checkpoint_block(b"a").is_some());
        assert!(rows.checkpoint_block(b"b").is_none());
        rows.apply(&[put(b"a", b"3")], &mut dirty).unwrap();
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
    }
}
