//! The contract every [`Log`] backend must pass, as plain async functions plus
//! [`log_contract_suite!`](crate::log_contract_suite) to stamp them out as tests.
//!
//! Each check creates its own uniquely named topic, so backends that share a broker between
//! tests (Kafka) can run them side by side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::{Log, LogError, Position, Record};

fn topic(name: &str) -> String {
    format!("contract-{name}-{}", uuid::Uuid::new_v4().simple())
}

fn rec(key: &str, value: String) -> Record {
    Record::new(
        Bytes::from(key.to_owned()),
        Bytes::from(value),
        1_700_000_000_000,
    )
}

/// Offsets are dense per partition and start at 0; positions come back in input order.
pub async fn append_assigns_dense_offsets(log: Arc<dyn Log>) {
    let t = topic("dense");
    log.create_topic(&t, 4).await.unwrap();
    let records: Vec<Record> = (0..200)
        .map(|i| rec(&format!("k{}", i % 17), i.to_string()))
        .collect();
    let positions = log.append(&t, records).await.unwrap();
    assert_eq!(positions.len(), 200);
    let mut per_partition: HashMap<u32, Vec<u64>> = HashMap::new();
    for p in &positions {
        per_partition.entry(p.partition).or_default().push(p.offset);
    }
    assert!(
        per_partition.len() > 1,
        "17 keys over 4 partitions must spread"
    );
    for (partition, offsets) in per_partition {
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition} offsets must be dense from 0"
        );
        let wm = log.watermarks(&t, partition).await.unwrap();
        assert_eq!((wm.low, wm.high), (0, expected.len() as u64));
    }
}

/// The same key always lands in the same partition, in append order, and reads return exactly
/// what was appended.
pub async fn same_key_keeps_order_and_content(log: Arc<dyn Log>) {
    let t = topic("order");
    log.create_topic(&t, 3).await.unwrap();
    let mut all = Vec::new();
    for round in 0..5 {
        let batch: Vec<Record> = (0..10)
            .map(|i| rec("actor-a", format!("{round}-{i}")))
            .collect();
        all.extend(log.append(&t, batch).await.unwrap());
    }
    let partition = all[0].partition;
    assert!(all.iter().all(|p| p.partition == partition));
    let read = log.read(&t, partition, 0, 1000).await.unwrap();
    let values: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..5)
        .flat_map(|r| (0..10).map(move |i| format!("{r}-{i}")))
        .collect();
    assert_eq!(values, expected);
    for (i, r) in read.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.partition, partition);
        assert_eq!(&r.key[..], b"actor-a");
        assert_eq!(r.timestamp_ms, 1_700_000_000_000);
    }
}

/// Reads honour `max_records`, start anywhere inside the range, are empty at the high
/// watermark and refuse offsets past it.
pub async fn read_ranges(log: Arc<dyn Log>) {
    let t = topic("ranges");
    log.create_topic(&t, 1).await.unwrap();
    log.append(&t, (0..30).map(|i| rec("k", i.to_string())).collect())
        .await
        .unwrap();
    let page = log.read(&t, 0, 10, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 14]
    );
    assert!(log.read(&t, 0, 30, 10).await.unwrap().is_empty());
    assert!(matches!(
        log.read(&t, 0, 31, 10).await,
        Err(LogError::OffsetOutOfRange {
            requested: 31,
            high: 30,
            ..
        })
    ));
    assert_eq!(log.read(&t, 0, 25, 100).await.unwrap().len(), 5);
}

/// Readers of several partitions of one topic, used in turn, each jump back, forward and
/// across records already read, and every read returns exactly what was appended there (a
/// backend may share one client between a topic's partitions; no partition sees another's
/// records, and no seek shows stale ones).
pub async fn reads_jump_across_partitions(log: Arc<dyn Log>) {
    let t = topic("jumps");
    log.create_topic(&t, 3).await.unwrap();
    let records: Vec<Record> = (0..300)
        .map(|i| rec(&format!("k{}", i % 11), i.to_string()))
        .collect();
    let positions = log.append(&t, records).await.unwrap();
    let mut expected: HashMap<u32, Vec<String>> = HashMap::new();
    for (i, p) in positions.iter().enumerate() {
        let values = expected.entry(p.partition).or_default();
        assert_eq!(p.offset, values.len() as u64);
        values.push(i.to_string());
    }
    assert!(expected.len() > 1, "11 keys over 3 partitions must spread");
    let check = |partition: u32, from: u64, got: &[super::StoredRecord]| {
        let want = &expected[&partition][from as usize..from as usize + got.len()];
        let values: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect();
        assert_eq!(values, want, "partition {partition} from {from}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!((r.partition, r.offset), (partition, from + i as u64));
        }
    };
    let mut partitions: Vec<u32> = expected.keys().copied().collect();
    partitions.sort_unstable();
    // Forward through every partition, interleaved, then back to the start, into the middle
    // and to the last record.
    for round in 0..4u64 {
        for &p in &partitions {
            let len = expected[&p].len() as u64;
            let from = match round {
                0 => 0,
                1 => len / 2,
                2 => 1.min(len - 1),
                _ => len - 1,
            };
            // A hint first: a backend may move what it fetched ahead into its own buffer.
            let hint = log.watermarks_hint(&t, p).await.unwrap();
            assert!(hint.high <= len, "{hint:?}");
            let got = log.read(&t, p, from, 7).await.unwrap();
            assert_eq!(
                got.len() as u64,
                7.min(len - from),
                "partition {p} from {from}"
            );
            check(p, from, &got);
        }
    }
}

/// The watermark hint never passes the high watermark, and a consumer that keeps polling it
/// sees new records arrive (then reads them).
pub async fn watermark_hints(log: Arc<dyn Log>) {
    let t = topic("hints");
    log.create_topic(&t, 1).await.unwrap();
    log.append(&t, (0..20).map(|i| rec("k", i.to_string())).collect())
        .await
        .unwrap();
    let hint = log.watermarks_hint(&t, 0).await.unwrap();
    assert!(hint.high <= 20, "{hint:?}");
    assert_eq!(log.read(&t, 0, 0, 100).await.unwrap().len(), 20);
    log.append(&t, (20..25).map(|i| rec("k", i.to_string())).collect())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let hint = log.watermarks_hint(&t, 0).await.unwrap();
        assert!(hint.high <= 25, "{hint:?}");
        if hint.high == 25 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hint never saw the new records: {hint:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let tail = log.read(&t, 0, 20, 100).await.unwrap();
    let values: Vec<&[u8]> = tail.iter().map(|r| &r.value[..]).collect();
    assert_eq!(values, [&b"20"[..], b"21", b"22", b"23", b"24"]);
}

/// The watermarks of every partition at once equal those asked partition by partition.
pub async fn watermarks_of_every_partition(log: Arc<dyn Log>) {
    let t = topic("all-watermarks");
    log.create_topic(&t, 4).await.unwrap();
    let empty = log.watermarks_all(&t).await.unwrap();
    assert_eq!(empty.len(), 4);
    assert!(empty.iter().all(|w| w.low == 0 && w.high == 0), "{empty:?}");
    let positions = log
        .append(
            &t,
            (0..60)
                .map(|i| rec(&format!("k{i}"), i.to_string()))
                .collect(),
        )
        .await
        .unwrap();
    let all = log.watermarks_all(&t).await.unwrap();
    assert_eq!(all.len(), 4);
    for (p, wm) in all.iter().enumerate() {
        assert_eq!(
            *wm,
            log.watermarks(&t, p as u32).await.unwrap(),
            "partition {p}"
        );
        let appended = positions.iter().filter(|x| x.partition == p as u32).count();
        assert_eq!((wm.low, wm.high), (0, appended as u64), "partition {p}");
    }
    assert!(matches!(
        log.watermarks_all("no-such-topic").await,
        Err(LogError::TopicNotFound(_))
    ));
}

/// Headers survive the trip.
pub async fn headers_roundtrip(log: Arc<dyn Log>) {
    let t = topic("headers");
    log.create_topic(&t, 1).await.unwrap();
    let r = rec("k", "v".into())
        .with_header("content-type", Bytes::from_static(b"application/json"))
        .with_header("schema-version", Bytes::from_static(b"1"));
    log.append(&t, vec![r.clone()]).await.unwrap();
    let back = log.read(&t, 0, 0, 1).await.unwrap();
    assert_eq!(back[0].headers, r.headers);
}

/// Many concurrent appenders: every record gets a unique position, none is lost, per-key order
/// holds.
pub async fn concurrent_appends(log: Arc<dyn Log>) {
    let t = topic("concurrent");
    log.create_topic(&t, 4).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let log = log.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let p = log
                    .append(&t, vec![rec(&format!("w{w}"), format!("{w}:{i}"))])
                    .await
                    .unwrap();
                out.push(p[0]);
            }
            out
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for p in task.await.unwrap() {
            assert!(seen.insert(p), "position {p} handed out twice");
        }
    }
    assert_eq!(seen.len(), 400);
    let mut total = 0;
    for partition in 0..4 {
        let records = log.read(&t, partition, 0, 10_000).await.unwrap();
        total += records.len();
        let mut last: HashMap<Bytes, i32> = HashMap::new();
        for r in records {
            let v = String::from_utf8(r.value.to_vec()).unwrap();
            let i: i32 = v.split(':').nth(1).unwrap().parse().unwrap();
            let prev = last.insert(r.key.clone(), i).unwrap_or(-1);
            assert_eq!(i, prev + 1, "per-key order broken in partition {partition}");
        }
    }
    assert_eq!(total, 400);
}

/// Consumer groups commit positions per partition, independently of each other.
pub async fn committed_positions(log: Arc<dyn Log>) {
    let t = topic("groups");
    log.create_topic(&t, 2).await.unwrap();
    log.append(
        &t,
        (0..10)
            .map(|i| rec(&format!("k{i}"), i.to_string()))
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(log.committed("g1", &t, 0).await.unwrap(), None);
    let positions = [
        Position {
            partition: 0,
            offset: 3,
        },
        Position {
            partition: 1,
            offset: 2,
        },
    ];
    log.commit("g1", &t, &positions).await.unwrap();
    assert_eq!(log.committed("g1", &t, 0).await.unwrap(), Some(3));
    assert_eq!(log.committed("g1", &t, 1).await.unwrap(), Some(2));
    assert_eq!(log.committed("g2", &t, 0).await.unwrap(), None);
    log.commit(
        "g1",
        &t,
        &[Position {
            partition: 0,
            offset: 5,
        }],
    )
    .await
    .unwrap();
    assert_eq!(log.committed("g1", &t, 0).await.unwrap(), Some(5));
}

/// Misuse is refused with the right error.
pub async fn errors(log: Arc<dyn Log>) {
    let t = topic("errors");
    assert!(matches!(
        log.append("no-such-topic-xyz", vec![rec("k", "v".into())])
            .await,
        Err(LogError::TopicNotFound(_))
    ));
    log.create_topic(&t, 2).await.unwrap();
    log.create_topic(&t, 2)
        .await
        .expect("creating again with the same count is fine");
    assert!(matches!(
        log.create_topic(&t, 3).await,
        Err(LogError::TopicMismatch { .. })
    ));
    assert!(matches!(
        log.read(&t, 7, 0, 1).await,
        Err(LogError::PartitionOutOfRange { partition: 7, .. })
    ));
    assert_eq!(log.partitions(&t).await.unwrap(), 2);
    assert!(log.append(&t, Vec::new()).await.unwrap().is_empty());
}

/// Stamps out one `#[tokio::test]` per contract check, for a backend built by `$make` (an async
/// expression yielding `Arc<dyn Log>`).
#[macro_export]
macro_rules! log_contract_suite {
    ($make:expr) => {
        $crate::log_contract_suite!(@tests $make;
            append_assigns_dense_offsets, same_key_keeps_order_and_content, read_ranges,
            headers_roundtrip, concurrent_appends, committed_positions, errors, watermark_hints,
            watermarks_of_every_partition, reads_jump_across_partitions);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let log: ::std::sync::Arc<dyn $crate::log::Log> = $make.await;
                $crate::log::contract::$name(log).await;
            }
        )*
    };
}
