//! The contract every [`StateStore`] backend must pass, as plain functions plus
//! [`state_store_contract_suite!`](crate::state_store_contract_suite) to stamp them out as tests.
//!
//! Each check works in its own uniquely named tables, so backends shared between tests (a
//! ScyllaDB cluster) can run them side by side. [`Mutation`](super::Mutation) takes
//! `&'static str` table names, so those names are leaked: a few bytes per check.
//!
//! Checks about time to live take, besides the store, an `advance` function that moves the
//! store's TTL clock forward by at least the given duration: a backend with an injectable clock
//! moves it (see [`ManualClock`]); one on a real clock sleeps.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{CkRange, Order, Row, StateStore, StoreError, WriteBatch};

/// A clock tests move by hand, for backends that take an injected clock (unix milliseconds).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(start_ms)))
    }

    /// The time now, in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward (rounded up to whole milliseconds).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// The clock as the function a backend's configuration takes.
    pub fn as_fn(&self) -> Arc<dyn Fn() -> i64 + Send + Sync> {
        let clock = self.clone();
        Arc::new(move || clock.now_ms())
    }
}

/// A unique table name starting with `name` (at most 31 characters).
fn table(name: &str) -> &'static str {
    let t = format!("{name}_{}", uuid::Uuid::new_v4().simple());
    Box::leak(t.into_boxed_str())
}

fn apply(store: &dyn StateStore, f: impl FnOnce(&mut WriteBatch)) {
    let mut batch = WriteBatch::new();
    f(&mut batch);
    store.apply(batch).unwrap();
}

fn get(store: &dyn StateStore, t: &str, pk: &[u8], ck: &[u8]) -> Option<Bytes> {
    store.get(t, pk, ck).unwrap()
}

fn cks(store: &dyn StateStore, t: &str, pk: &[u8], range: CkRange, order: Order) -> Vec<Vec<u8>> {
    scan_cks(store, t, pk, range, order, usize::MAX)
}

fn scan_cks(
    store: &dyn StateStore,
    t: &str,
    pk: &[u8],
    range: CkRange,
    order: Order,
    limit: usize,
) -> Vec<Vec<u8>> {
    let rows = store.scan(t, pk, &range, order, limit).unwrap();
    rows.into_iter().map(|r| r.ck.to_vec()).collect()
}

/// Every row of table `t` as `(pk, ck, value)`, in key order.
pub fn all_rows(store: &dyn StateStore, t: &str) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .for_each(t, &mut |pk, ck, v| {
            out.push((pk.to_vec(), ck.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    out
}

fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|i| i.to_vec()).collect()
}

fn be(i: u32) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

/// Puts, overwrites and deletes rows; reads of unknown tables and rows are empty; empty keys
/// and values and arbitrary bytes are fine.
pub fn put_get_delete(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let t = table("basic");
    assert_eq!(get(s, t, b"p", b"c"), None, "unknown table reads empty");
    assert!(
        s.scan(t, b"p", &CkRange::all(), Order::Asc, 10)
            .unwrap()
            .is_empty()
    );
    apply(s, |b| b.put(t, &b"p"[..], &b"c"[..], &b"v1"[..]));
    assert_eq!(get(s, t, b"p", b"c"), Some(Bytes::from_static(b"v1")));
    assert_eq!(get(s, t, b"p", b"d"), None);
    apply(s, |b| b.put(t, &b"p"[..], &b"c"[..], &b"v2"[..]));
    assert_eq!(get(s, t, b"p", b"c"), Some(Bytes::from_static(b"v2")));
    apply(s, |b| b.delete(t, &b"p"[..], &b"c"[..]));
    assert_eq!(get(s, t, b"p", b"c"), None);
    apply(s, |b| b.delete(t, &b"p"[..], &b"never"[..]));
    apply(s, |b| {
        b.put(t, Bytes::new(), Bytes::new(), Bytes::new());
        b.put(t, &b"\0\xff"[..], &b"\xff\0"[..], &b"\0"[..]);
    });
    assert_eq!(get(s, t, b"", b""), Some(Bytes::new()));
    assert_eq!(
        get(s, t, b"\0\xff", b"\xff\0"),
        Some(Bytes::from_static(b"\0"))
    );
    s.apply(WriteBatch::new()).expect("an empty batch is fine");
}

/// Partitions never mix, even when one key's bytes are a prefix of another's, and tables are
/// separate.
pub fn partitions_are_isolated(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let (t, u) = (table("iso"), table("iso_other"));
    apply(s, |b| {
        b.put(t, &b"a"[..], &b"b"[..], &b"a/b"[..]);
        b.put(t, &b"ab"[..], &b""[..], &b"ab/"[..]);
        b.put(t, &b"\x01"[..], &b"\0\x02"[..], &b"1/02"[..]);
        b.put(t, &b"\x01\0"[..], &b"\x02"[..], &b"10/2"[..]);
        b.put(t, &b"a"[..], &b"\xff\xff"[..], &b"a/ffff"[..]);
        b.put(t, &b"b"[..], &b""[..], &b"b/"[..]);
        b.put(u, &b"a"[..], &b"b"[..], &b"other"[..]);
    });
    assert_eq!(get(s, t, b"a", b"b"), Some(Bytes::from_static(b"a/b")));
    assert_eq!(get(s, t, b"ab", b""), Some(Bytes::from_static(b"ab/")));
    assert_eq!(get(s, t, b"a", b""), None);
    assert_eq!(get(s, t, b"ab", b"b"), None);
    assert_eq!(get(s, t, b"\x01", b"\x02"), None);
    assert_eq!(
        get(s, t, b"\x01\0", b"\x02"),
        Some(Bytes::from_static(b"10/2"))
    );
    assert_eq!(get(s, u, b"a", b"b"), Some(Bytes::from_static(b"other")));
    let all = CkRange::all;
    assert_eq!(cks(s, t, b"a", all(), Order::Asc), v(&[b"b", b"\xff\xff"]));
    assert_eq!(cks(s, t, b"a", all(), Order::Desc), v(&[b"\xff\xff", b"b"]));
    assert_eq!(cks(s, t, b"ab", all(), Order::Asc), v(&[b""]));
    assert_eq!(cks(s, t, b"\x01", all(), Order::Asc), v(&[b"\0\x02"]));
    assert_eq!(cks(s, t, b"\x01\0", all(), Order::Desc), v(&[b"\x02"]));
    assert!(cks(s, t, b"", all(), Order::Asc).is_empty());
    assert_eq!(cks(s, u, b"a", all(), Order::Asc), v(&[b"b"]));
}

/// Scans return clustering-key order or its reverse, honour the limit, and carry values.
pub fn scan_order_and_limit(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let t = table("order");
    // Inserted out of order, over two batches.
    apply(s, |b| {
        for i in (0..50u32).filter(|i| i % 2 == 1) {
            b.put(t, &b"p"[..], be(i), format!("v{i}"));
        }
    });
    apply(s, |b| {
        for i in (0..50u32).rev().filter(|i| i % 2 == 0) {
            b.put(t, &b"p"[..], be(i), format!("v{i}"));
        }
    });
    let asc: Vec<Vec<u8>> = (0..50).map(be).collect();
    let desc: Vec<Vec<u8>> = (0..50).rev().map(be).collect();
    assert_eq!(cks(s, t, b"p", CkRange::all(), Order::Asc), asc);
    assert_eq!(cks(s, t, b"p", CkRange::all(), Order::Desc), desc);
    let rows = s.scan(t, b"p", &CkRange::all(), Order::Asc, 7).unwrap();
    let expected: Vec<Row> = (0..7)
        .map(|i| Row {
            ck: be(i).into(),
            value: format!("v{i}").into(),
        })
        .collect();
    assert_eq!(rows, expected);
    let limited = scan_cks(s, t, b"p", CkRange::all(), Order::Desc, 7);
    assert_eq!(limited, desc[..7]);
    assert!(scan_cks(s, t, b"p", CkRange::all(), Order::Asc, 0).is_empty());
    assert_eq!(
        scan_cks(s, t, b"p", CkRange::all(), Order::Asc, 1000).len(),
        50
    );
    assert!(cks(s, t, b"empty", CkRange::all(), Order::Desc).is_empty());
}

/// Range bounds: all, prefix (including a prefix of 0xff bytes with no successor), after,
/// before, inclusive and exclusive ends in both orders, empty and inverted ranges.
pub fn scan_bounds(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let t = table("bounds");
    let keys: [&[u8]; 9] = [
        b"",
        b"a",
        b"ab",
        b"abc",
        b"ac",
        b"b",
        b"\xff",
        b"\xff\xff",
        b"\xff\xff\0",
    ];
    apply(s, |b| {
        for k in keys.iter().rev() {
            b.put(t, &b"p"[..], k.to_vec(), &b"x"[..]);
        }
        // The partitions around `p`, whose rows must never show up.
        b.put(t, &b"o"[..], &b"\xff"[..], &b"x"[..]);
        b.put(t, &b"q"[..], &b""[..], &b"x"[..]);
        b.put(t, &b"p\0"[..], &b""[..], &b"x"[..]);
    });
    let asc = |r: CkRange| cks(s, t, b"p", r, Order::Asc);
    let desc = |r: CkRange| cks(s, t, b"p", r, Order::Desc);
    let range = |start, end| CkRange { start, end };
    let inc = |k: &[u8]| Bound::Included(k.to_vec());
    let exc = |k: &[u8]| Bound::Excluded(k.to_vec());
    assert_eq!(asc(CkRange::all()), v(&keys));
    assert_eq!(asc(CkRange::prefix(b"")), v(&keys));
    assert_eq!(asc(CkRange::prefix(b"a")), v(&[b"a", b"ab", b"abc", b"ac"]));
    assert_eq!(desc(CkRange::prefix(b"ab")), v(&[b"abc", b"ab"]));
    assert_eq!(
        asc(CkRange::prefix(b"\xff")),
        v(&[b"\xff", b"\xff\xff", b"\xff\xff\0"])
    );
    assert_eq!(
        desc(CkRange::prefix(b"\xff\xff")),
        v(&[b"\xff\xff\0", b"\xff\xff"])
    );
    assert!(asc(CkRange::prefix(b"zz")).is_empty());
    assert_eq!(
        asc(CkRange::after(b"ab")),
        v(&[b"abc", b"ac", b"b", b"\xff", b"\xff\xff", b"\xff\xff\0"])
    );
    assert_eq!(
        scan_cks(s, t, b"p", CkRange::after(b"ab"), Order::Desc, 2),
        v(&[b"\xff\xff\0", b"\xff\xff"])
    );
    assert_eq!(asc(CkRange::before(b"ab")), v(&[b"", b"a"]));
    assert_eq!(desc(CkRange::before(b"ab")), v(&[b"a", b""]));
    assert!(asc(CkRange::before(b"")).is_empty());
    assert!(asc(CkRange::after(b"\xff\xff\0")).is_empty());
    assert_eq!(
        asc(range(inc(b"a"), inc(b"ac"))),
        v(&[b"a", b"ab", b"abc", b"ac"])
    );
    assert_eq!(asc(range(exc(b"a"), exc(b"ac"))), v(&[b"ab", b"abc"]));
    assert_eq!(asc(range(inc(b"a"), exc(b"ac"))), v(&[b"a", b"ab", b"abc"]));
    assert_eq!(
        desc(range(exc(b"a"), inc(b"ac"))),
        v(&[b"ac", b"abc", b"ab"])
    );
    assert_eq!(asc(range(inc(b"aa"), inc(b"ab"))), v(&[b"ab"]));
    assert_eq!(asc(range(inc(b"b"), inc(b"b"))), v(&[b"b"]));
    assert!(asc(range(exc(b"b"), inc(b"b"))).is_empty());
    assert!(asc(range(inc(b"b"), exc(b"b"))).is_empty());
    assert!(
        desc(range(inc(b"c"), inc(b"a"))).is_empty(),
        "inverted range"
    );
    assert!(asc(range(Bound::Unbounded, exc(b""))).is_empty());
}

/// `delete_range` removes exactly the rows of one partition in range, including rows written
/// earlier in the same batch and not those written after it.
pub fn delete_range(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let (t, u) = (table("delrange"), table("delrange_other"));
    apply(s, |b| {
        for i in 0..20 {
            b.put(t, &b"p"[..], be(i), &b"x"[..]);
            b.put(t, &b"p2"[..], be(i), &b"x"[..]);
            b.put(u, &b"p"[..], be(i), &b"x"[..]);
        }
    });
    let range = CkRange {
        start: Bound::Included(be(5)),
        end: Bound::Excluded(be(10)),
    };
    apply(s, |b| b.delete_range(t, &b"p"[..], range));
    let left: Vec<Vec<u8>> = (0..5).chain(10..20).map(be).collect();
    assert_eq!(cks(s, t, b"p", CkRange::all(), Order::Asc), left);
    assert_eq!(cks(s, t, b"p2", CkRange::all(), Order::Asc).len(), 20);
    assert_eq!(cks(s, u, b"p", CkRange::all(), Order::Asc).len(), 20);
    assert_eq!(get(s, t, b"p", &be(7)), None);

    // In one batch: a put before the range delete goes, a put after it stays.
    apply(s, |b| {
        b.put(t, &b"p"[..], be(7), &b"before"[..]);
        b.put(t, &b"p"[..], be(100), &b"before"[..]);
        b.delete_range(t, &b"p"[..], CkRange::after(&be(15)));
        b.put(t, &b"p"[..], be(18), &b"after"[..]);
    });
    let left: Vec<Vec<u8>> = (0..5)
        .chain([7])
        .chain(10..16)
        .chain([18])
        .map(be)
        .collect();
    assert_eq!(cks(s, t, b"p", CkRange::all(), Order::Asc), left);
    assert_eq!(get(s, t, b"p", &be(18)), Some(Bytes::from_static(b"after")));

    apply(s, |b| b.delete_range(t, &b"p2"[..], CkRange::all()));
    assert!(cks(s, t, b"p2", CkRange::all(), Order::Asc).is_empty());
    assert_eq!(cks(s, t, b"p", CkRange::all(), Order::Asc), left);
    let never = table("delrange_never");
    apply(s, |b| {
        b.delete_range(never, &b"p"[..], CkRange::all());
        b.delete_range(t, &b"p"[..], CkRange::prefix(b"nothing"));
    });
    assert_eq!(cks(s, t, b"p", CkRange::all(), Order::Asc), left);
}

/// Every write of a batch is visible once `apply` returns; within a batch the last write to a
/// key wins; a batch refused for one bad mutation leaves nothing behind.
pub fn batches_apply_whole(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let (t, u) = (table("batch"), table("batch_other"));
    apply(s, |b| b.put(t, &b"p"[..], &b"old"[..], &b"x"[..]));
    apply(s, |b| {
        b.put(t, &b"p"[..], &b"a"[..], &b"1"[..]);
        b.put(u, &b"p"[..], &b"a"[..], &b"2"[..]);
        b.put(t, &b"p"[..], &b"put_then_delete"[..], &b"x"[..]);
        b.delete(t, &b"p"[..], &b"put_then_delete"[..]);
        b.delete(t, &b"p"[..], &b"delete_then_put"[..]);
        b.put(t, &b"p"[..], &b"delete_then_put"[..], &b"y"[..]);
        b.put(t, &b"p"[..], &b"twice"[..], &b"first"[..]);
        b.put(t, &b"p"[..], &b"twice"[..], &b"second"[..]);
        b.delete(t, &b"p"[..], &b"old"[..]);
    });
    assert_eq!(get(s, t, b"p", b"a"), Some(Bytes::from_static(b"1")));
    assert_eq!(get(s, u, b"p", b"a"), Some(Bytes::from_static(b"2")));
    assert_eq!(get(s, t, b"p", b"put_then_delete"), None);
    assert_eq!(
        get(s, t, b"p", b"delete_then_put"),
        Some(Bytes::from_static(b"y"))
    );
    assert_eq!(
        get(s, t, b"p", b"twice"),
        Some(Bytes::from_static(b"second"))
    );
    assert_eq!(get(s, t, b"p", b"old"), None);
    assert_eq!(
        cks(s, t, b"p", CkRange::all(), Order::Asc),
        v(&[b"a", b"delete_then_put", b"twice"])
    );

    let mut bad = WriteBatch::new();
    bad.put(t, &b"p"[..], &b"refused"[..], &b"x"[..]);
    bad.put("Not-A-Table", &b"p"[..], &b"c"[..], &b"x"[..]);
    assert!(matches!(s.apply(bad), Err(StoreError::InvalidTable(_))));
    let mut bad = WriteBatch::new();
    bad.put(t, &b"p"[..], &b"refused"[..], &b"x"[..]);
    bad.put(t, vec![0u8; 70_000], &b"c"[..], &b"x"[..]);
    assert!(matches!(s.apply(bad), Err(StoreError::KeyTooLong(_))));
    assert_eq!(
        get(s, t, b"p", b"refused"),
        None,
        "a refused batch writes nothing"
    );
}

/// A reader never sees part of a batch: while batches rewrite every row of a partition, each
/// scan sees all rows with one value.
pub fn readers_never_see_half_a_batch(store: Arc<dyn StateStore>) {
    let t = table("atomic");
    let rows = 16u32;
    let write = move |s: &dyn StateStore, round: u32| {
        apply(s, |b| {
            for i in 0..rows {
                b.put(t, &b"p"[..], be(i), be(round));
            }
        })
    };
    write(store.as_ref(), 0);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            for round in 1..=300 {
                write(store.as_ref(), round);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut scans = 0;
    while !done.load(Ordering::SeqCst) || scans < 10 {
        let got = store
            .scan(t, b"p", &CkRange::all(), Order::Asc, usize::MAX)
            .unwrap();
        assert_eq!(got.len(), rows as usize);
        assert!(
            got.iter().all(|r| r.value == got[0].value),
            "scan saw a batch half applied"
        );
        scans += 1;
    }
    writer.join().unwrap();
    assert_eq!(get(store.as_ref(), t, b"p", &be(3)), Some(be(300).into()));
}

/// `truncate` empties its table and only it; the table stays usable.
pub fn truncate_only_its_table(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let (t, u) = (table("trunc"), table("trunc_other"));
    apply(s, |b| {
        for i in 0..100 {
            b.put(t, format!("p{}", i % 7), be(i), &b"x"[..]);
            b.put(u, format!("p{}", i % 7), be(i), &b"x"[..]);
        }
    });
    s.truncate(t).unwrap();
    assert!(all_rows(s, t).is_empty());
    assert_eq!(get(s, t, b"p1", &be(1)), None);
    assert!(cks(s, t, b"p1", CkRange::all(), Order::Asc).is_empty());
    assert_eq!(all_rows(s, u).len(), 100);
    s.truncate(table("trunc_never")).unwrap();
    apply(s, |b| b.put(t, &b"p"[..], &b"c"[..], &b"again"[..]));
    assert_eq!(get(s, t, b"p", b"c"), Some(Bytes::from_static(b"again")));
}

/// `for_each` visits every live row once with its value, a partition's rows together and in
/// clustering-key order (the order of partitions is the backend's), and stops when asked.
pub fn for_each_visits_every_row(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let t = table("foreach");
    let pks: [&[u8]; 5] = [b"a", b"ab", b"b", b"\0", &[9u8; 200]];
    apply(s, |b| {
        for pk in pks {
            for ck in [&b"z"[..], b"", b"m", b"\xff"] {
                let value = [pk, &b"/"[..], ck].concat();
                b.put(t, pk.to_vec(), ck.to_vec(), value);
            }
        }
        b.put(t, &b"gone"[..], &b""[..], &b"x"[..]);
        b.delete(t, &b"gone"[..], &b""[..]);
    });
    let rows = all_rows(s, t);
    assert_eq!(rows.len(), 20);
    let mut seen: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    let mut order: Vec<Vec<u8>> = Vec::new();
    for (pk, ck, value) in &rows {
        assert_eq!(value, &[&pk[..], &b"/"[..], &ck[..]].concat());
        if order.last() != Some(pk) {
            assert!(!order.contains(pk), "partition {pk:?} visited in two runs");
            order.push(pk.clone());
        }
        seen.entry(pk.clone()).or_default().push(ck.clone());
    }
    assert_eq!(seen.len(), 5);
    for pk in pks {
        assert_eq!(seen[pk], v(&[b"", b"m", b"z", b"\xff"]));
    }
    let mut visited = 0;
    s.for_each(t, &mut |_, _, _| {
        visited += 1;
        visited < 3
    })
    .unwrap();
    assert_eq!(visited, 3, "for_each stops when the visitor returns false");
    s.for_each(table("foreach_never"), &mut |_, _, _| panic!("empty table"))
        .unwrap();
}

/// Writes through a batch's lanes (the compact encoding) leave exactly the rows the same
/// writes as mutations leave, mixed with mutations in one batch and across batches.
pub fn lanes_equal_mutations(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let (lanes, muts) = (table("lanes"), table("lanes_ref"));
    let mut x = 7u32;
    let mut next = move |n: u32| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (x >> 8) % n
    };
    for round in 0..30 {
        // `b` gets the lane ops' equivalents; `front` the equivalents of `a`'s own mutations,
        // which apply before `a`'s lanes.
        let (mut a, mut b, mut front) = (WriteBatch::new(), WriteBatch::new(), WriteBatch::new());
        for _ in 0..next(40) + 1 {
            let pk = format!("p{}", next(5));
            let ck = be(next(60));
            match next(10) {
                0..6 => {
                    let v = be(round * 1000 + next(1000));
                    a.lane_put(lanes, pk.as_bytes(), &ck, &v);
                    b.put(muts, pk.clone(), ck, v);
                }
                6..8 => {
                    a.lane_delete(lanes, pk.as_bytes(), &ck);
                    b.delete(muts, pk.clone(), ck);
                }
                8 => {
                    let range = CkRange {
                        start: Bound::Included(ck.clone()),
                        end: Bound::Excluded(be(next(60) + 5)),
                    };
                    a.lane_delete_range(lanes, pk.as_bytes(), &range);
                    b.delete_range(muts, pk.clone(), range);
                }
                _ => {
                    // A mutation of the lane table in the same batch applies before its lane.
                    let v = be(next(1000));
                    a.put(lanes, pk.clone(), ck.clone(), v.clone());
                    front.put(muts, pk, ck, v);
                }
            }
        }
        front.mutations.append(&mut b.mutations);
        assert_eq!(a.len(), front.len());
        s.apply(a).unwrap();
        s.apply(front).unwrap();
        assert_eq!(all_rows(s, lanes), all_rows(s, muts), "round {round}");
    }
    assert!(!all_rows(s, lanes).is_empty());
    for pk in ["p1", "p3"] {
        for order in [Order::Asc, Order::Desc] {
            assert_eq!(
                s.scan(lanes, pk.as_bytes(), &CkRange::after(&be(20)), order, 5)
                    .unwrap(),
                s.scan(muts, pk.as_bytes(), &CkRange::after(&be(20)), order, 5)
                    .unwrap()
            );
        }
    }
}

/// A batch of 100 000 puts applies whole.
pub fn large_batch(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let t = table("large");
    apply(s, |b| {
        for i in 0..100_000u32 {
            b.put(t, format!("p{}", i % 100), be(i), i.to_le_bytes().to_vec());
        }
    });
    let mut n = 0;
    s.for_each(t, &mut |_, _, _| {
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 100_000);
    assert_eq!(
        get(s, t, b"p42", &be(99_942)),
        Some(99_942u32.to_le_bytes().to_vec().into())
    );
    let partition = cks(s, t, b"p7", CkRange::all(), Order::Asc);
    assert_eq!(
        partition,
        (0..1000).map(|i| be(i * 100 + 7)).collect::<Vec<_>>()
    );
}

/// Table names must be 1-64 characters of `[a-z0-9_]`; every operation refuses others.
/// Partition keys over 65535 bytes are refused.
pub fn invalid_names_and_keys_are_refused(store: Arc<dyn StateStore>) {
    let s = store.as_ref();
    let too_long: &'static str = Box::leak("a".repeat(65).into_boxed_str());
    for bad in ["", "Feed", "feed-x", "feed.x", "fé", "feed x", too_long] {
        let refused = |r: Result<(), StoreError>| {
            assert!(
                matches!(r, Err(StoreError::InvalidTable(ref n)) if n == bad),
                "table `{bad}`: {r:?}"
            )
        };
        refused(s.get(bad, b"p", b"c").map(drop));
        refused(s.scan(bad, b"p", &CkRange::all(), Order::Asc, 1).map(drop));
        refused(s.truncate(bad));
        refused(s.for_each(bad, &mut |_, _, _| true));
        let mut b = WriteBatch::new();
        b.put(bad, &b"p"[..], &b"c"[..], &b"v"[..]);
        refused(s.apply(b));
        let mut b = WriteBatch::new();
        b.delete(bad, &b"p"[..], &b"c"[..]);
        refused(s.apply(b));
        let mut b = WriteBatch::new();
        b.delete_range(bad, &b"p"[..], CkRange::all());
        refused(s.apply(b));
    }
    let longest = table(&"l".repeat(31));
    assert_eq!(longest.len(), 64);
    apply(s, |b| b.put(longest, &b"p"[..], &b"c"[..], &b"v"[..]));
    assert_eq!(get(s, longest, b"p", b"c"), Some(Bytes::from_static(b"v")));

    let mut b = WriteBatch::new();
    b.put(longest, vec![1u8; 65_536], &b"c"[..], &b"v"[..]);
    assert!(matches!(s.apply(b), Err(StoreError::KeyTooLong(_))));
}

/// Rows with a TTL disappear from every read once it has passed; rows without stay; a put
/// replaces a row's TTL along with its value.
pub fn ttl_rows_expire(store: Arc<dyn StateStore>, advance: &dyn Fn(Duration)) {
    let s = store.as_ref();
    let t = table("ttl");
    let secs = Duration::from_secs;
    apply(s, |b| {
        b.put_with_ttl(t, &b"p"[..], &b"a"[..], &b"short"[..], secs(10));
        b.put(t, &b"p"[..], &b"b"[..], &b"forever"[..]);
        b.put_with_ttl(t, &b"p"[..], &b"c"[..], &b"long"[..], secs(60));
    });
    let live = |expected: &[&[u8]]| {
        assert_eq!(cks(s, t, b"p", CkRange::all(), Order::Asc), v(expected));
        assert_eq!(
            cks(s, t, b"p", CkRange::all(), Order::Desc).len(),
            expected.len()
        );
        let visited: Vec<Vec<u8>> = all_rows(s, t).into_iter().map(|r| r.1).collect();
        assert_eq!(visited, v(expected));
    };
    advance(secs(5));
    live(&[b"a", b"b", b"c"]);
    assert_eq!(get(s, t, b"p", b"a"), Some(Bytes::from_static(b"short")));
    advance(secs(6));
    assert_eq!(get(s, t, b"p", b"a"), None);
    live(&[b"b", b"c"]);
    apply(s, |b| {
        b.put(t, &b"p"[..], &b"a"[..], &b"back"[..]);
        b.put_with_ttl(t, &b"p"[..], &b"b"[..], &b"now_short"[..], secs(1));
    });
    live(&[b"a", b"b", b"c"]);
    advance(secs(60));
    live(&[b"a"]);
    assert_eq!(get(s, t, b"p", b"a"), Some(Bytes::from_static(b"back")));
    assert_eq!(get(s, t, b"p", b"b"), None);
    apply(s, |b| b.delete(t, &b"p"[..], &b"c"[..]));
    live(&[b"a"]);
}

/// A scan with a limit returns `limit` live rows even when expired rows lie between them, in
/// both orders.
pub fn ttl_scan_limit_skips_expired(store: Arc<dyn StateStore>, advance: &dyn Fn(Duration)) {
    let s = store.as_ref();
    let t = table("ttl_limit");
    apply(s, |b| {
        for i in 0..40u32 {
            if i % 2 == 0 {
                b.put_with_ttl(t, &b"p"[..], be(i), &b"x"[..], Duration::from_secs(1));
            } else {
                b.put(t, &b"p"[..], be(i), &b"x"[..]);
            }
        }
    });
    advance(Duration::from_secs(2));
    let asc: Vec<Vec<u8>> = (0..40).filter(|i| i % 2 == 1).map(be).collect();
    let desc: Vec<Vec<u8>> = asc.iter().rev().cloned().collect();
    let p = b"p";
    assert_eq!(scan_cks(s, t, p, CkRange::all(), Order::Asc, 5), asc[..5]);
    assert_eq!(scan_cks(s, t, p, CkRange::all(), Order::Desc, 5), desc[..5]);
    assert_eq!(
        scan_cks(s, t, p, CkRange::after(&be(10)), Order::Asc, 3),
        asc[5..8]
    );
    assert_eq!(scan_cks(s, t, p, CkRange::all(), Order::Asc, 100), asc);
}

/// Stamps out one `#[test]` per contract check.
///
/// `$make` is an expression yielding a fresh `Arc<dyn StateStore>`. `$make_clocked` yields
/// `(Arc<dyn StateStore>, impl Fn(Duration))`: a fresh store and a function that moves that
/// store's TTL clock forward by at least the given duration (see the module docs).
#[macro_export]
macro_rules! state_store_contract_suite {
    ($make:expr, $make_clocked:expr) => {
        $crate::state_store_contract_suite!(@plain $make;
            put_get_delete, partitions_are_isolated, scan_order_and_limit, scan_bounds,
            delete_range, batches_apply_whole, readers_never_see_half_a_batch,
            truncate_only_its_table, for_each_visits_every_row, large_batch, lanes_equal_mutations,
            invalid_names_and_keys_are_refused);
        $crate::state_store_contract_suite!(@clocked $make_clocked;
            ttl_rows_expire, ttl_scan_limit_skips_expired);
    };
    (@plain $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let store: ::std::sync::Arc<dyn $crate::store::StateStore> = $make;
                $crate::store::contract::$name(store);
            }
        )*
    };
    (@clocked $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let (store, advance) = $make;
                let store: ::std::sync::Arc<dyn $crate::store::StateStore> = store;
                $crate::store::contract::$name(store, &advance);
            }
        )*
    };
}
