//! The compact encoding of a batch's lanes ([`WriteBatch::lane_put`](super::WriteBatch::lane_put)):
//! puts, deletes and range deletes of one table, back to back in one buffer, with stored values
//! (the embedded store's flag byte, then the value). A resident table's changelog record is
//! exactly this encoding, so a lane becomes a record without re-encoding; an LSM table decodes it
//! into rows.
//!
//! An op: a tag byte; the partition key (u16 BE length, bytes); then for a put the clustering
//! key (u16 BE length, bytes) and the stored value (u32 BE length, bytes), for a delete the
//! clustering key, for a range delete two bounds (0 unbounded, 1 included, 2 excluded, then a
//! key for the last two). A *shared put* is a put whose clustering key and stored value are
//! those of an earlier put of the same buffer: after the partition key it holds only the
//! distance back to that put's tag (u32 BE). A fan-out writes one item into thousands of
//! feeds, so all but the first of its rows take 23 bytes instead of 59 — in the changelog
//! record, the journal, the fsync and the flush. Decoders resolve it to an ordinary put, so
//! nothing past this module sees the difference; a buffer is only ever decoded whole (offsets
//! into it are kept, never slices of it).
//!
//! Hand-written: a few length-prefixed fields; a serialisation crate would add a dependency and
//! a copy for what fits in fifty lines.

use std::ops::Bound;

use bytes::Bytes;

use super::{CkRange, Mutation, StoreError};

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_RANGE: u8 = 3;
const SHARED_PUT: u8 = 4;

/// The stored value of a row without TTL: the embedded store's flag byte 0, then the value.
pub(crate) const NO_TTL: u8 = 0;

/// One op of an encoded lane, borrowing the buffer. `stored` is the stored value (flag byte,
/// optional expiry, value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpRef<'a> {
    Put {
        pk: &'a [u8],
        ck: &'a [u8],
        stored: &'a [u8],
    },
    Delete {
        pk: &'a [u8],
        ck: &'a [u8],
    },
    DeleteRange {
        pk: &'a [u8],
        start: Bound<&'a [u8]>,
        end: Bound<&'a [u8]>,
    },
}

impl<'a> OpRef<'a> {
    pub(crate) fn pk(&self) -> &'a [u8] {
        match *self {
            OpRef::Put { pk, .. } | OpRef::Delete { pk, .. } | OpRef::DeleteRange { pk, .. } => pk,
        }
    }

    /// The range of a range delete as an owned [`CkRange`].
    pub(crate) fn range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> CkRange {
        CkRange {
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
        }
    }
}

/// The value of a lane row's stored value (lanes carry no TTL).
pub(crate) fn value(stored: &[u8]) -> Result<&[u8], StoreError> {
    match stored.split_first() {
        Some((&NO_TTL, value)) => Ok(value),
        _ => Err(StoreError::Storage(
            "a lane row carries a TTL or no flag".into(),
        )),
    }
}

impl OpRef<'_> {
    /// The op as the mutation of `table` it stands for.
    pub(crate) fn to_mutation(self, table: &'static str) -> Result<Mutation, StoreError> {
        Ok(match self {
            OpRef::Put { pk, ck, stored } => Mutation::Put {
                table,
                pk: Bytes::copy_from_slice(pk),
                ck: Bytes::copy_from_slice(ck),
                value: Bytes::copy_from_slice(value(stored)?),
                ttl: None,
            },
            OpRef::Delete { pk, ck } => Mutation::Delete {
                table,
                pk: Bytes::copy_from_slice(pk),
                ck: Bytes::copy_from_slice(ck),
            },
            OpRef::DeleteRange { pk, start, end } => Mutation::DeleteRange {
                table,
                pk: Bytes::copy_from_slice(pk),
                range: OpRef::range(start, end),
            },
        })
    }
}

/// Keys longer than u16 lengths cannot be encoded; the store refuses them anyway (its limit is
/// lower), so callers check first.
fn key16(out: &mut Vec<u8>, b: &[u8]) {
    debug_assert!(b.len() <= u16::MAX as usize);
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn bound(out: &mut Vec<u8>, b: Bound<&[u8]>) {
    match b {
        Bound::Unbounded => out.push(0),
        Bound::Included(k) => {
            out.push(1);
            key16(out, k);
        }
        Bound::Excluded(k) => {
            out.push(2);
            key16(out, k);
        }
    }
}

/// Appends a put of a stored value made of `flag` (the flag byte and expiry, if any) and `value`.
pub(crate) fn put(out: &mut Vec<u8>, pk: &[u8], ck: &[u8], flag: &[u8], value: &[u8]) {
    out.reserve(9 + pk.len() + ck.len() + flag.len() + value.len());
    out.push(PUT);
    key16(out, pk);
    key16(out, ck);
    out.extend_from_slice(&((flag.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(flag);
    out.extend_from_slice(value);
}

/// Appends a put as [`put`] does, or as a shared put of the put at byte `*last` when that has
/// the same clustering key and stored value; otherwise `*last` becomes this put.
pub(crate) fn put_shared(
    out: &mut Vec<u8>,
    last: &mut Option<usize>,
    pk: &[u8],
    ck: &[u8],
    flag: &[u8],
    value: &[u8],
) {
    if let Some(at) = *last
        && let Ok(OpRef::Put {
            ck: base_ck,
            stored,
            ..
        }) = op_at(out, at)
        && base_ck == ck
        && stored.len() == flag.len() + value.len()
        && stored.starts_with(flag)
        && stored[flag.len()..] == *value
        && let Ok(back) = u32::try_from(out.len() - at)
    {
        out.push(SHARED_PUT);
        key16(out, pk);
        out.extend_from_slice(&back.to_be_bytes());
        return;
    }
    *last = Some(out.len());
    put(out, pk, ck, flag, value);
}

pub(crate) fn delete(out: &mut Vec<u8>, pk: &[u8], ck: &[u8]) {
    out.push(DELETE);
    key16(out, pk);
    key16(out, ck);
}

pub(crate) fn delete_range(out: &mut Vec<u8>, pk: &[u8], range: &CkRange) {
    out.push(DELETE_RANGE);
    key16(out, pk);
    bound(out, range.start.as_ref().map(Vec::as_slice));
    bound(out, range.end.as_ref().map(Vec::as_slice));
}

/// Appends `op` as it is.
pub(crate) fn push(out: &mut Vec<u8>, op: &OpRef<'_>) {
    match *op {
        OpRef::Put { pk, ck, stored } => put(out, pk, ck, &[], stored),
        OpRef::Delete { pk, ck } => delete(out, pk, ck),
        OpRef::DeleteRange { pk, start, end } => {
            out.push(DELETE_RANGE);
            key16(out, pk);
            bound(out, start);
            bound(out, end);
        }
    }
}

fn corrupt() -> StoreError {
    StoreError::Storage("corrupt encoded rows".into())
}

/// Reads ops from byte `at` of a whole buffer (a shared put refers back into it).
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], at: usize) -> Self {
        Self {
            buf,
            at: at.min(buf.len()),
        }
    }

    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(corrupt)?;
        let head = &self.buf[self.at..end];
        self.at = end;
        Ok(head)
    }

    fn len32(&mut self) -> Result<usize, StoreError> {
        let n = self.take(4)?;
        Ok(u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
    }
    fn key16(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.take(2)?;
        let n = u16::from_be_bytes([n[0], n[1]]) as usize;
        self.take(n)
    }
    fn bound(&mut self) -> Result<Bound<&'a [u8]>, StoreError> {
        Ok(match self.take(1)?[0] {
            0 => Bound::Unbounded,
            1 => Bound::Included(self.key16()?),
            2 => Bound::Excluded(self.key16()?),
            _ => return Err(corrupt()),
        })
    }
    /// A put of `pk` whose clustering key and stored value come next.
    fn put_rest(&mut self, pk: &'a [u8]) -> Result<OpRef<'a>, StoreError> {
        let ck = self.key16()?;
        let n = self.len32()?;
        Ok(OpRef::Put {
            pk,
            ck,
            stored: self.take(n)?,
        })
    }

    fn op(&mut self) -> Result<OpRef<'a>, StoreError> {
        let start = self.at;
        Ok(match self.take(1)?[0] {
            PUT => {
                let pk = self.key16()?;
                self.put_rest(pk)?
            }
            SHARED_PUT => {
                let pk = self.key16()?;
                let back = self.len32()?;
                // The put referred to lies wholly before this op, and is a plain put: its
                // clustering key and stored value are this op's.
                let base = start
                    .checked_sub(back)
                    .filter(|_| back > 0)
                    .ok_or_else(corrupt)?;
                let mut r = Reader::new(&self.buf[..start], base);
                if r.take(1)?[0] != PUT {
                    return Err(corrupt());
                }
                r.key16()?;
                r.put_rest(pk)?
            }
            DELETE => OpRef::Delete {
                pk: self.key16()?,
                ck: self.key16()?,
            },
            DELETE_RANGE => OpRef::DeleteRange {
                pk: self.key16()?,
                start: self.bound()?,
                end: self.bound()?,
            },
            _ => return Err(corrupt()),
        })
    }
}

/// The ops of `buf`, in order; an error (and nothing after it) where the buffer is corrupt.
pub(crate) fn ops(buf: &[u8]) -> impl Iterator<Item = Result<OpRef<'_>, StoreError>> + '_ {
    let mut r = Reader::new(buf, 0);
    let mut failed = false;
    std::iter::from_fn(move || {
        if r.done() || failed {
            return None;
        }
        let op = r.op();
        failed = op.is_err();
        Some(op)
    })
}

/// The ops of `buf` from byte `from` on, each with its offset.
pub(crate) fn ops_from(
    buf: &[u8],
    from: usize,
) -> impl Iterator<Item = Result<(usize, OpRef<'_>), StoreError>> + '_ {
    let mut r = Reader::new(buf, from);
    let mut failed = false;
    std::iter::from_fn(move || {
        if r.done() || failed {
            return None;
        }
        let at = r.at;
        let op = r.op();
        failed = op.is_err();
        Some(op.map(|op| (at, op)))
    })
}

/// The op at byte `at` of `buf`.
pub(crate) fn op_at(buf: &[u8], at: usize) -> Result<OpRef<'_>, StoreError> {
    if at > buf.len() {
        return Err(corrupt());
    }
    Reader::new(buf, at).op()
}

/// The ops of `buf` that `keep` accepts, re-encoded, and their count. Corrupt bytes end the
/// walk (they never come from a batch built through [`WriteBatch`](super::WriteBatch)).
pub(crate) fn retain(buf: &[u8], mut keep: impl FnMut(&OpRef<'_>) -> bool) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(buf.len());
    let mut n = 0;
    let mut last = None;
    for op in ops(buf).map_while(Result::ok) {
        if keep(&op) {
            match op {
                // Shared puts stay shared.
                OpRef::Put { pk, ck, stored } => {
                    put_shared(&mut out, &mut last, pk, ck, &[], stored)
                }
                _ => push(&mut out, &op),
            }
            n += 1;
        }
    }
    (out, n)
}

/// Every op of `buf`, or the first error.
#[cfg(test)]
pub(crate) fn decode(buf: &[u8]) -> Result<Vec<OpRef<'_>>, StoreError> {
    ops(buf).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_corruption_is_caught() {
        let mut buf = Vec::new();
        put(&mut buf, b"p", b"c", &[NO_TTL], b"v");
        delete(&mut buf, b"", b"x");
        delete_range(
            &mut buf,
            b"q",
            &CkRange {
                start: Bound::Excluded(b"a".to_vec()),
                end: Bound::Unbounded,
            },
        );
        delete_range(&mut buf, b"q", &CkRange::prefix(b"k"));
        let got = decode(&buf).unwrap();
        assert_eq!(
            got[0],
            OpRef::Put {
                pk: b"p",
                ck: b"c",
                stored: b"\0v"
            }
        );
        assert_eq!(got[1], OpRef::Delete { pk: b"", ck: b"x" });
        assert_eq!(
            got[2],
            OpRef::DeleteRange {
                pk: b"q",
                start: Bound::Excluded(b"a"),
                end: Bound::Unbounded
            }
        );
        assert_eq!(
            got[3],
            OpRef::DeleteRange {
                pk: b"q",
                start: Bound::Included(b"k"),
                end: Bound::Excluded(b"l")
            }
        );
        let mut again = Vec::new();
        for op in &got {
            push(&mut again, op);
        }
        assert_eq!(again, buf);
        assert!(decode(&buf[..buf.len() - 1]).is_err());
        assert!(decode(&[9]).is_err());
        assert!(decode(&[]).unwrap().is_empty());
        assert_eq!(ops(&[9, 9]).count(), 1, "nothing after an error");
    }

    #[test]
    fn shared_puts_decode_as_the_puts_they_stand_for() {
        let (ck, value) = (b"item-0001", b"author+kind");
        let mut buf = Vec::new();
        let mut last = None;
        put_shared(&mut buf, &mut last, b"user-a", ck, &[NO_TTL], value);
        let full = buf.len();
        for pk in [b"user-b", b"user-c"] {
            put_shared(&mut buf, &mut last, pk, ck, &[NO_TTL], value);
        }
        // A delete in between keeps the reference; another value starts a new full put.
        delete(&mut buf, b"user-x", b"old");
        put_shared(&mut buf, &mut last, b"user-d", ck, &[NO_TTL], value);
        put_shared(&mut buf, &mut last, b"user-e", ck, &[NO_TTL], b"other");
        put_shared(&mut buf, &mut last, b"user-f", ck, &[NO_TTL], b"other");
        assert_eq!(buf[full], SHARED_PUT);
        let got = decode(&buf).unwrap();
        let want = |pk: &'static [u8], v: &'static [u8]| (pk, [&[NO_TTL][..], v].concat());
        let expect = [
            want(b"user-a", value),
            want(b"user-b", value),
            want(b"user-c", value),
            want(b"user-d", value),
            want(b"user-e", b"other"),
            want(b"user-f", b"other"),
        ];
        let puts: Vec<(&[u8], Vec<u8>)> = got
            .iter()
            .filter_map(|op| match *op {
                OpRef::Put { pk, ck: c, stored } => {
                    assert_eq!(c, ck);
                    Some((pk, stored.to_vec()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(puts, expect);
        assert_eq!(
            got[3],
            OpRef::Delete {
                pk: b"user-x",
                ck: b"old"
            }
        );
        // Every op decodes alone from its offset too, as the resident store reads them.
        let offsets: Vec<usize> = ops_from(&buf, 0).map(|r| r.unwrap().0).collect();
        for (at, op) in offsets.iter().zip(&got) {
            assert_eq!(op_at(&buf, *at).unwrap(), *op);
            assert_eq!(ops_from(&buf, *at).next().unwrap().unwrap().1, *op);
        }
        // A shared put is a tag, the partition key and four bytes.
        assert_eq!(offsets[2] - offsets[1], 1 + 2 + 6 + 4);
        // Filtering keeps the sharing and the meaning.
        let (kept, n) = retain(&buf, |op| op.pk() != b"user-a");
        assert_eq!(n, got.len() - 1);
        assert_eq!(decode(&kept).unwrap(), got[1..].to_vec());
        assert!(kept.len() < buf.len() - offsets[1] + 40);
    }

    #[test]
    fn broken_shared_puts_are_corrupt() {
        let mut buf = Vec::new();
        let mut last = None;
        delete(&mut buf, b"p", b"c");
        put_shared(&mut buf, &mut last, b"p", b"c", &[NO_TTL], b"v");
        let base = buf.len();
        put_shared(&mut buf, &mut last, b"q", b"c", &[NO_TTL], b"v");
        assert_eq!(decode(&buf).unwrap().len(), 3);
        let with_back = |back: u32| {
            let mut b = buf[..base].to_vec();
            b.push(SHARED_PUT);
            key16(&mut b, b"q");
            b.extend_from_slice(&back.to_be_bytes());
            b
        };
        // Back to the delete (not a put), to nowhere, to itself, past the start.
        let to_delete = with_back(base as u32);
        assert!(decode(&to_delete).is_err());
        assert!(decode(&with_back(0)).is_err());
        assert!(decode(&with_back(u32::MAX)).is_err());
        assert!(decode(&with_back(base as u32 + 1)).is_err());
        assert!(decode(&buf[..buf.len() - 1]).is_err());
    }
}
