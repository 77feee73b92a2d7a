//! The Kafka backend of the [`Log`]: librdkafka through `rdkafka`, for a real cluster.
//!
//! - **Append** goes through one idempotent producer (`enable.idempotence`, `acks=all`, lz4,
//!   a short linger so concurrent appends share a request). A record's partition is chosen here
//!   with the same murmur2 partitioner the embedded log uses, so a key lands in the same
//!   partition on both backends. `append` answers only after every record's delivery report
//!   succeeded; a full producer queue, an unreachable broker or a delivery timeout is
//!   [`LogError::Unavailable`] (ingest answers 503 with `Retry-After`). A batch that fails part
//!   way may have landed in part: Kafka has no multi-partition atomic append without
//!   transactions, and consumers dedupe on the action id.
//! - **Read** keeps one assign-only consumer per topic, each partition read so far assigned to
//!   it with its own queue (librdkafka's partition-queue split), as a buffered cursor per
//!   partition: the consumer keeps fetching ahead for all of them in one request per broker,
//!   sequential reads are served from what it fetched, a read elsewhere seeks.
//!   [`Log::watermarks_hint`] answers from those fetched records without a round trip (the
//!   stream job's steps use it); reads never pass the high watermark, which under `acks=all`
//!   only covers replicated records.
//! - **Fatal producer errors** (a sequence gap, a fenced producer): the producer is replaced;
//!   the append that met the error fails as `Unavailable`, its retry goes through the new one.
//! - **Consumer-group positions** are committed and fetched with a consumer of that group that
//!   never joins it (Kafka's "simple consumer" commit), so Kafka tooling shows the jobs' lag.
//!   The jobs' authoritative positions live in their state stores (DESIGN invariant 3).
//! - **Group membership** ([`Log::join_group`]): a consumer subscribed to the topic with the
//!   cooperative-sticky assignor, so a rebalance moves only the partitions that change owner.
//!   It takes part in the group protocol only: its partitions stay paused (the job reads
//!   through the partition readers above), a thread polls it to serve rebalance callbacks, and
//!   each rebalance publishes the member's new assignment. Its commits are the group's commits.
//!
//! Blocking librdkafka calls run on tokio's blocking pool.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{
    Assignment, GroupMember, Log, LogError, Position, Record, StoredRecord, Watermarks,
    partition_for_key,
};

/// How to reach and use a Kafka cluster.
#[derive(Debug, Clone)]
pub struct KafkaLogConfig {
    /// `host:port,host:port`.
    pub bootstrap_servers: String,
    /// Replication factor of topics this log creates.
    pub replication_factor: i32,
    /// Producer linger: how long a record waits for others to share its request.
    pub linger: Duration,
    /// How long a record may wait for its delivery report before the append fails.
    pub delivery_timeout: Duration,
    /// Timeout of metadata, watermark and group-offset requests.
    pub request_timeout: Duration,
    /// Most records the producer queues before appends fail fast as unavailable.
    pub queue_max_messages: u32,
    /// Largest record (key + value + headers) the log accepts.
    pub max_record_bytes: usize,
    /// `compression.type` of the producer.
    pub compression: String,
    /// Most records in one produce batch (`batch.num.messages`). Tests against tansu 0.6 set
    /// 1: that broker reports a partition's high watermark as its last batch's base offset + 1,
    /// which is right only for one-record batches.
    pub batch_max_records: u32,
    /// How long a consumer-group member may go without a heartbeat before the group moves its
    /// partitions to the other members (`session.timeout.ms`).
    pub session_timeout: Duration,
    /// Longest a fetch may wait at the broker for records (`fetch.wait.max.ms`). A Kafka broker
    /// answers a fetch as soon as records arrive, so this only bounds idle round trips. tansu
    /// 0.6 polls its storage during the wait instead, so a new record reaches a consumer up
    /// to one wait late: runs against it set a few milliseconds (docs/kafka.md).
    pub fetch_wait: Duration,
    /// Further librdkafka settings, applied last to every client (e.g. `security.protocol`).
    pub extra: Vec<(String, String)>,
}

impl KafkaLogConfig {
    /// Defaults for a cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            replication_factor: 1,
            linger: Duration::from_millis(2),
            delivery_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            queue_max_messages: 100_000,
            max_record_bytes: 1 << 20,
            compression: "lz4".into(),
            batch_max_records: 10_000,
            session_timeout: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(50),
            extra: Vec::new(),
        }
    }

    /// Parses `kafka://host:port[,host:port…][?setting=value&…]`; settings: `replication_factor`,
    /// `linger_ms`, `delivery_timeout_ms`, `request_timeout_ms`, `compression`,
    /// `batch_max_records`, `session_timeout_ms`, `fetch_wait_ms`.
    pub fn from_url(url: &str) -> Result<Self, LogError> {
        let bad = |why: &str| LogError::InvalidConfig(format!("Kafka URL `{url}`: {why}"));
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| bad("expected kafka://host:port[,host:port…]"))?;
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let hosts = hosts.trim_end_matches('/');
        if hosts.is_empty()
            || hosts.split(',').any(|h| {
                h.rsplit_once(':')
                    .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            })
        {
            return Err(bad("every broker needs host:port"));
        }
        let mut config = Self::new(hosts);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("query is key=value"))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| bad(&format!("{k} is a number")))
            };
            match k {
                "replication_factor" => {
                    config.replication_factor = num(v)?.clamp(1, i32::MAX as u64) as i32
                }
                "linger_ms" => config.linger = Duration::from_millis(num(v)?),
                "delivery_timeout_ms" => config.delivery_timeout = Duration::from_millis(num(v)?),
                "request_timeout_ms" => config.request_timeout = Duration::from_millis(num(v)?),
                "compression" => config.compression = v.to_owned(),
                "batch_max_records" => {
                    config.batch_max_records = num(v)?.clamp(1, 1_000_000) as u32
                }
                "session_timeout_ms" => {
                    config.session_timeout = Duration::from_millis(num(v)?.max(1_000))
                }
                // 0 would make tansu answer every fetch empty without looking.
                "fetch_wait_ms" => config.fetch_wait = Duration::from_millis(num(v)?.max(1)),
                other => return Err(bad(&format!("unknown setting `{other}`"))),
            }
        }
        Ok(config)
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "philo")
            .set(
                "socket.timeout.ms",
                self.request_timeout.as_millis().max(10).to_string(),
            )
            // Topics are created explicitly; a typo must not create one.
            .set("allow.auto.create.topics", "false")
            // A broker thread waiting to reconnect neither reconnects nor times out its queued
            // records until the wait ends; librdkafka's 10 s cap let an append with every
            // broker down answer up to 10 s after its delivery timeout. 1 s is Java's default.
            .set("reconnect.backoff.max.ms", "1000");
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// A [`Log`] on a Kafka cluster. See the module docs. Cheap to clone: clones share clients.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaLogConfig,
    /// Replaced by a new one after a fatal error (see [`Inner::produce_error`]).
    producer: RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// Partition counts of topics seen to exist.
    topics: RwLock<HashMap<String, u32>>,
    readers: Mutex<HashMap<(String, u32), SharedReader>>,
    /// The consumer of each topic's partition readers.
    topic_consumers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap_servers", &self.inner.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

type SharedReader = Arc<Mutex<Reader>>;

/// Most records a reader buffers ahead of its caller.
const READ_AHEAD: usize = 16_384;

/// One partition's cursor: its queue on the topic's consumer, with the records it fetched ahead.
struct Reader {
    /// The topic's consumer, shared by its partitions' readers.
    consumer: Arc<BaseConsumer>,
    /// This partition's records, split from the consumer's queue (`None`: not assigned yet).
    queue: Option<PartitionQueue<DefaultConsumerContext>>,
    /// The offset the consumer delivers next (`None`: not positioned).
    fetched: Option<u64>,
    /// Records fetched but not yet read, consecutive, ending just before `fetched`.
    buffer: VecDeque<StoredRecord>,
    /// The highest high watermark seen for this partition: offsets below it exist (or were
    /// dropped by retention, which the fetch reports), so reading there needs no query first.
    high_seen: u64,
    /// The low watermark of the last query.
    low_seen: u64,
}

impl Reader {
    fn reset(&mut self) {
        self.fetched = None;
        self.buffer.clear();
    }

    /// Positions the cursor at `offset`: within what is buffered, or by seeking the partition
    /// (assigning it first, or again when a seek is refused, as after an offset-out-of-range
    /// error stopped its fetching).
    fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<(), LogError> {
        let start = self.buffer.front().map(|r| r.offset).or(self.fetched);
        if let (Some(start), Some(end)) = (start, self.fetched)
            && (start..=end).contains(&offset)
        {
            while self.buffer.front().is_some_and(|r| r.offset < offset) {
                self.buffer.pop_front();
            }
            return Ok(());
        }
        self.reset();
        let at = Offset::Offset(offset as i64);
        // A seek bumps the partition's fetch version: records of earlier fetches still queued
        // are dropped by librdkafka when polled.
        let sought = self.queue.is_some()
            && self
                .consumer
                .seek(topic, partition as i32, at, timeout)
                .is_ok();
        if !sought {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition as i32);
            if self.queue.take().is_some() {
                self.consumer
                    .incremental_unassign(&tpl)
                    .map_err(|e| kafka("unassign", e))?;
            }
            // Split before assigning: the split marks the partition's queue as the
            // application's, so starting to fetch does not forward it to the consumer's queue.
            let queue = self
                .consumer
                .split_partition_queue(topic, partition as i32)
                .ok_or_else(|| LogError::Storage(format!("no queue for {topic}/{partition}")))?;
            tpl.set_partition_offset(topic, partition as i32, at)
                .map_err(|e| kafka("assign", e))?;
            self.consumer
                .incremental_assign(&tpl)
                .map_err(|e| kafka("assign", e))?;
            self.queue = Some(queue);
        }
        self.fetched = Some(offset);
        Ok(())
    }

    /// Serves the consumer's own queue (errors not tied to a partition, callbacks), which
    /// nothing else polls: the records are on the partitions' queues.
    fn serve_consumer(&self) {
        while let Some(event) = self.consumer.poll(Duration::ZERO) {
            if let Err(e) = event {
                tracing::debug!(error = %e, "Kafka reader");
            }
        }
    }

    /// Moves what the consumer has already fetched into the buffer, without waiting.
    fn drain(&mut self, partition: u32) {
        self.serve_consumer();
        let Some(queue) = &self.queue else {
            return;
        };
        while self.buffer.len() < READ_AHEAD {
            match queue.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    let at = m.offset() as u64;
                    if self.fetched.is_some_and(|f| at < f) {
                        continue;
                    }
                    self.fetched = Some(at + 1);
                    self.buffer.push_back(stored(partition, &m));
                }
                // Errors are reports here; a read that needs the records sees them again.
                Some(Err(_)) => continue,
                None => break,
            }
        }
    }
}

impl KafkaLog {
    /// Connects clients (lazily: librdkafka connects on first use).
    pub fn connect(config: KafkaLogConfig) -> Result<Self, LogError> {
        let producer = new_producer(&config)?;
        let admin: AdminClient<DefaultClientContext> = config
            .finish(config.client())
            .create()
            .map_err(|e| kafka("create admin client", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer: RwLock::new(producer),
                admin,
                topics: RwLock::default(),
                readers: Mutex::default(),
                topic_consumers: Mutex::default(),
                groups: Mutex::default(),
            }),
        })
    }

    /// Connects to the cluster named by a `kafka://` URL.
    pub fn from_url(url: &str) -> Result<Self, LogError> {
        Self::connect(KafkaLogConfig::from_url(url)?)
    }

    /// The bootstrap servers this log talks to.
    pub fn bootstrap_servers(&self) -> &str {
        &self.inner.config.bootstrap_servers
    }

    /// Waits up to `timeout` for the cluster to answer a metadata request.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), LogError> {
        let inner = self.inner.clone();
        blocking(move || {
            inner
                .producer()
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|e| kafka("metadata", e))
        })
        .await
    }

    /// A consumer of `group` configured like this log's own (for group members).
    pub fn group_consumer_config(&self, group: &str) -> ClientConfig {
        self.inner.consumer_config(group)
    }
}

impl Inner {
    fn producer(&self) -> FutureProducer {
        self.producer.read().expect("producer lock").clone()
    }

    /// Maps a produce error of `producer`. After a fatal error (the idempotent producer found a
    /// sequence gap, or the broker fenced it) librdkafka refuses every record of that producer
    /// for good: it is replaced by a new one (a new producer id), so the append that saw the
    /// error fails as `Unavailable` and a retry goes through the new producer.
    fn produce_error(&self, producer: &FutureProducer, what: &str, e: KafkaError) -> LogError {
        // A fenced producer (the broker saw a newer epoch for its id, e.g. after librdkafka
        // bumped the epoch past timed-out batches) is stuck too, even when librdkafka does not
        // raise it as fatal for a non-transactional producer.
        let fenced = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
        );
        let Some((code, why)) = producer
            .client()
            .fatal_error()
            .or_else(|| fenced.then(|| (RDKafkaErrorCode::ProducerFenced, "fenced".to_owned())))
        else {
            return kafka(what, e);
        };
        let mut current = self.producer.write().expect("producer lock");
        // Only the first caller that sees this producer's failure replaces it.
        if current.client().native_ptr() == producer.client().native_ptr() {
            match new_producer(&self.config) {
                Ok(fresh) => {
                    tracing::warn!(%code, why, "the Kafka producer failed fatally; replaced it");
                    *current = fresh;
                }
                Err(err) => {
                    return LogError::Storage(format!(
                        "{what}: the producer failed ({code}: {why}) and a new one could not be made: {err}"
                    ));
                }
            }
        }
        LogError::Unavailable(format!(
            "{what}: the producer failed ({code}: {why}); retry with the new one"
        ))
    }

    fn consumer(&self, group: &str) -> Result<BaseConsumer, LogError> {
        self.consumer_config(group)
            .create()
            .map_err(|e| kafka("create consumer", e))
    }

    fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.config.client();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            // Bounded prefetch, per partition (the readers split the partitions' queues).
            .set("queued.max.messages.kbytes", "8192")
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait.as_millis().max(1).to_string(),
            );
        self.config.finish(c)
    }

    /// Partition count of `topic`, from the cache or the cluster.
    fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        if let Some(n) = self.topics.read().expect("topics lock").get(topic) {
            return Ok(*n);
        }
        let metadata = self
            .producer()
            .client()
            .fetch_metadata(Some(topic), self.config.request_timeout)
            .map_err(|e| kafka("metadata", e))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| LogError::TopicNotFound(topic.to_owned()))?;
        match t.error() {
            None if !t.partitions().is_empty() => {
                let n = t.partitions().len() as u32;
                self.topics
                    .write()
                    .expect("topics lock")
                    .insert(topic.to_owned(), n);
                Ok(n)
            }
            None => Err(LogError::TopicNotFound(topic.to_owned())),
            Some(code) => match RDKafkaErrorCode::from(code) {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    Err(LogError::TopicNotFound(topic.to_owned()))
                }
                other => Err(unavailable("metadata", other)),
            },
        }
    }

    fn check_partition(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        let partitions = self.partition_count(topic)?;
        if partition >= partitions {
            return Err(LogError::PartitionOutOfRange {
                topic: topic.to_owned(),
                partition,
                partitions,
            });
        }
        Ok(())
    }

    fn reader(&self, topic: &str, partition: u32) -> Result<SharedReader, LogError> {
        let key = (topic.to_owned(), partition);
        let mut readers = self.readers.lock().expect("readers lock");
        if let Some(r) = readers.get(&key) {
            return Ok(r.clone());
        }
        let consumer = {
            let mut consumers = self.topic_consumers.lock().expect("topic consumers lock");
            match consumers.get(topic) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(self.consumer("philo-log-reader")?);
                    consumers.insert(topic.to_owned(), c.clone());
                    c
                }
            }
        };
        let reader = Arc::new(Mutex::new(Reader {
            consumer,
            queue: None,
            fetched: None,
            buffer: VecDeque::new(),
            high_seen: 0,
            low_seen: 0,
        }));
        readers.insert(key, reader.clone());
        Ok(reader)
    }

    fn group(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut groups = self.groups.lock().expect("groups lock");
        if let Some(c) = groups.get(group) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.consumer(group)?);
        groups.insert(group.to_owned(), c.clone());
        Ok(c)
    }

    fn watermarks_blocking(&self, topic: &str, partition: u32) -> Result<Watermarks, LogError> {
        self.check_partition(topic, partition)?;
        let (low, high) = self
            .producer()
            .client()
            .fetch_watermarks(topic, partition as i32, self.config.request_timeout)
            .map_err(|e| kafka("watermarks", e))?;
        Ok(Watermarks {
            low: low.max(0) as u64,
            high: high.max(0) as u64,
        })
    }

    /// Every partition's watermarks in two `ListOffsets` requests (latest, then earliest, for
    /// all partitions at once) rather than two per partition. A partition answered with
    /// something other than an offset is asked on its own.
    fn watermarks_all_blocking(&self, topic: &str) -> Result<Vec<Watermarks>, LogError> {
        let partitions = self.partition_count(topic)?;
        let consumer = self.group("philo-log-watermarks")?;
        let ask = |bound: Offset| -> Result<Vec<Option<u64>>, LogError> {
            let mut tpl = TopicPartitionList::with_capacity(partitions as usize);
            for p in 0..partitions {
                tpl.add_partition_offset(topic, p as i32, bound)
                    .map_err(|e| kafka("watermarks", e))?;
            }
            let answered = consumer
                .offsets_for_times(tpl, self.config.request_timeout)
                .map_err(|e| kafka("watermarks", e))?;
            let mut out = vec![None; partitions as usize];
            for e in answered.elements_for_topic(topic) {
                if let (Offset::Offset(o), Ok(()), Some(slot)) = (
                    e.offset(),
                    e.error(),
                    out.get_mut(e.partition().max(0) as usize),
                ) {
                    *slot = Some(o.max(0) as u64);
                }
            }
            Ok(out)
        };
        let high = ask(Offset::End)?;
        let low = ask(Offset::Beginning)?;
        (0..partitions)
            .map(|p| match (low[p as usize], high[p as usize]) {
                (Some(low), Some(high)) => Ok(Watermarks { low, high }),
                _ => self.watermarks_blocking(topic, p),
            })
            .collect()
    }

    /// Tells the partition's reader (if it has one) a queried watermark, so a read that
    /// follows (a live step queries, then reads) needs no second round trip. Never called
    /// with the reader's lock held.
    fn saw_watermarks(&self, topic: &str, partition: u32, wm: Watermarks) {
        let reader = self
            .readers
            .lock()
            .expect("readers lock")
            .get(&(topic.to_owned(), partition))
            .cloned();
        if let Some(reader) = reader {
            let mut reader = reader.lock().expect("reader lock");
            reader.high_seen = reader.high_seen.max(wm.high);
            reader.low_seen = reader.low_seen.max(wm.low);
        }
    }

    /// A lower bound of the high watermark, from the partition's reader alone when it is
    /// positioned (records it has buffered prove they exist), without a round trip; `None`
    /// when only a query can tell.
    fn watermarks_hint(&self, topic: &str, partition: u32) -> Option<Watermarks> {
        let reader = self
            .readers
            .lock()
            .expect("readers lock")
            .get(&(topic.to_owned(), partition))
            .cloned()?;
        let mut reader = reader.lock().expect("reader lock");
        let fetched = reader.fetched?;
        reader.drain(partition);
        Some(Watermarks {
            low: reader.low_seen,
            high: reader.high_seen.max(reader.fetched.unwrap_or(fetched)),
        })
    }

    fn read_blocking(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let reader = self.reader(topic, partition)?;
        let mut guard = reader.lock().expect("reader lock");
        let reader = &mut *guard;
        // Reads below a high watermark seen before (or records already fetched) skip the
        // watermark query, a round trip to the partition leader.
        let known = reader.high_seen.max(reader.fetched.unwrap_or(0));
        let high = if offset < known {
            self.check_partition(topic, partition)?;
            known
        } else {
            let wm = self.watermarks_blocking(topic, partition)?;
            if offset < wm.low || offset > wm.high {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    low: wm.low,
                    high: wm.high,
                });
            }
            reader.high_seen = reader.high_seen.max(wm.high);
            reader.low_seen = wm.low;
            wm.high
        };
        let want = max_records.min((high - offset) as usize);
        if want == 0 {
            return Ok(Vec::new());
        }
        reader.seek(topic, partition, offset, self.config.request_timeout)?;
        reader.serve_consumer();
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            match reader.buffer.pop_front() {
                Some(r) => out.push(r),
                None => break,
            }
        }
        let deadline = Instant::now() + self.config.request_timeout;
        let mut last_error = None;
        while out.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(queue) = &reader.queue else {
                break;
            };
            match queue.poll(left.min(Duration::from_millis(100))) {
                None => continue,
                Some(Err(e)) => {
                    // With `auto.offset.reset=error` librdkafka reports an offset out of range
                    // as a failed automatic reset.
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset
                        )
                    ) {
                        // Transport and leadership errors are reports: librdkafka keeps
                        // fetching on its own. Keep polling until the deadline; if nothing
                        // comes, this is what the read failed with.
                        last_error = Some(e);
                        continue;
                    }
                    // Retention dropped the offset since its watermark was seen; the consumer's
                    // position is unknown now: seek on the next read.
                    reader.reset();
                    let wm = self.watermarks_blocking(topic, partition)?;
                    return Err(LogError::OffsetOutOfRange {
                        requested: offset,
                        low: wm.low,
                        high: wm.high,
                    });
                }
                Some(Ok(m)) => {
                    let at = m.offset() as u64;
                    if reader.fetched.is_some_and(|f| at < f) {
                        continue; // an older fetch of this consumer
                    }
                    reader.fetched = Some(at + 1);
                    out.push(stored(partition, &m));
                }
            }
        }
        if out.is_empty() {
            reader.reset();
            if let Some(e) = last_error {
                return Err(kafka("fetch", e));
            }
            return Err(LogError::Unavailable(format!(
                "no records fetched from {topic}/{partition} at {offset} within {:?}",
                self.config.request_timeout
            )));
        }
        Ok(out)
    }
}

/// The idempotent, `acks=all` producer of a log.
fn new_producer(config: &KafkaLogConfig) -> Result<FutureProducer, LogError> {
    let mut p = config.client();
    p.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &config.compression)
        .set("linger.ms", config.linger.as_millis().to_string())
        .set("batch.num.messages", config.batch_max_records.to_string())
        .set(
            "message.timeout.ms",
            config.delivery_timeout.as_millis().max(1).to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            config.queue_max_messages.to_string(),
        )
        .set(
            "message.max.bytes",
            (config.max_record_bytes + 64 * 1024).to_string(),
        );
    config
        .finish(p)
        .create()
        .map_err(|e| kafka("create producer", e))
}

fn stored(partition: u32, m: &rdkafka::message::BorrowedMessage<'_>) -> StoredRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        super::header_name(h.key),
                        Bytes::copy_from_slice(h.value.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    StoredRecord {
        partition,
        offset: m.offset() as u64,
        key: Bytes::copy_from_slice(m.key().unwrap_or_default()),
        value: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
        timestamp_ms: m.timestamp().to_millis().unwrap_or_default(),
        headers,
    }
}

fn record_size(r: &Record) -> usize {
    r.key.len()
        + r.value.len()
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Maps a librdkafka error to the log's errors: transient conditions are `Unavailable`.
fn kafka(what: &str, e: KafkaError) -> LogError {
    // `rdkafka_error_code` leaves out the code of a failed admin operation (a timeout, say).
    let code = match &e {
        KafkaError::AdminOp(code) => Some(*code),
        _ => e.rdkafka_error_code(),
    };
    match code {
        Some(code) => unavailable_or(what, code),
        None => LogError::Storage(format!("{what}: {e}")),
    }
}

fn unavailable(what: &str, code: RDKafkaErrorCode) -> LogError {
    LogError::Unavailable(format!("{what}: {code}"))
}

fn unavailable_or(what: &str, code: RDKafkaErrorCode) -> LogError {
    use RDKafkaErrorCode as C;
    match code {
        C::UnknownTopicOrPartition | C::UnknownTopic => {
            LogError::TopicNotFound(format!("{what}: {code}"))
        }
        C::MessageSizeTooLarge | C::InvalidMessageSize => {
            LogError::Storage(format!("{what}: {code}"))
        }
        C::InvalidConfig
        | C::InvalidArgument
        | C::InvalidTopic
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed => LogError::Storage(format!("{what}: {code}")),
        // Everything else a cluster says is about its current state (queue full, timeouts,
        // transport, leadership, replicas): retrying later can succeed.
        _ => unavailable(what, code),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Storage(format!("blocking task: {e}")))?
}

#[async_trait]
impl Log for KafkaLog {
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        if !super::valid_topic(topic) || partitions == 0 || partitions > 10_000 {
            return Err(LogError::InvalidTopic(topic.to_owned()));
        }
        let inner = &self.inner;
        // Topics provisioned by operators (the usual case where ACLs deny CreateTopics) are only
        // checked.
        let existing = {
            let (inner, topic) = (inner.clone(), topic.to_owned());
            blocking(move || inner.partition_count(&topic)).await
        };
        match existing {
            Ok(existing) if existing == partitions => return Ok(()),
            Ok(existing) => {
                return Err(LogError::TopicMismatch {
                    topic: topic.to_owned(),
                    existing,
                    requested: partitions,
                });
            }
            Err(LogError::TopicNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let new = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(inner.config.replication_factor),
        );
        let opts = AdminOptions::new().operation_timeout(Some(inner.config.request_timeout));
        let results = inner
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| kafka("create topic", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(unavailable_or("create topic", code)),
            }
        }
        // Metadata may lag creation for a moment; ask until the topic shows up.
        let topic_name = topic.to_owned();
        let inner = inner.clone();
        let existing = blocking(move || {
            let deadline = Instant::now() + inner.config.request_timeout;
            loop {
                match inner.partition_count(&topic_name) {
                    Err(LogError::TopicNotFound(_)) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    other => return other,
                }
            }
        })
        .await?;
        if existing != partitions {
            return Err(LogError::TopicMismatch {
                topic: topic.to_owned(),
                existing,
                requested: partitions,
            });
        }
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        let (inner, topic) = (self.inner.clone(), topic.to_owned());
        blocking(move || inner.partition_count(&topic)).await
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let limit = inner.config.max_record_bytes;
        for r in &records {
            let size = record_size(r);
            if size > limit {
                return Err(LogError::RecordTooLarge { size, limit });
            }
        }
        let partitions = {
            let (inner, topic) = (inner.clone(), topic.to_owned());
            blocking(move || inner.partition_count(&topic)).await?
        };
        let producer = inner.producer();
        let mut pending = Vec::with_capacity(records.len());
        for r in &records {
            let partition = partition_for_key(&r.key, partitions);
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(&v[..]),
                });
            }
            let record = FutureRecord::to(topic)
                .partition(partition as i32)
                .key(&r.key[..])
                .payload(&r.value[..])
                .timestamp(r.timestamp_ms)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => {
                    // Queue full or producer fatal: what was queued before still gets
                    // delivered, but this append as a whole is refused.
                    return Err(inner.produce_error(&producer, "enqueue", e));
                }
            }
        }
        let mut positions = Vec::with_capacity(pending.len());
        let mut first_error = None;
        for delivery in futures::future::join_all(pending).await {
            match delivery {
                // A resent batch the broker answers DUPLICATE_SEQUENCE_NUMBER (it had it
                // already) is delivered without an offset (-1): stored, but there is no
                // position to hand out, so the append is refused like one that may have landed.
                Ok(Ok(d)) if d.offset < 0 => {
                    first_error.get_or_insert(LogError::Unavailable(format!(
                        "delivery: {topic}/{} stored at an unknown offset",
                        d.partition
                    )));
                }
                Ok(Ok(d)) => positions.push(Position {
                    partition: d.partition as u32,
                    offset: d.offset as u64,
                }),
                Ok(Err((e, _))) => {
                    first_error.get_or_insert(inner.produce_error(&producer, "delivery", e));
                }
                Err(_) => {
                    first_error.get_or_insert(LogError::Closed);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(positions),
        }
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let (inner, topic) = (self.inner.clone(), topic.to_owned());
        blocking(move || inner.read_blocking(&topic, partition, offset, max_records)).await
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> Result<Watermarks, LogError> {
        let (inner, topic) = (self.inner.clone(), topic.to_owned());
        blocking(move || {
            let wm = inner.watermarks_blocking(&topic, partition)?;
            inner.saw_watermarks(&topic, partition, wm);
            Ok(wm)
        })
        .await
    }

    fn consistent_sample(&self) -> bool {
        false
    }

    async fn watermarks_all(&self, topic: &str) -> Result<Vec<Watermarks>, LogError> {
        let (inner, topic) = (self.inner.clone(), topic.to_owned());
        blocking(move || {
            let all = inner.watermarks_all_blocking(&topic)?;
            for (p, wm) in all.iter().enumerate() {
                inner.saw_watermarks(&topic, p as u32, *wm);
            }
            Ok(all)
        })
        .await
    }

    async fn watermarks_hint(&self, topic: &str, partition: u32) -> Result<Watermarks, LogError> {
        let (inner, topic) = (self.inner.clone(), topic.to_owned());
        blocking(move || match inner.watermarks_hint(&topic, partition) {
            Some(wm) => Ok(wm),
            None => inner.watermarks_blocking(&topic, partition),
        })
        .await
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        positions: &[Position],
    ) -> Result<(), LogError> {
        if positions.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let (group, topic, positions) = (group.to_owned(), topic.to_owned(), positions.to_vec());
        blocking(move || {
            for p in &positions {
                inner.check_partition(&topic, p.partition)?;
            }
            let consumer = inner.group(&group)?;
            let mut tpl = TopicPartitionList::new();
            for p in &positions {
                tpl.add_partition_offset(
                    &topic,
                    p.partition as i32,
                    Offset::Offset(p.offset as i64),
                )
                .map_err(|e| kafka("commit", e))?;
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| kafka("commit", e))
        })
        .await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        let inner = self.inner.clone();
        let (group, topic) = (group.to_owned(), topic.to_owned());
        blocking(move || {
            inner.check_partition(&topic, partition)?;
            let consumer = inner.group(&group)?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition as i32);
            let got = consumer
                .committed_offsets(tpl, inner.config.request_timeout)
                .map_err(|e| kafka("committed offsets", e))?;
            let offset = got
                .find_partition(&topic, partition as i32)
                .map(|e| e.offset());
            Ok(match offset {
                Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
                _ => None,
            })
        })
        .await
    }

    async fn join_group(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Option<Arc<dyn GroupMember>>, LogError> {
        let inner = self.inner.clone();
        let (group, topic) = (group.to_owned(), topic.to_owned());
        let member = blocking(move || {
            inner.check_partition(&topic, 0)?;
            KafkaMember::join(&inner, &group, &topic)
        })
        .await?;
        Ok(Some(Arc::new(member)))
    }
}

/// Serves a member's rebalance callbacks: keeps its partitions paused and publishes them.
struct MemberContext {
    topic: String,
    group: String,
    assignment: tokio::sync::watch::Sender<Assignment>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            // The member reads nothing itself: fetching its partitions would only buffer
            // records the job reads through its partition readers anyway.
            Rebalance::Assign(tpl) => {
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!(group = %self.group, error = %e, "pausing assigned partitions failed");
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "consumer-group rebalance failed");
                return;
            }
        }
        let partitions = match consumer.assignment() {
            Ok(tpl) => tpl
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| u32::try_from(e.partition()).ok())
                .collect(),
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "reading the assignment failed");
                return;
            }
        };
        let next = Assignment {
            assigned: true,
            partitions,
        };
        tracing::info!(
            group = %self.group,
            topic = %self.topic,
            partitions = ?next.partitions,
            lost = consumer.assignment_lost(),
            "consumer-group assignment changed"
        );
        self.assignment.send_replace(next);
    }
}

/// A consumer-group member (see the module docs). Leaves the group when dropped.
struct KafkaMember {
    group: String,
    topic: String,
    consumer: Arc<BaseConsumer<MemberContext>>,
    assignment: tokio::sync::watch::Receiver<Assignment>,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaMember")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaMember {
    fn join(inner: &Inner, group: &str, topic: &str) -> Result<Self, LogError> {
        let (tx, rx) = tokio::sync::watch::channel(Assignment::default());
        let session = inner.config.session_timeout;
        let mut config = inner.config.client();
        config
            .set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (session.as_millis() / 10).max(100).to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Never used to read (paused), but an assigned partition without a committed
            // offset is positioned once; "error" would log a global error for each.
            .set("auto.offset.reset", "latest");
        let consumer: BaseConsumer<MemberContext> = inner
            .config
            .finish(config)
            .create_with_context(MemberContext {
                topic: topic.to_owned(),
                group: group.to_owned(),
                assignment: tx,
            })
            .map_err(|e| kafka("create group member", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka("subscribe", e))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("philo-group-member".into())
                .spawn(move || {
                    // Rebalance callbacks run inside poll; records never arrive (paused).
                    while !stop.load(Ordering::Acquire) {
                        let _ = consumer.poll(Duration::from_millis(50));
                    }
                })
                .map_err(|e| LogError::Storage(format!("spawning the group poller: {e}")))?
        };
        Ok(Self {
            group: group.to_owned(),
            topic: topic.to_owned(),
            consumer,
            assignment: rx,
            stop,
            poller: Some(poller),
        })
    }
}

#[async_trait]
impl GroupMember for KafkaMember {
    fn assignment(&self) -> tokio::sync::watch::Receiver<Assignment> {
        self.assignment.clone()
    }

    async fn commit(&self, positions: &[Position]) -> Result<(), LogError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for p in positions {
            tpl.add_partition_offset(
                &self.topic,
                p.partition as i32,
                Offset::Offset(p.offset as i64),
            )
            .map_err(|e| kafka("commit", e))?;
        }
        let consumer = self.consumer.clone();
        blocking(move || {
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| kafka("commit", e))
        })
        .await
    }
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.poller.take() {
            let _ = t.join();
        }
        // Dropping the last handle closes the consumer, which leaves the group at once (its
        // partitions move without waiting for the session timeout).
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c = KafkaLogConfig::from_url("kafka://a:9092,b:9093?replication_factor=3&linger_ms=7")
            .unwrap();
        assert_eq!(c.bootstrap_servers, "a:9092,b:9093");
        assert_eq!(c.replication_factor, 3);
        assert_eq!(c.linger, Duration::from_millis(7));
        assert_eq!(c.fetch_wait, Duration::from_millis(50));
        let c = KafkaLogConfig::from_url("kafka://a:9092?fetch_wait_ms=5").unwrap();
        assert_eq!(c.fetch_wait, Duration::from_millis(5));
        let c = KafkaLogConfig::from_url("kafka://a:9092?fetch_wait_ms=0").unwrap();
        assert_eq!(
            c.fetch_wait,
            Duration::from_millis(1),
            "0 is raised to 1 ms"
        );
        for bad in [
            "http://a:9092",
            "kafka://",
            "kafka://a",
            "kafka://a:x",
            "kafka://a:9092?nope=1",
            "kafka://a:9092?linger_ms=x",
        ] {
            assert!(
                KafkaLogConfig::from_url(bad).is_err(),
                "{bad} must be refused"
            );
        }
    }
}
