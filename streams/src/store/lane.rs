//! The compact encoding of a batch's lanes ([`WriteBatch::lane_put`](super::WriteBatch::lane_put)):
//! puts, deletes and range deletes of one table, back to back in one buffer, with stored values
//! (the embedded store's flag byte, then the value). A resident table's changelog record is
//! exactly this encoding, so a lane becomes a record without re-encoding; an LSM table decodes it
//! into rows.
//!
//! An op: a tag byte; the partition key (u16 BE length, bytes); then for a put the clustering
//! key (u16 BE length, bytes) and the stored value (u32 BE length, bytes), for a delete the
//! clustering key, for a range delete two bounds (0 unbounded, 1 included, 2 excluded, then a
//! key for the last two).
//!
//! Hand-written: a few length-prefixed fields; a serialisation crate would add a dependency and
//! a copy for what fits in fifty lines.

use std::ops::Bound;

use bytes::Bytes;

use super::{CkRange, Mutation, StoreError};

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_RANGE: u8 = 3;

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

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
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
    fn op(&mut self) -> Result<OpRef<'a>, StoreError> {
        Ok(match self.take(1)?[0] {
            PUT => {
                let pk = self.key16()?;
                let ck = self.key16()?;
                let n = self.take(4)?;
                let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
                OpRef::Put {
                    pk,
                    ck,
                    stored: self.take(n)?,
                }
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
    let mut r = Reader(buf);
    let mut failed = false;
    std::iter::from_fn(move || {
        if r.0.is_empty() || failed {
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
    let mut r = Reader(&buf[from.min(buf.len())..]);
    let mut failed = false;
    std::iter::from_fn(move || {
        if r.0.is_empty() || failed {
            return None;
        }
        let at = buf.len() - r.0.len();
        let op = r.op();
        failed = op.is_err();
        Some(op.map(|op| (at, op)))
    })
}

/// The op at byte `at` of `buf`.
pub(crate) fn op_at(buf: &[u8], at: usize) -> Result<OpRef<'_>, StoreError> {
    Reader(buf.get(at..).ok_or_else(corrupt)?).op()
}

/// The ops of `buf` that `keep` accepts, re-encoded, and their count. Corrupt bytes end the
/// walk (they never come from a batch built through [`WriteBatch`](super::WriteBatch)).
pub(crate) fn retain(buf: &[u8], mut keep: impl FnMut(&OpRef<'_>) -> bool) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(buf.len());
    let mut n = 0;
    for op in ops(buf).map_while(Result::ok) {
        if keep(&op) {
            push(&mut out, &op);
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
}
