//! The byte layout of one record inside the embedded log's LSM keyspace.
//!
//! The LSM engine (fjall) owns files, journaling, checksums and crash recovery; this module only
//! frames a record's fields into one value. Key: partition (u32 BE) ++ offset (u64 BE), so a
//! partition is one contiguous, offset-ordered key range.
//!
//! Value (version 1): `1u8 | timestamp_ms i64 LE | cum_bytes u64 LE | key_len u32 LE | key |
//! header_count u16 LE | (name_len u16 LE | name | value_len u32 LE | value)* | payload`.
//! `cum_bytes` is the partition's running byte total up to and including this record, which makes
//! size-based retention O(1) to evaluate at open.

use bytes::Bytes;

use crate::log::{HeaderName, LogError, Record, StoredRecord, header_name};

const VERSION: u8 = 1;

pub(crate) fn key(partition: u32, offset: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&partition.to_be_bytes());
    k[4..].copy_from_slice(&offset.to_be_bytes());
    k
}

pub(crate) fn decode_key(k: &[u8]) -> Result<(u32, u64), LogError> {
    if k.len() != 12 {
        return Err(corrupt("key length"));
    }
    let p = u32::from_be_bytes(k[..4].try_into().expect("4 bytes"));
    let o = u64::from_be_bytes(k[4..].try_into().expect("8 bytes"));
    Ok((p, o))
}

/// The bytes a record counts for in size-based retention.
pub(crate) fn record_size(r: &Record) -> u64 {
    framed_size(&r.key, &r.value, &r.headers)
}

/// The same count for a record read back (recovery needs the first record's size).
pub(crate) fn stored_size(r: &StoredRecord) -> u64 {
    framed_size(&r.key, &r.value, &r.headers)
}

fn framed_size(key: &[u8], value: &[u8], headers: &[(HeaderName, Bytes)]) -> u64 {
    (key.len()
        + value.len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()) as u64
}

pub(crate) fn encode(r: &Record, cum_bytes: u64) -> Vec<u8> {
    let headers: usize = r.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(1 + 8 + 8 + 4 + r.key.len() + 2 + headers + r.value.len());
    out.push(VERSION);
    out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&cum_bytes.to_le_bytes());
    out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.key);
    out.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
    for (name, value) in &r.headers {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&r.value);
    out
}

/// Just the fields retention needs, without copying the payload.
pub(crate) struct Meta {
    pub timestamp_ms: i64,
    pub cum_bytes: u64,
}

pub(crate) fn decode_meta(v: &[u8]) -> Result<Meta, LogError> {
    let mut c = Cursor { buf: v, pos: 0 };
    if c.u8()? != VERSION {
        return Err(corrupt("version"));
    }
    Ok(Meta {
        timestamp_ms: c.i64()?,
        cum_bytes: c.u64()?,
    })
}

/// Decodes a stored value without copying it: the record's key, header values and payload are
/// views into `v` (one shared buffer per record instead of a copy per field).
pub(crate) fn decode(partition: u32, offset: u64, v: Bytes) -> Result<StoredRecord, LogError> {
    let mut c = Cursor { buf: &v, pos: 0 };
    if c.u8()? != VERSION {
        return Err(corrupt("version"));
    }
    let timestamp_ms = c.i64()?;
    let _cum = c.u64()?;
    let key_len = c.u32()? as usize;
    let key = c.span(key_len)?;
    let n = c.u16()?;
    let mut headers = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name_len = c.u16()? as usize;
        let name = header_name(
            std::str::from_utf8(c.take(name_len)?).map_err(|_| corrupt("header name"))?,
        );
        let value_len = c.u32()? as usize;
        headers.push((name, v.slice(c.span(value_len)?)));
    }
    let payload = c.pos..v.len();
    Ok(StoredRecord {
        partition,
        offset,
        key: v.slice(key),
        value: v.slice(payload),
        timestamp_ms,
        headers,
    })
}

fn corrupt(what: &str) -> LogError {
    LogError::Storage(format!("corrupt record ({what})"))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        let end = self.pos.checked_add(n).ok_or_else(|| corrupt("length"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| corrupt("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    /// Skips `n` bytes, answering where they are.
    fn span(&mut self, n: usize) -> Result<std::ops::Range<usize>, LogError> {
        let start = self.pos;
        self.take(n)?;
        Ok(start..self.pos)
    }
    fn u8(&mut self) -> Result<u8, LogError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, LogError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, LogError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, LogError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, LogError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_with_headers() {
        let r = Record::new(&b"k"[..], &b"payload"[..], 42)
            .with_header("content-type", &b"application/json"[..])
            .with_header("schema-version", &b"1"[..]);
        let v = encode(&r, 99);
        let back = decode(3, 7, Bytes::from(v.clone())).unwrap();
        assert_eq!(back.key, r.key);
        assert_eq!(back.value, r.value);
        assert_eq!(back.headers, r.headers);
        assert_eq!((back.partition, back.offset, back.timestamp_ms), (3, 7, 42));
        assert_eq!(decode_meta(&v).unwrap().cum_bytes, 99);
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let v = encode(
            &Record::new(&b"key"[..], &b"v"[..], 1).with_header("h", &b"x"[..]),
            1,
        );
        for cut in 0..v.len() - 1 {
            // The payload is the unframed tail, so only cuts inside the framed prefix must fail.
            let _ = decode(0, 0, Bytes::copy_from_slice(&v[..cut]));
        }
        assert!(decode(0, 0, Bytes::copy_from_slice(&v[..5])).is_err());
        assert!(decode(0, 0, Bytes::new()).is_err());
    }
}
