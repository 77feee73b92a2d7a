//! The `Log` contract suite against the embedded backend, plus what only a local, durable
//! backend can show: reopening, group commit, retention, torn-tail recovery.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use philo_events::log::{EmbeddedLog, EmbeddedLogConfig, Log, LogError, Record};

fn scratch() -> PathBuf {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep()
}

async fn embedded() -> Arc<dyn Log> {
    Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(scratch())).unwrap())
}

mod contract {
    use super::*;
    philo_events::log_contract_suite!(embedded());
}

/// The same contract with the partitions spread over three journals, so that appends span
/// shards whose writers commit independently.
mod contract_three_shards {
    use super::*;

    async fn sharded() -> Arc<dyn Log> {
        let mut config = EmbeddedLogConfig::new(scratch());
        config.shards = 3;
        Arc::new(EmbeddedLog::open(config).unwrap())
    }

    philo_events::log_contract_suite!(sharded());
}

/// A key of `topic` that lands in `partition`.
fn key_in(partition: u32, partitions: u32) -> String {
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| philo_events::log::partition_for_key(k.as_bytes(), partitions) == partition)
        .unwrap()
}

/// An append spanning shards answers one position per record in input order, every record
/// reads back at its position, and the shard count is fixed when the log is created: a reopen
/// configured otherwise keeps it and finds every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_spanning_shards_keep_order_and_the_layout_survives_reopening() {
    let dir = scratch();
    let mut config = EmbeddedLogConfig::new(&dir);
    config.shards = 3;
    let records: Vec<Record> = (0..300)
        .map(|i| rec(&format!("actor-{}", i % 37), format!("v{i}"), i))
        .collect();
    let positions = {
        let log = EmbeddedLog::open(config).unwrap();
        assert_eq!(log.shard_count(), 3);
        log.create_topic("actions", 7).await.unwrap();
        let positions = log.append("actions", records.clone()).await.unwrap();
        assert_eq!(positions.len(), records.len());
        let used: std::collections::BTreeSet<u32> = positions.iter().map(|p| p.partition).collect();
        assert!(used.len() >= 5, "37 keys spread over {used:?}");
        // Per partition, offsets are dense and in input order.
        let mut next = [0u64; 7];
        for (r, p) in records.iter().zip(&positions) {
            let want = philo_events::log::partition_for_key(&r.key, 7);
            assert_eq!(p.partition, want);
            assert_eq!(p.offset, next[want as usize]);
            next[want as usize] += 1;
        }
        positions
    };
    let mut config = EmbeddedLogConfig::new(&dir);
    config.shards = 1;
    let log = EmbeddedLog::open(config).unwrap();
    assert_eq!(
        log.shard_count(),
        3,
        "the log keeps the count it was created with"
    );
    for (r, p) in records.iter().zip(&positions) {
        let got = log.read("actions", p.partition, p.offset, 1).await.unwrap();
        assert_eq!(got[0].value, r.value);
    }
    let p = log
        .append("actions", vec![records[0].clone()])
        .await
        .unwrap()[0];
    assert_eq!(p.partition, positions[0].partition);
    let wm = log.watermarks("actions", p.partition).await.unwrap();
    assert_eq!(p.offset + 1, wm.high, "offsets continue after a reopen");
    assert!(
        dir.join("shard-1").is_dir() && dir.join("shard-2").is_dir(),
        "shards 1 and 2 live in their own directories"
    );
}

fn rec(key: &str, value: String, ts: i64) -> Record {
    Record::new(Bytes::from(key.to_owned()), Bytes::from(value), ts)
}

/// An append to a topic signals the consumers waiting on it, once its records are visible;
/// appends to another topic do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wake_waiting_consumers_once_visible() {
    let log = embedded().await;
    log.create_topic("actions", 2).await.unwrap();
    log.create_topic("other", 1).await.unwrap();
    assert!(log.appends("missing").is_none());
    let mut rx = log
        .appends("actions")
        .expect("the embedded log signals appends");
    rx.borrow_and_update();
    log.append("other", vec![rec("a", "x".into(), 1)])
        .await
        .unwrap();
    assert!(
        !rx.has_changed().unwrap(),
        "another topic's append does not signal"
    );
    let reader = log.clone();
    let waiter = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("woken within 10 s")
            .unwrap();
        let mut visible = 0;
        for p in 0..2 {
            visible += reader.watermarks("actions", p).await.unwrap().high;
        }
        visible
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "nothing was appended yet");
    log.append("actions", vec![rec("a", "y".into(), 1)])
        .await
        .unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        1,
        "the woken consumer sees the record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_records_offsets_and_group_positions() {
    let dir = scratch();
    {
        let log = EmbeddedLog::open(EmbeddedLogConfig::new(&dir)).unwrap();
        log.create_topic("actions", 2).await.unwrap();
        log.append(
            "actions",
            (0..50).map(|i| rec("a", i.to_string(), 1)).collect(),
        )
        .await
        .unwrap();
        let p = log
            .append("actions", vec![rec("a", "last".into(), 1)])
            .await
            .unwrap()[0];
        assert_eq!(p.offset, 50);
        log.commit("jobs", "actions", &[p]).await.unwrap();
    }
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(&dir)).unwrap();
    assert_eq!(log.partitions("actions").await.unwrap(), 2);
    let p = log
        .append("actions", vec![rec("a", "after".into(), 1)])
        .await
        .unwrap()[0];
    assert_eq!(p.offset, 51, "offsets continue after a reopen");
    let all = log.read("actions", p.partition, 0, 100).await.unwrap();
    assert_eq!(all.len(), 52);
    assert_eq!(&all[50].value[..], b"last");
    assert_eq!(
        log.committed("jobs", "actions", p.partition).await.unwrap(),
        Some(50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(scratch())).unwrap();
    log.create_topic("actions", 4).await.unwrap();
    let before = log.fsync_count();
    let tasks: Vec<_> = (0..64)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    log.append("actions", vec![rec(&format!("w{w}"), i.to_string(), 1)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let fsyncs = log.fsync_count() - before;
    assert!(fsyncs > 0, "appends must fsync");
    assert!(
        fsyncs < 1280,
        "1280 concurrent appends took {fsyncs} fsyncs: no group commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_and_age() {
    let dir = scratch();
    let mut config = EmbeddedLogConfig::new(&dir);
    config.max_age = Some(Duration::from_secs(3600));
    config.max_bytes_per_partition = Some(10_000);
    let log = EmbeddedLog::open(config).unwrap();
    log.create_topic("t", 1).await.unwrap();
    let now = 10_000_000_000i64;
    // 50 old records, then 100 fresh ones of 1 KiB each.
    log.append(
        "t",
        (0..50)
            .map(|i| rec("k", i.to_string(), now - 7_200_000))
            .collect(),
    )
    .await
    .unwrap();
    log.append(
        "t",
        (0..100).map(|_| rec("k", "x".repeat(1023), now)).collect(),
    )
    .await
    .unwrap();
    let deleted = log.enforce_retention(now).unwrap();
    let wm = log.watermarks("t", 0).await.unwrap();
    assert_eq!(wm.high, 150);
    assert_eq!(deleted, wm.low);
    // Age removes the 50 old ones; size keeps about 10 records of 1 KiB.
    assert!((139..=141).contains(&wm.low), "low watermark {}", wm.low);
    assert!(matches!(
        log.read("t", 0, 0, 10).await,
        Err(LogError::OffsetOutOfRange { low, .. }) if low == wm.low
    ));
    assert_eq!(
        log.read("t", 0, wm.low, 1000).await.unwrap().len() as u64,
        150 - wm.low
    );
    // The retained range survives a reopen.
    drop(log);
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(&dir)).unwrap();
    assert_eq!(log.watermarks("t", 0).await.unwrap(), wm);
}

/// A crash mid-write leaves a torn tail in the journal. Reopening must succeed, keep every
/// record before the tear, and continue offsets after the last surviving record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_journal_tail_is_recovered() {
    let live = scratch();
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(&live)).unwrap();
    log.create_topic("actions", 1).await.unwrap();
    for i in 0..100 {
        log.append("actions", vec![rec("a", format!("record-{i}"), 1)])
            .await
            .unwrap();
    }
    // What a kill -9 leaves on disk: the files as they are while the log is still open
    // (every append above was fsync'd), with no shutdown flush.
    let dir = scratch();
    copy_dir(&live, &dir);
    drop(log);
    let journal = newest_journal(&dir);
    let len = std::fs::metadata(&journal).unwrap().len();
    let mut bytes = std::fs::read(&journal).unwrap();
    // Tear the last few bytes off and append garbage, as a crash during a write would.
    bytes.truncate((len - 7) as usize);
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
    std::fs::write(&journal, bytes).unwrap();

    let log = EmbeddedLog::open(EmbeddedLogConfig::new(&dir)).expect("log opens after a torn tail");
    let wm = log.watermarks("actions", 0).await.unwrap();
    assert!(
        (99..=100).contains(&wm.high),
        "kept {} of 100 records",
        wm.high
    );
    let records = log.read("actions", 0, 0, 200).await.unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.value, Bytes::from(format!("record-{i}")));
    }
    let p = log
        .append("actions", vec![rec("a", "after".into(), 1)])
        .await
        .unwrap()[0];
    assert_eq!(p.offset, wm.high);
}

/// A torn tail in one shard's journal costs that shard at most its last group commit; the other
/// shard's partitions keep everything, and offsets continue in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_in_one_shard_leaves_the_others_whole() {
    let live = scratch();
    let mut config = EmbeddedLogConfig::new(&live);
    config.shards = 2;
    let log = EmbeddedLog::open(config).unwrap();
    log.create_topic("actions", 2).await.unwrap();
    // Partition p lives in shard p % 2.
    let keys = [key_in(0, 2), key_in(1, 2)];
    for i in 0..100 {
        for key in &keys {
            log.append("actions", vec![rec(key, format!("record-{i}"), 1)])
                .await
                .unwrap();
        }
    }
    let dir = scratch();
    copy_dir(&live, &dir);
    drop(log);
    let journal = newest_journal(&dir.join("shard-1"));
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.truncate(bytes.len() - 7);
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
    std::fs::write(&journal, bytes).unwrap();

    let mut config = EmbeddedLogConfig::new(&dir);
    config.shards = 2;
    let log = EmbeddedLog::open(config).expect("log opens after a torn tail in one shard");
    assert_eq!(log.watermarks("actions", 0).await.unwrap().high, 100);
    let torn = log.watermarks("actions", 1).await.unwrap().high;
    assert!((99..=100).contains(&torn), "kept {torn} of 100 records");
    for (p, high) in [(0, 100), (1, torn)] {
        let records = log.read("actions", p, 0, 200).await.unwrap();
        assert_eq!(records.len() as u64, high);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.value, Bytes::from(format!("record-{i}")));
        }
    }
    for (p, key) in keys.iter().enumerate() {
        let pos = log
            .append("actions", vec![rec(key, "after".into(), 1)])
            .await
            .unwrap()[0];
        let high = if p == 0 { 100 } else { torn };
        assert_eq!((pos.partition, pos.offset), (p as u32, high));
    }
}

/// The most recently written journal file of the shard whose database is at `dir`.
fn newest_journal(dir: &Path) -> PathBuf {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                // Another shard's database: its journals are not this one's.
                if !e.file_name().to_string_lossy().starts_with("shard-") {
                    stack.push(path);
                }
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

fn copy_dir(from: &Path, to: &Path) {
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
