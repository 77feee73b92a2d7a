//! Key and value encodings of the social views (hand-written: fixed-width binary keys so that
//! rows sort the way reads need them; no serialisation library orders bytes this way).
//!
//! Ids are the 16 raw bytes of their UUID. Action and entity ids are UUIDv7, so byte order is
//! creation-time order; a clustering key made of the id's bitwise complement (`desc`) sorts the
//! newest first.

use bytes::Bytes;
use uuid::Uuid;

/// The id's bytes.
pub fn id(u: &Uuid) -> Bytes {
    Bytes::copy_from_slice(u.as_bytes())
}

/// The id's bytes complemented: ascending order of these is newest-first order of the ids.
pub fn desc(u: &Uuid) -> [u8; 16] {
    let mut b = *u.as_bytes();
    for x in &mut b {
        *x = !*x;
    }
    b
}

/// Inverse of [`desc`].
pub fn undesc(b: &[u8]) -> Option<Uuid> {
    let mut a: [u8; 16] = b.get(..16)?.try_into().ok()?;
    for x in &mut a {
        *x = !*x;
    }
    Some(Uuid::from_bytes(a))
}

/// A UUID from the first 16 bytes of `b`.
pub fn uuid_at(b: &[u8], at: usize) -> Option<Uuid> {
    Some(Uuid::from_bytes(b.get(at..at + 16)?.try_into().ok()?))
}

/// `desc(first) ++ second`: newest-first rows that are unique per `second`.
pub fn desc_then(first: &Uuid, second: &Uuid) -> Bytes {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(&desc(first));
    k.extend_from_slice(second.as_bytes());
    Bytes::from(k)
}

/// `a ++ b`.
pub fn pair(a: &Uuid, b: &Uuid) -> Bytes {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(a.as_bytes());
    k.extend_from_slice(b.as_bytes());
    Bytes::from(k)
}

pub fn i64_value(v: i64) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

pub fn decode_i64(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_be_bytes).unwrap_or(0)
}
