//! `Staged` reads exactly like the store would after its writes were applied: checked against
//! a second store that receives every write directly. Writes come as mutations or as lanes
//! (the compact encoding), over an LSM or a resident store.

use std::ops::Bound;
use std::sync::Arc;

use philo_streams::store::{
    CkRange, EmbeddedStore, EmbeddedStoreConfig, Order, ResidentTables, Staged, StateStore,
    WriteBatch,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, u8),
    Delete(u8, u8),
    DeleteRange(u8, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..PKS, 0u8..12, any::<u8>()).prop_map(|(p, c, v)| Op::Put(p, c, v)),
        2 => (0u8..PKS, 0u8..12).prop_map(|(p, c)| Op::Delete(p, c)),
        1 => (0u8..PKS, 0u8..12, 0u8..12).prop_map(|(p, a, b)| Op::DeleteRange(p, a.min(b), a.max(b))),
    ]
}

/// Partition keys of different lengths, one a prefix of another (`[0]`, `[0, 0]`), so a
/// partition's rows must not run into its neighbour's.
const PKS: u8 = 3;

fn pk(p: u8) -> Vec<u8> {
    match p {
        0 => vec![0],
        1 => vec![0, 0],
        _ => vec![1],
    }
}

/// The op as a lane write.
fn lane_batch(op: &Op) -> WriteBatch {
    let mut b = WriteBatch::new();
    match *op {
        Op::Put(p, c, v) => b.lane_put("t", &pk(p), &[c], &[v]),
        Op::Delete(p, c) => b.lane_delete("t", &pk(p), &[c]),
        Op::DeleteRange(p, lo, hi) => b.lane_delete_range(
            "t",
            &pk(p),
            &CkRange {
                start: Bound::Included(vec![lo]),
                end: Bound::Excluded(vec![hi]),
            },
        ),
    }
    b
}

fn batch(op: &Op) -> WriteBatch {
    let mut b = WriteBatch::new();
    match *op {
        Op::Put(p, c, v) => b.put("t", pk(p), vec![c], vec![v]),
        Op::Delete(p, c) => b.delete("t", pk(p), vec![c]),
        Op::DeleteRange(p, lo, hi) => b.delete_range(
            "t",
            pk(p),
            CkRange {
                start: Bound::Included(vec![lo]),
                end: Bound::Excluded(vec![hi]),
            },
        ),
    }
    b
}

fn store(dir: &std::path::Path) -> Arc<dyn StateStore> {
    store_with(dir, false)
}

fn store_with(dir: &std::path::Path, resident: bool) -> Arc<dyn StateStore> {
    let mut c = EmbeddedStoreConfig::new(dir);
    c.purge_interval = None;
    if resident {
        c.resident_tables = ResidentTables::All;
    }
    Arc::new(EmbeddedStore::open(c).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn staged_reads_match_applied_writes(
        committed in proptest::collection::vec((op(), any::<bool>()), 0..20),
        staged_ops in proptest::collection::vec((op(), 0u8..4), 0..20),
        scans in proptest::collection::vec((0u8..PKS, 0u8..13, 0u8..13, any::<bool>(), 0usize..14), 8),
        resident in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let base = store_with(&dir.path().join("base"), resident);
        let reference = store(&dir.path().join("ref"));
        for (o, lane) in &committed {
            base.apply(if *lane { lane_batch(o) } else { batch(o) }).unwrap();
            reference.apply(batch(o)).unwrap();
        }
        let staged = Staged::new(base.clone());
        for (o, how) in &staged_ops {
            // Mostly lanes (as feeds are written), some mutations between them; reads in
            // between build the lane index, which later lane writes must keep up to date.
            staged.apply(if *how > 0 { lane_batch(o) } else { batch(o) }).unwrap();
            reference.apply(batch(o)).unwrap();
            let (p, c) = match *o {
                Op::Put(p, c, _) | Op::Delete(p, c) | Op::DeleteRange(p, c, _) => (p, c),
            };
            prop_assert_eq!(
                staged.get("t", &pk(p), &[c]).unwrap(),
                reference.get("t", &pk(p), &[c]).unwrap()
            );
        }
        for p in 0u8..PKS {
            for c in 0u8..12 {
                prop_assert_eq!(
                    staged.get("t", &pk(p), &[c]).unwrap(),
                    reference.get("t", &pk(p), &[c]).unwrap()
                );
            }
        }
        for (p, a, b, desc, limit) in scans {
            let range = CkRange {
                start: Bound::Included(vec![a.min(b)]),
                end: Bound::Excluded(vec![a.max(b)]),
            };
            let order = if desc { Order::Desc } else { Order::Asc };
            let pk = pk(p);
            prop_assert_eq!(
                staged.scan("t", &pk, &range, order, limit).unwrap(),
                reference.scan("t", &pk, &range, order, limit).unwrap()
            );
            prop_assert_eq!(
                staged.scan("t", &pk, &CkRange::all(), order, limit).unwrap(),
                reference.scan("t", &pk, &CkRange::all(), order, limit).unwrap()
            );
            prop_assert_eq!(
                staged.scan("t", &pk, &CkRange::after(&[a]), order, limit).unwrap(),
                reference.scan("t", &pk, &CkRange::after(&[a]), order, limit).unwrap()
            );
        }
        // Committing the staged batch gives the reference state.
        base.apply(staged.into_batch()).unwrap();
        for p in 0u8..PKS {
            prop_assert_eq!(
                base.scan("t", &pk(p), &CkRange::all(), Order::Asc, 100).unwrap(),
                reference.scan("t", &pk(p), &CkRange::all(), Order::Asc, 100).unwrap()
            );
        }
    }
}

/// A step's lane past one chunk (megabytes of feed rows) reads and commits as one: reads in
/// between index the chunks, and the committed batch (a lane per chunk, a changelog record
/// each on a resident store) leaves the rows the reference holds.
#[test]
fn lanes_past_one_chunk_read_and_commit_whole() {
    for resident in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let base = store_with(&dir.path().join("base"), resident);
        let reference = store(&dir.path().join("ref"));
        let staged = Staged::new(base.clone());
        let mut x = 1u64;
        let mut next = move |n: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % n
        };
        let value = [7u8; 48];
        for round in 0..140u64 {
            let (mut lanes, mut muts) = (WriteBatch::new(), WriteBatch::new());
            for _ in 0..600 {
                let pk = next(50).to_be_bytes();
                let ck = next(5_000).to_be_bytes();
                if next(10) == 0 {
                    lanes.lane_delete("t", &pk, &ck);
                    muts.delete("t", pk.to_vec(), ck.to_vec());
                } else {
                    lanes.lane_put("t", &pk, &ck, &value);
                    muts.put("t", pk.to_vec(), ck.to_vec(), value.to_vec());
                }
            }
            staged.apply(lanes).unwrap();
            reference.apply(muts).unwrap();
            if round % 20 == 7 {
                let pk = next(50).to_be_bytes();
                assert_eq!(
                    staged
                        .scan("t", &pk, &CkRange::all(), Order::Desc, 30)
                        .unwrap(),
                    reference
                        .scan("t", &pk, &CkRange::all(), Order::Desc, 30)
                        .unwrap()
                );
            }
        }
        let batch = staged.into_batch();
        assert!(batch.lanes.len() > 1, "the lane spans chunks");
        base.apply(batch).unwrap();
        for p in 0..50u64 {
            let pk = p.to_be_bytes();
            assert_eq!(
                base.scan("t", &pk, &CkRange::all(), Order::Asc, usize::MAX)
                    .unwrap(),
                reference
                    .scan("t", &pk, &CkRange::all(), Order::Asc, usize::MAX)
                    .unwrap(),
                "resident {resident}, partition {p}"
            );
        }
    }
}
