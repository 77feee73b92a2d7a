//! Resident tables of the embedded store (in memory, durable through a changelog and
//! checkpoints): what a restart, a crash copy and a torn journal leave equals what an LSM table
//! would hold; plain rows move in; expired rows are purged.

use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use philo_streams::store::contract::{ManualClock, all_rows};
use philo_streams::store::{
    CkRange, EmbeddedStore, EmbeddedStoreConfig, Order, ResidentTables, StateStore, WriteBatch,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::store_embedded::{copy_dir, newest_journal, scratch};

fn config(dir: &Path, resident: &[&str], checkpoint_bytes: u64) -> EmbeddedStoreConfig {
    let mut config = EmbeddedStoreConfig::new(dir);
    config.resident_tables =
        ResidentTables::Named(resident.iter().map(|t| t.to_string()).collect());
    config.checkpoint_bytes = checkpoint_bytes;
    config.purge_interval = None;
    config
}

/// A random batch over a few partitions of `feed`: puts (some rewriting rows), deletes and
/// range deletes (as feed trims and unfollows do), and a position row in the LSM table `pos`.
fn random_batch(rng: &mut StdRng, n: u32) -> WriteBatch {
    let mut b = WriteBatch::new();
    for _ in 0..rng.random_range(1..40) {
        let pk = format!("user{}", rng.random_range(0..12));
        let ck = rng.random_range(0..200u32).to_be_bytes().to_vec();
        match rng.random_range(0..10) {
            0..7 => {
                let value = vec![rng.random::<u8>(); rng.random_range(0..40)];
                b.put("feed", pk, ck, value);
            }
            7 | 8 => b.delete("feed", pk, ck),
            _ => {
                let lo = rng.random_range(0..200u32);
                b.delete_range(
                    "feed",
                    pk,
                    CkRange {
                        start: Bound::Included(lo.to_be_bytes().to_vec()),
                        end: Bound::Excluded((lo + 30).to_be_bytes().to_vec()),
                    },
                );
            }
        }
    }
    b.put("pos", &b"job"[..], &b""[..], n.to_be_bytes().to_vec());
    b
}

/// The same batches into an LSM-only store and a resident one (checkpointing often), with
/// reopens in between: the rows are equal at every reopen.
#[test]
fn resident_rows_equal_lsm_rows_across_reopens_and_checkpoints() {
    let (plain_dir, res_dir) = (scratch(), scratch());
    let plain = EmbeddedStore::open(config(&plain_dir, &[], 0)).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut n = 0;
    for round in 0..4 {
        let resident = EmbeddedStore::open(config(&res_dir, &["feed"], 2_048)).unwrap();
        for _ in 0..150 {
            let batch = random_batch(&mut rng, n);
            n += 1;
            plain.apply(batch.clone()).unwrap();
            resident.apply(batch).unwrap();
        }
        resident.sync().unwrap();
        assert_eq!(
            all_rows(&resident, "feed"),
            all_rows(&plain, "feed"),
            "round {round}"
        );
        assert!(resident.resident_bytes() > 0);
        for pk in ["user3", "user7"] {
            for order in [Order::Asc, Order::Desc] {
                let range = CkRange::after(&50u32.to_be_bytes());
                assert_eq!(
                    resident
                        .scan("feed", pk.as_bytes(), &range, order, 7)
                        .unwrap(),
                    plain.scan("feed", pk.as_bytes(), &range, order, 7).unwrap()
                );
            }
        }
    }
    let resident = EmbeddedStore::open(config(&res_dir, &["feed"], 2_048)).unwrap();
    assert_eq!(all_rows(&resident, "feed"), all_rows(&plain, "feed"));
    assert_eq!(
        resident.stored_rows("feed").unwrap(),
        plain.stored_rows("feed").unwrap()
    );
}

/// Writes 60 random batches, syncing every 10th; returns the open store and the last synced
/// batch number.
fn write_batches(dir: &Path, checkpoint_bytes: u64) -> (EmbeddedStore, u32, Vec<WriteBatch>) {
    let store = EmbeddedStore::open(config(dir, &["feed"], checkpoint_bytes)).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut synced = 0;
    let mut batches = Vec::new();
    for i in 0..60u32 {
        let batch = random_batch(&mut rng, i);
        batches.push(batch.clone());
        store.apply(batch).unwrap();
        if i % 10 == 9 {
            store.sync().unwrap();
            synced = i;
        }
    }
    (store, synced, batches)
}

/// The resident rows a recovered store holds must be exactly those of the batches up to its
/// recovered position (the LSM row of the same batches): whole batches, in order.
fn check_recovered(dir: &Path, batches: &[WriteBatch]) -> u32 {
    let store = EmbeddedStore::open(config(dir, &["feed"], 1 << 40)).expect("reopens");
    let pos = store.get("pos", b"job", b"").unwrap().expect("a position");
    let pos = u32::from_be_bytes(pos[..].try_into().unwrap());
    let reference = EmbeddedStore::open(config(&scratch(), &[], 0)).unwrap();
    for b in &batches[..=pos as usize] {
        reference.apply(b.clone()).unwrap();
    }
    assert_eq!(
        all_rows(&store, "feed"),
        all_rows(&reference, "feed"),
        "resident rows and position from different batches"
    );
    pos
}

#[test]
fn a_crash_copy_recovers_whole_batches_with_and_without_checkpoints() {
    for checkpoint_bytes in [1 << 40, 1_024] {
        let live = scratch();
        let (store, synced, batches) = write_batches(&live, checkpoint_bytes);
        let dir = scratch();
        copy_dir(&live, &dir);
        drop(store);
        let pos = check_recovered(&dir, &batches);
        assert!(
            pos >= synced,
            "lost synced batch: recovered {pos}, synced {synced}"
        );
    }
}

#[test]
fn a_torn_journal_drops_whole_batches() {
    let live = scratch();
    let (store, _, batches) = write_batches(&live, 1 << 40);
    let dir = scratch();
    copy_dir(&live, &dir);
    drop(store);
    let journal = newest_journal(&dir);
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.truncate(bytes.len() - 7);
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
    std::fs::write(&journal, bytes).unwrap();
    let pos = check_recovered(&dir, &batches);
    assert!((58..=59).contains(&pos), "recovered position {pos}");
}

/// A table configured resident whose rows are LSM rows (a data directory from before) moves
/// into memory when the store opens, and stays there.
#[test]
fn plain_rows_move_into_a_table_configured_resident() {
    let dir = scratch();
    let mut rng = StdRng::seed_from_u64(3);
    let reference = EmbeddedStore::open(config(&scratch(), &[], 0)).unwrap();
    {
        let plain = EmbeddedStore::open(config(&dir, &[], 0)).unwrap();
        for i in 0..40 {
            let b = random_batch(&mut rng, i);
            plain.apply(b.clone()).unwrap();
            reference.apply(b).unwrap();
        }
        plain.sync().unwrap();
    }
    {
        let store = EmbeddedStore::open(config(&dir, &["feed"], 1 << 40)).unwrap();
        assert_eq!(all_rows(&store, "feed"), all_rows(&reference, "feed"));
        assert!(store.resident_bytes() > 0, "held in memory");
        let b = random_batch(&mut rng, 40);
        store.apply(b.clone()).unwrap();
        reference.apply(b).unwrap();
        store.sync().unwrap();
    }
    // Reopened without the setting: the table is still resident (its rows live there).
    let store = EmbeddedStore::open(config(&dir, &[], 0)).unwrap();
    assert_eq!(all_rows(&store, "feed"), all_rows(&reference, "feed"));
    assert!(store.resident_bytes() > 0);
}

#[test]
fn expired_resident_rows_are_hidden_then_purged() {
    let clock = ManualClock::new(1_000_000);
    let dir = scratch();
    let mut c = config(&dir, &["feed"], 1 << 40);
    c.now_ms = clock.as_fn();
    let store = EmbeddedStore::open(c.clone()).unwrap();
    let mut b = WriteBatch::new();
    for i in 0..10u32 {
        b.put_with_ttl(
            "feed",
            &b"p"[..],
            i.to_be_bytes().to_vec(),
            &b"x"[..],
            Duration::from_secs(1),
        );
    }
    b.put(
        "feed",
        &b"p"[..],
        99u32.to_be_bytes().to_vec(),
        &b"kept"[..],
    );
    store.apply(b).unwrap();
    assert_eq!(
        store
            .scan("feed", b"p", &CkRange::all(), Order::Asc, 100)
            .unwrap()
            .len(),
        11
    );
    clock.advance(Duration::from_secs(2));
    let rows = store
        .scan("feed", b"p", &CkRange::all(), Order::Asc, 100)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, Bytes::from_static(b"kept"));
    assert_eq!(store.stored_rows("feed").unwrap(), 11);
    assert_eq!(store.purge_expired("feed").unwrap(), 10);
    assert_eq!(store.stored_rows("feed").unwrap(), 1);
    store.sync().unwrap();
    drop(store);
    let store = EmbeddedStore::open(c).unwrap();
    assert_eq!(
        store.stored_rows("feed").unwrap(),
        1,
        "the purge was logged"
    );
}
