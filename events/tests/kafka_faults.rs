//! Faults injected into the Kafka backend of the `Log` with librdkafka's mock cluster
//! (`rdkafka::mocking::MockCluster`): brokers down, retriable and persistent produce errors,
//! leader moves, a slow broker, a full producer queue, a batch acknowledged without an offset,
//! a fatal idempotent-producer error (the producer is replaced).
//!
//! Each test keeps a ledger of what `append` acknowledged and what it refused, then reads every
//! partition back and checks Kafka's guarantees as the `Log` documents them:
//! - every acknowledged record is stored exactly once, at the position `append` returned;
//! - a refused append may or may not have landed (a timed-out request can have been written
//!   before its answer was lost), but nothing is stored twice and nothing unknown is stored;
//! - transient conditions surface as `LogError::Unavailable` (ingest answers 503 with
//!   `Retry-After`), within a bounded time, never as a hang or a panic.
//!
//! What the mock can and cannot show:
//! - it does not implement CreateTopics, so topics are created on it directly;
//! - it checks producer sequence numbers only for transactional producers, so it does not
//!   drop a resent batch of an idempotent one: broker-side dedupe is out of its reach. The
//!   injected produce errors refuse a request without writing it, so "no duplicates" below is
//!   about the client (librdkafka resends, `append` never enqueues twice);
//! - a round-trip delay holds the answer, not the write: a batch that timed out is stored;
//! - broker ids start at 1.
//!
//! Timeouts are 2 s or more: on a loaded two-core machine a first append has taken 0.5 s.
//! Retrying an `Unavailable` append is what ingest clients do on 503 + `Retry-After`; the
//! tests do it a bounded number of times, and only where the fault just ended.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use philo_events::log::{KafkaLog, KafkaLogConfig, Log, LogError, Position, Record, StoredRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const ALL_BROKERS: i32 = -1;

type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of `brokers` brokers holding `topic` with `partitions` partitions, each
/// replicated to `replication` brokers.
fn mock(brokers: i32, topic: &str, partitions: i32, replication: i32) -> Mock {
    let cluster = MockCluster::new(brokers).expect("mock cluster");
    cluster
        .create_topic(topic, partitions, replication)
        .expect("create topic on the mock");
    cluster
}

/// A log on `cluster` that gives up on a record after `delivery_timeout`.
fn log(cluster: &Mock, delivery_timeout: Duration) -> KafkaLog {
    log_with(cluster, |c| c.delivery_timeout = delivery_timeout)
}

/// A log on `cluster` with a 5 s request timeout and `set` applied to its config.
fn log_with(cluster: &Mock, set: impl FnOnce(&mut KafkaLogConfig)) -> KafkaLog {
    let mut config = KafkaLogConfig::new(cluster.bootstrap_servers());
    config.request_timeout = Duration::from_secs(5);
    set(&mut config);
    KafkaLog::connect(config).expect("connect")
}

/// Fails the test if `fut` does not finish within `limit`: a hang is a bug, not a slow test.
async fn bounded<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// Records `key/seq/attempt` for `seqs`, spread over `keys` keys named `{prefix}{n}`. The
/// attempt makes every try of a retried append distinguishable on read-back.
fn batch(prefix: &str, keys: u32, seqs: std::ops::Range<u32>, attempt: u32) -> Vec<Record> {
    seqs.map(|seq| {
        let key = format!("{prefix}{}", seq % keys);
        let value = format!("{key}/{seq}/{attempt}");
        Record::new(key, value, 1_700_000_000_000 + i64::from(seq))
    })
    .collect()
}

fn seq_of(value: &[u8]) -> u32 {
    let s = std::str::from_utf8(value).expect("utf-8 value");
    s.split('/')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("key/seq/attempt")
}

/// What `append` answered: acknowledged records with their positions, and the values of each
/// refused append, in input order, which may or may not have been written.
#[derive(Default)]
struct Ledger {
    acked: Vec<(Record, Position)>,
    refused: Vec<Vec<Bytes>>,
}

impl Ledger {
    async fn append(
        &mut self,
        log: &KafkaLog,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<(), LogError> {
        match log.append(topic, records.clone()).await {
            Ok(positions) => {
                assert_eq!(positions.len(), records.len(), "one position per record");
                self.acked.extend(records.into_iter().zip(positions));
                Ok(())
            }
            Err(e) => {
                self.refused
                    .push(records.into_iter().map(|r| r.value).collect());
                Err(e)
            }
        }
    }

    /// Appends a batch built by `make(attempt)`, retrying an `Unavailable` answer at most
    /// `tries` times in all: what an ingest client does on 503 + `Retry-After`.
    async fn append_retrying(
        &mut self,
        log: &KafkaLog,
        topic: &str,
        tries: u32,
        make: impl Fn(u32) -> Vec<Record>,
    ) {
        for attempt in 0..tries {
            match self.append(log, topic, make(attempt)).await {
                Ok(()) => return,
                Err(LogError::Unavailable(_)) if attempt + 1 < tries => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("append failed after {} tries: {e:?}", attempt + 1),
            }
        }
    }

    /// Checks `stored` against the ledger; returns how many refused records were written.
    fn check(&self, stored: &[StoredRecord]) -> usize {
        let mut by_value: HashMap<&Bytes, &StoredRecord> = HashMap::new();
        for r in stored {
            if let Some(first) = by_value.insert(&r.value, r) {
                panic!(
                    "{:?} stored twice: at {} and {}",
                    r.value,
                    first.position(),
                    r.position()
                );
            }
        }
        for (record, position) in &self.acked {
            let got = by_value.get(&record.value).unwrap_or_else(|| {
                panic!("acknowledged {:?} at {position} was lost", record.value)
            });
            assert_eq!(
                got.position(),
                *position,
                "{:?} is not where append said",
                record.value
            );
            assert_eq!(got.key, record.key);
        }
        let acked: HashSet<&Bytes> = self.acked.iter().map(|(r, _)| &r.value).collect();
        let refused: HashSet<&Bytes> = self.refused.iter().flatten().collect();
        let mut landed = 0;
        for r in stored {
            if !acked.contains(&r.value) {
                assert!(
                    refused.contains(&r.value),
                    "{:?} was never appended",
                    r.value
                );
                landed += 1;
            }
        }
        assert_eq!(stored.len(), self.acked.len() + landed);
        landed
    }
}

/// Every record of every partition of `topic`, in partition then offset order.
async fn read_all(log: &KafkaLog, topic: &str) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for partition in 0..log.partitions(topic).await.expect("partitions") {
        let wm = log.watermarks(topic, partition).await.expect("watermarks");
        let mut offset = wm.low;
        while offset < wm.high {
            let got = log
                .read(topic, partition, offset, 1000)
                .await
                .expect("read");
            for r in &got {
                assert_eq!(r.offset, offset, "offsets of {topic}/{partition} are dense");
                offset += 1;
            }
            out.extend(got);
        }
    }
    out
}

/// Runs `fut`, checks it answered `Unavailable`, and that it did so within `limit`.
async fn unavailable_within<T: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, LogError>>,
) {
    let started = Instant::now();
    match fut.await {
        Err(LogError::Unavailable(_)) => {}
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took < limit, "{what}: unavailable only after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_is_unavailable_and_loses_nothing_acknowledged() {
    let topic = "down";
    let cluster = mock(1, topic, 3, 1);
    let log = log_with(&cluster, |c| {
        c.delivery_timeout = Duration::from_secs(2);
        c.request_timeout = Duration::from_secs(2);
    });
    let mut ledger = Ledger::default();
    bounded(Duration::from_secs(20), "test", async {
        ledger
            .append(&log, topic, batch("k", 5, 0..20, 0))
            .await
            .expect("append while the cluster is up");

        cluster.broker_down(ALL_BROKERS).expect("broker down");
        // The delivery timeout, plus up to 1 s until librdkafka looks at the queue again (the
        // reconnect backoff cap), plus slack.
        let limit = Duration::from_secs(5);
        unavailable_within(
            limit,
            "append with every broker down",
            ledger.append(&log, topic, batch("k", 5, 20..30, 0)),
        )
        .await;
        unavailable_within(limit, "read", log.read(topic, 0, 0, 10)).await;
        unavailable_within(limit, "create topic", log.create_topic("other", 1)).await;

        cluster.broker_up(ALL_BROKERS).expect("broker up");
        // The producer reconnects with backoff; the first appends may still time out.
        ledger
            .append_retrying(&log, topic, 4, |a| batch("k", 5, 30..40, a))
            .await;
        ledger
            .append(&log, topic, batch("k", 5, 40..60, 0))
            .await
            .expect("append once recovered");
        ledger.check(&read_all(&log, topic).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_produce_errors_are_retried_without_duplicates() {
    let topic = "retriable";
    let cluster = mock(1, topic, 2, 1);
    let log = log(&cluster, Duration::from_secs(5));
    let mut ledger = Ledger::default();
    bounded(Duration::from_secs(20), "test", async {
        ledger
            .append(&log, topic, batch("k", 4, 0..10, 0))
            .await
            .expect("append before the faults");

        let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 5];
        cluster.request_errors(RDKafkaApiKey::Produce, &errors);
        let started = Instant::now();
        ledger
            .append(&log, topic, batch("k", 4, 10..30, 0))
            .await
            .expect("retriable errors are retried inside the producer");
        // Five refused requests cost the producer's growing retry backoffs (~0.7 s measured; a
        // clean append takes a few ms): the errors were really met, not skipped.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "errors not hit? took {took:?}"
        );

        let stored = read_all(&log, topic).await;
        assert_eq!(ledger.check(&stored), 0);
        assert_eq!(stored.len(), 30);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_produce_errors_are_unavailable_after_the_delivery_timeout() {
    let topic = "persistent";
    let cluster = mock(1, topic, 2, 1);
    let log = log(&cluster, Duration::from_secs(2));
    let mut ledger = Ledger::default();
    bounded(Duration::from_secs(20), "test", async {
        ledger
            .append(&log, topic, batch("k", 4, 0..10, 0))
            .await
            .expect("append before the faults");

        let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 1000];
        cluster.request_errors(RDKafkaApiKey::Produce, &errors);
        unavailable_within(
            Duration::from_secs(5),
            "append while every produce request fails",
            ledger.append(&log, topic, batch("k", 4, 10..20, 0)),
        )
        .await;

        cluster.clear_request_errors(RDKafkaApiKey::Produce);
        ledger
            .append_retrying(&log, topic, 3, |a| batch("k", 4, 20..30, a))
            .await;
        let stored = read_all(&log, topic).await;
        // The broker refused every try of the failed batch: none of it may be stored.
        assert_eq!(
            ledger.check(&stored),
            0,
            "a refused produce request was written"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_lose_nothing_and_keep_per_key_order() {
    let topic = "moving";
    let partitions = 4;
    let cluster = mock(3, topic, partitions, 3);
    let log = log(&cluster, Duration::from_secs(5));
    let mut all = Ledger::default();
    bounded(Duration::from_secs(30), "test", async {
        all.append(&log, topic, batch("w", 1, 0..1, 0))
            .await
            .expect("warm up");
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        // Two appenders with their own keys, 20-record batches: several records of a key are
        // in flight together, so a reordering retry would show.
        let appenders: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|prefix| {
                let (log, stop, acked) = (log.clone(), stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let mut ledger = Ledger::default();
                    let mut next = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let seqs = next..next + 20;
                        ledger
                            .append_retrying(&log, topic, 3, |a| batch(prefix, 5, seqs.clone(), a))
                            .await;
                        acked.fetch_add(20, Ordering::Relaxed);
                        next += 20;
                    }
                    ledger
                })
            })
            .collect();

        let metadata: BaseConsumer = log
            .group_consumer_config("metadata")
            .create()
            .expect("metadata client");
        for round in 0..8 {
            for p in 0..partitions {
                let leader = (round + p) % 3 + 1;
                cluster
                    .partition_leader(topic, p, Some(leader))
                    .expect("move leader");
            }
            // Appends go on after every move: the producer follows the new leaders.
            let before = acked.load(Ordering::Relaxed);
            let started = Instant::now();
            while acked.load(Ordering::Relaxed) < before + 200 {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "appends stalled after leader move {round}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        // The cluster really moved them: the last round's leaders are the current ones.
        let leaders: BTreeMap<i32, i32> = tokio::task::spawn_blocking(move || {
            let md = metadata
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .expect("metadata");
            md.topics()[0]
                .partitions()
                .iter()
                .map(|p| (p.id(), p.leader()))
                .collect()
        })
        .await
        .expect("metadata task");
        let expected: BTreeMap<i32, i32> = (0..partitions).map(|p| (p, (7 + p) % 3 + 1)).collect();
        assert_eq!(leaders, expected);

        for appender in appenders {
            let ledger = appender.await.expect("appender");
            all.acked.extend(ledger.acked);
            all.refused.extend(ledger.refused);
        }
        all.check(&read_all(&log, topic).await);

        // Per key, acknowledged records sit in one partition in append (seq) order.
        let mut by_key: BTreeMap<&Bytes, Vec<(u32, Position)>> = BTreeMap::new();
        for (r, p) in &all.acked {
            by_key
                .entry(&r.key)
                .or_default()
                .push((seq_of(&r.value), *p));
        }
        for (key, mut records) in by_key {
            records.sort();
            for pair in records.windows(2) {
                let ((s0, p0), (s1, p1)) = (pair[0], pair[1]);
                assert_eq!(p0.partition, p1.partition, "{key:?} changed partition");
                assert!(
                    p0.offset < p1.offset,
                    "{key:?}: seq {s0} at {p0}, seq {s1} at {p1}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_broker_is_unavailable_within_the_delivery_timeout() {
    let topic = "slow";
    let cluster = mock(1, topic, 2, 1);
    let log = log(&cluster, Duration::from_secs(2));
    let mut ledger = Ledger::default();
    bounded(Duration::from_secs(20), "test", async {
        ledger
            .append(&log, topic, batch("k", 4, 0..10, 0))
            .await
            .expect("append before the delay");

        cluster
            .broker_round_trip_time(ALL_BROKERS, Duration::from_secs(6))
            .expect("set rtt");
        unavailable_within(
            Duration::from_secs(5),
            "append to a broker slower than the delivery timeout",
            ledger.append(&log, topic, batch("k", 4, 10..20, 0)),
        )
        .await;

        cluster
            .broker_round_trip_time(ALL_BROKERS, Duration::ZERO)
            .expect("clear rtt");
        ledger
            .append_retrying(&log, topic, 5, |a| batch("k", 4, 20..30, a))
            .await;
        let stored = read_all(&log, topic).await;
        // The mock writes a batch before it delays the answer, so the refused batch is stored
        // (Kafka's "maybe written", here "written"): a client that retries it stores it twice,
        // which is why consumers dedupe on the action id. Recovery itself duplicated nothing.
        assert_eq!(
            ledger.check(&stored),
            10,
            "the refused batch was written once"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_fails_fast() {
    let topic = "full";
    let cluster = mock(1, topic, 2, 1);
    let log = log_with(&cluster, |c| {
        c.delivery_timeout = Duration::from_secs(5);
        c.queue_max_messages = 5;
    });
    let mut ledger = Ledger::default();
    // Failing fast means well before the 5 s delivery timeout: at the sixth record.
    let fast = Duration::from_secs(1);
    bounded(Duration::from_secs(20), "test", async {
        ledger
            .append(&log, topic, batch("k", 4, 0..5, 0))
            .await
            .expect("append that fits the queue");

        // Brokers down: nothing leaves the queue.
        cluster.broker_down(ALL_BROKERS).expect("broker down");
        unavailable_within(
            fast,
            "append of 100 records into a 5-record queue, brokers down",
            ledger.append(&log, topic, batch("k", 4, 100..200, 0)),
        )
        .await;
        cluster.broker_up(ALL_BROKERS).expect("broker up");
        // The five records queued before the refusal drain once the producer reconnects (or
        // time out); until then the queue stays full. Clients retry after `Retry-After`.
        ledger
            .append_retrying(&log, topic, 30, |a| batch("k", 4, 200..201, a))
            .await;

        // A slow broker holds records in flight, and in-flight records count against the
        // queue just the same.
        cluster
            .broker_round_trip_time(ALL_BROKERS, Duration::from_secs(3))
            .expect("set rtt");
        unavailable_within(
            fast,
            "append of 100 records into a 5-record queue, broker slow",
            ledger.append(&log, topic, batch("k", 4, 300..400, 0)),
        )
        .await;
        cluster
            .broker_round_trip_time(ALL_BROKERS, Duration::ZERO)
            .expect("clear rtt");
        ledger
            .append_retrying(&log, topic, 30, |a| batch("k", 4, 400..405, a))
            .await;

        let stored = read_all(&log, topic).await;
        ledger.check(&stored);
        // A refused append queued at most the 5 records that fit before the queue was full
        // (in input order); none of the rest may ever be written.
        let stored: HashSet<&Bytes> = stored.iter().map(|r| &r.value).collect();
        for batch in &ledger.refused {
            for (i, value) in batch.iter().enumerate().skip(5) {
                assert!(
                    !stored.contains(value),
                    "record {i} of a refused append landed"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stored_without_an_offset_is_not_acknowledged() {
    // A resent batch a broker already had is answered DUPLICATE_SEQUENCE_NUMBER, which
    // librdkafka reports as delivered at offset -1. There is no position to return for it.
    let topic = "dupseq";
    let cluster = mock(1, topic, 1, 1);
    let log = log(&cluster, Duration::from_secs(5));
    let mut ledger = Ledger::default();
    bounded(Duration::from_secs(20), "test", async {
        ledger
            .append(&log, topic, batch("k", 1, 0..3, 0))
            .await
            .expect("append before the fault");
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER],
        );
        unavailable_within(
            Duration::from_secs(4),
            "append answered DUPLICATE_SEQUENCE_NUMBER",
            ledger.append(&log, topic, batch("k", 1, 3..4, 0)),
        )
        .await;
        ledger
            .append(&log, topic, batch("k", 1, 4..6, 0))
            .await
            .expect("append after the fault");
        let stored = read_all(&log, topic).await;
        ledger.check(&stored);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_replaces_the_producer() {
    // An out-of-order sequence is fatal to an idempotent producer: librdkafka refuses every
    // later record of it. The log replaces it with a new producer: the append that met the
    // error is refused as retryable, and the retry goes through.
    let topic = "fatal";
    let cluster = mock(1, topic, 1, 1);
    let log = log(&cluster, Duration::from_secs(5));
    let mut ledger = Ledger::default();
    bounded(Duration::from_secs(20), "test", async {
        ledger
            .append(&log, topic, batch("k", 1, 0..3, 0))
            .await
            .expect("append before the fault");
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
        );
        let got = ledger.append(&log, topic, batch("k", 1, 3..4, 0)).await;
        assert!(
            matches!(&got, Err(e @ LogError::Unavailable(_)) if e.is_retryable()),
            "the append that met the fatal error: {got:?}"
        );
        for seq in 4..6 {
            ledger
                .append(&log, topic, batch("k", 1, seq..seq + 1, 0))
                .await
                .unwrap_or_else(|e| panic!("append {seq} through the new producer: {e}"));
        }
        let stored = read_all(&log, topic).await;
        ledger.check(&stored);
    })
    .await;
}
