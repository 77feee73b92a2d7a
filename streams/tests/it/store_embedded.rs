//! What only the embedded, durable `StateStore` backend can show: reopening, crash copies and
//! torn journals, purging expired rows, key limits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use philo_streams::store::contract::ManualClock;
use philo_streams::store::{
    CkRange, EmbeddedStore, EmbeddedStoreConfig, Order, StateStore, StoreError, WriteBatch,
};

pub(crate) fn scratch() -> PathBuf {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep()
}

fn config(dir: &Path, clock: &ManualClock) -> EmbeddedStoreConfig {
    let mut config = EmbeddedStoreConfig::new(dir);
    config.now_ms = clock.as_fn();
    config.purge_interval = None;
    config
}

fn apply(store: &EmbeddedStore, f: impl FnOnce(&mut WriteBatch)) {
    let mut batch = WriteBatch::new();
    f(&mut batch);
    store.apply(batch).unwrap();
}

#[test]
fn reopen_keeps_synced_batches() {
    let dir = scratch();
    let clock = ManualClock::new(1_000_000);
    {
        let store = EmbeddedStore::open(config(&dir, &clock)).unwrap();
        apply(&store, |b| {
            b.put("feeds", &b"u1"[..], &b"0001"[..], &b"post-1"[..]);
            b.put("feeds", &b"u1"[..], &b"0002"[..], &b"post-2"[..]);
            b.put_with_ttl(
                "notifications",
                &b"u1"[..],
                &b"n1"[..],
                &b"hi"[..],
                Duration::from_secs(60),
            );
        });
        apply(&store, |b| b.delete("feeds", &b"u1"[..], &b"0001"[..]));
        store.sync().unwrap();
    }
    let store = EmbeddedStore::open(config(&dir, &clock)).unwrap();
    let rows = store
        .scan("feeds", b"u1", &CkRange::all(), Order::Asc, 10)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, Bytes::from_static(b"post-2"));
    assert_eq!(
        store.get("notifications", b"u1", b"n1").unwrap(),
        Some(Bytes::from_static(b"hi"))
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(store.get("notifications", b"u1", b"n1").unwrap(), None);
    apply(&store, |b| {
        b.put("feeds", &b"u1"[..], &b"0003"[..], &b"post-3"[..])
    });
    assert_eq!(store.stored_rows("feeds").unwrap(), 2);
}

/// `apply` hands batches to the OS: a clean close without `sync` keeps them.
#[test]
fn unsynced_batches_survive_a_clean_close() {
    let dir = scratch();
    let clock = ManualClock::new(0);
    {
        let store = EmbeddedStore::open(config(&dir, &clock)).unwrap();
        apply(&store, |b| b.put("t", &b"p"[..], &b"c"[..], &b"v"[..]));
    }
    let store = EmbeddedStore::open(config(&dir, &clock)).unwrap();
    assert_eq!(
        store.get("t", b"p", b"c").unwrap(),
        Some(Bytes::from_static(b"v"))
    );
}

/// Writes 50 batches, each rewriting 10 output rows and then a position to the batch number,
/// syncing every 10th; returns the store (still open) and the last synced batch.
fn write_jobs_batches(dir: &Path) -> (EmbeddedStore, u32) {
    let store = EmbeddedStore::open(config(dir, &ManualClock::new(0))).unwrap();
    let mut synced = 0;
    for i in 0..50u32 {
        apply(&store, |b| {
            for j in 0..10u32 {
                b.put(
                    "outputs",
                    &b"p"[..],
                    j.to_be_bytes().to_vec(),
                    i.to_be_bytes().to_vec(),
                );
            }
            b.put("positions", &b"job"[..], &b""[..], i.to_be_bytes().to_vec());
        });
        if i % 10 == 9 {
            store.sync().unwrap();
            synced = i;
        }
    }
    (store, synced)
}

/// After a recovery the position and the outputs come from the same batch: whole batches, in
/// order. Returns the recovered position.
fn recovered_position(dir: &Path) -> u32 {
    let store = EmbeddedStore::open(config(dir, &ManualClock::new(0))).expect("store reopens");
    let pos = store
        .get("positions", b"job", b"")
        .unwrap()
        .expect("a position");
    let rows = store
        .scan("outputs", b"p", &CkRange::all(), Order::Asc, 100)
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert!(
        rows.iter().all(|r| r.value == pos),
        "outputs and position from different batches"
    );
    u32::from_be_bytes(pos[..].try_into().unwrap())
}

/// What a kill -9 leaves: the files as they are while the store is open, with no shutdown.
#[test]
fn crash_copy_keeps_whole_batches_in_order() {
    let live = scratch();
    let (store, synced) = write_jobs_batches(&live);
    let dir = scratch();
    copy_dir(&live, &dir);
    drop(store);
    let pos = recovered_position(&dir);
    assert!(
        pos >= synced,
        "lost synced batch: recovered {pos}, synced {synced}"
    );
}

/// A crash during a journal write leaves a torn tail: recovery drops the torn batch whole.
#[test]
fn torn_journal_tail_drops_whole_batches() {
    let live = scratch();
    let (store, _) = write_jobs_batches(&live);
    let dir = scratch();
    copy_dir(&live, &dir);
    drop(store);
    let journal = newest_journal(&dir);
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.truncate(bytes.len() - 7);
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
    std::fs::write(&journal, bytes).unwrap();
    let pos = recovered_position(&dir);
    assert!((48..=49).contains(&pos), "recovered position {pos}");
}

#[test]
fn purge_expired_removes_rows() {
    let clock = ManualClock::new(1_000_000);
    let store = EmbeddedStore::open(config(&scratch(), &clock)).unwrap();
    let ttl = Duration::from_secs(1);
    apply(&store, |b| {
        for i in 0..10u32 {
            b.put_with_ttl("a", &b"p"[..], i.to_be_bytes().to_vec(), &b"x"[..], ttl);
            b.put_with_ttl("b", &b"p"[..], i.to_be_bytes().to_vec(), &b"x"[..], ttl);
        }
        for i in 10..15u32 {
            b.put("a", &b"p"[..], i.to_be_bytes().to_vec(), &b"x"[..]);
        }
    });
    clock.advance(Duration::from_secs(2));
    // Rewritten after expiring: live again, not purged.
    apply(&store, |b| {
        b.put("a", &b"p"[..], 3u32.to_be_bytes().to_vec(), &b"y"[..])
    });
    assert_eq!(store.stored_rows("a").unwrap(), 15);
    assert_eq!(store.purge_expired("a").unwrap(), 9);
    assert_eq!(store.stored_rows("a").unwrap(), 6);
    assert_eq!(store.purge_expired("a").unwrap(), 0);
    assert_eq!(
        store.stored_rows("b").unwrap(),
        10,
        "other tables untouched"
    );
    assert_eq!(store.purge_expired("never_written").unwrap(), 0);
    assert!(matches!(
        store.purge_expired("Bad"),
        Err(StoreError::InvalidTable(_))
    ));
}

/// The purge thread covers every table on disk, also those not touched since a reopen.
#[test]
fn background_purge_covers_tables_on_disk() {
    let dir = scratch();
    let clock = ManualClock::new(1_000_000);
    {
        let store = EmbeddedStore::open(config(&dir, &clock)).unwrap();
        apply(&store, |b| {
            for i in 0..100u32 {
                let ck = i.to_be_bytes().to_vec();
                b.put_with_ttl(
                    "a",
                    &b"p"[..],
                    ck.clone(),
                    &b"x"[..],
                    Duration::from_secs(1),
                );
                b.put_with_ttl("b", &b"q"[..], ck, &b"x"[..], Duration::from_secs(1));
            }
            b.put("b", &b"q"[..], &b"keep"[..], &b"x"[..]);
        });
    }
    clock.advance(Duration::from_secs(5));
    let mut config = config(&dir, &clock);
    config.purge_interval = Some(Duration::from_millis(20));
    let store = EmbeddedStore::open(config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stored_rows("a").unwrap() + store.stored_rows("b").unwrap() > 1 {
        assert!(Instant::now() < deadline, "purge thread did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        store.get("b", b"q", b"keep").unwrap(),
        Some(Bytes::from_static(b"x"))
    );
}

/// Dropping the last clone stops the purge thread and closes the database, so the directory
/// can be opened again at once; a clone keeps the store open.
#[test]
fn dropping_the_last_clone_closes_the_store() {
    let dir = scratch();
    let clock = ManualClock::new(0);
    for i in 0..10u32 {
        let mut config = config(&dir, &clock);
        config.purge_interval = Some(Duration::from_millis(1));
        let store = EmbeddedStore::open(config).unwrap();
        let clone = store.clone();
        drop(store);
        apply(&clone, |b| {
            b.put("t", &b"p"[..], i.to_be_bytes().to_vec(), &b"x"[..])
        });
    }
    let store = EmbeddedStore::open(config(&dir, &clock)).unwrap();
    assert_eq!(store.stored_rows("t").unwrap(), 10);
}

/// Partition key and clustering key share the 65533 bytes a key may take.
#[test]
fn key_length_limit() {
    let store = EmbeddedStore::open(config(&scratch(), &ManualClock::new(0))).unwrap();
    let max = 65_533;
    apply(&store, |b| {
        b.put("t", vec![1u8; max], Bytes::new(), &b"pk"[..]);
        b.put("t", vec![2u8; 100], vec![0u8; max - 100], &b"both"[..]);
    });
    assert_eq!(
        store.get("t", &vec![1u8; max], b"").unwrap(),
        Some(Bytes::from_static(b"pk"))
    );
    let rows = store
        .scan("t", &[2u8; 100], &CkRange::all(), Order::Desc, 10)
        .unwrap();
    assert_eq!(rows.len(), 1);
    let mut batch = WriteBatch::new();
    batch.put("t", vec![2u8; 100], vec![0u8; max - 99], &b"x"[..]);
    assert!(matches!(
        store.apply(batch),
        Err(StoreError::KeyTooLong(65_534))
    ));
    assert!(matches!(
        store.get("t", &vec![1u8; max], b"x"),
        Err(StoreError::KeyTooLong(_))
    ));
    assert!(matches!(
        store.scan(
            "t",
            &[1u8; 10],
            &CkRange::after(&vec![0u8; max]),
            Order::Asc,
            1
        ),
        Err(StoreError::KeyTooLong(_))
    ));
}

pub(crate) fn newest_journal(dir: &Path) -> PathBuf {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "jnl") {
                found.push((e.metadata().unwrap().modified().unwrap(), path));
            }
        }
    }
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no journal file under {}", dir.display()))
        .1
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
