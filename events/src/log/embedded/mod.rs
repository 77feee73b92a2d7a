//! The embedded `Log` backend: durable on local disk, on the fjall LSM engine.
//!
//! Layout: the partitions are spread over `shards` fjall databases — shard 0 under `dir`, shard
//! `i` under `dir/shard-<i>`, partition `p` in shard `p % shards` — each with its own journal.
//! Shard 0 also holds the `meta` keyspace: topics, consumer-group positions and the shard count,
//! which is fixed when the log is created. Each partition is one keyspace whose keys are
//! `partition ++ offset` (see [`codec`]).
//!
//! Durability: each shard has one writer thread that takes append requests from a queue, gives
//! their records offsets, writes everything queued so far as one atomic batch and fsyncs its
//! journal once (group commit), and only then acknowledges every request in that batch and
//! raises the partitions' durable high watermarks. The shards' fsyncs overlap (fjall fsyncs a
//! journal under that journal's lock, so with one journal the next group cannot even be
//! written while the disk is busy), at the price of smaller groups (ADR 001, *Shards*).
//! Readers never see past a durable high watermark, so nothing un-fsync'd is ever consumed.
//! After a crash fjall's journal recovery drops a torn tail of each shard's journal; offsets
//! resume after the last record that survived.
//!
//! An append whose records all fall in one shard (every ingest request: its records share the
//! actor's key) is one atomic batch. One that spans shards is split, one atomic batch per shard,
//! and returns once all are durable; a crash or a storage error in between can leave some of the
//! shards' parts durable and not the others — as on Kafka, where partitions are written
//! independently.
//!
//! Retention: a background thread deletes, per partition, records older than `max_age` and the
//! oldest records while the partition holds more than `max_bytes_per_partition`.

mod codec;
mod retention;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::{mpsc, oneshot};

use super::{Log, LogError, Position, Record, StoredRecord, Watermarks, partition_for_key};
use retention::RetentionHandle;
use writer::{AppendRequest, Writer};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync (`fsync(2)`: data and all metadata) before acknowledging (the default; DESIGN
    /// invariant 1).
    Fsync,
    /// fdatasync before acknowledging: the data and the metadata needed to read it back (the
    /// file's size) are on disk, timestamps are not — as durable for the log as `fsync`, and
    /// what PostgreSQL's WAL uses on Linux by default.
    Fdatasync,
    /// Acknowledge once the batch is in the OS page cache. Survives a process crash, not a power
    /// loss. For throwaway environments only.
    Buffered,
}

/// Settings of the embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedLogConfig {
    /// Directory holding the log's files.
    pub dir: PathBuf,
    pub durability: Durability,
    /// Delete records older than this.
    pub max_age: Option<Duration>,
    /// Keep at most about this many bytes per partition.
    pub max_bytes_per_partition: Option<u64>,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Largest record accepted, in bytes (key + value + headers).
    pub max_record_bytes: usize,
    /// Most records written in one group commit.
    pub max_batch_records: usize,
    /// Append requests waiting for the writer before `append` waits (backpressure).
    pub queue_depth: usize,
    /// Block cache size in bytes.
    pub cache_bytes: u64,
    /// Memtable size per partition before it is flushed to a table (memory use scales with
    /// partitions × this).
    pub memtable_bytes: u64,
    /// Journals (each with a writer thread and its own fsyncs) the partitions are spread over.
    /// Fixed when the log is created: an existing log keeps its count. More than one overlaps
    /// fsyncs but makes each group commit smaller: on a 2-core VM two shards cut the p99 at
    /// moderate load and raised batch throughput, yet cost more CPU per single append (ADR 001,
    /// *Shards*), so the default is one.
    pub shards: usize,
}

impl EmbeddedLogConfig {
    /// Defaults for a log under `dir`: fsync, 7 days, 1 GiB per partition.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            durability: Durability::Fsync,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_bytes_per_partition: Some(1 << 30),
            retention_interval: Duration::from_secs(60),
            max_record_bytes: 1 << 20,
            max_batch_records: 16_384,
            queue_depth: 8_192,
            cache_bytes: 64 << 20,
            memtable_bytes: 8 << 20,
            shards: 1,
        }
    }
}

pub(crate) struct PartitionState {
    /// The shard (database, journal, writer) holding this partition: `partition % shards`.
    shard: usize,
    /// This partition's records. One keyspace per partition keeps every flushed table's key
    /// range disjoint from older ones, so the LSM tree never rewrites log data in compaction.
    keyspace: Keyspace,
    /// First retained offset.
    low: AtomicU64,
    /// One past the last durable offset: what readers may see.
    durable_high: AtomicU64,
    /// Running byte total of the partition (writer-owned; see `codec`).
    cum_bytes: AtomicU64,
    /// `cum_bytes` value just before the record at `low`.
    cum_at_low: AtomicU64,
}

pub(crate) struct TopicState {
    name: String,
    partitions: Vec<PartitionState>,
    /// Bumped after each group commit that made records of this topic durable, so consumers
    /// wake on new records instead of polling ([`Log::appends`]).
    appended: tokio::sync::watch::Sender<u64>,
}

struct Inner {
    /// One database per shard; shard 0 also holds `meta`.
    shards: Vec<Database>,
    meta: Keyspace,
    topics: RwLock<HashMap<String, Arc<TopicState>>>,
    fsyncs: Arc<AtomicU64>,
    config: EmbeddedLogConfig,
}

/// The embedded log. Cheap to clone; the writer threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    /// Each shard's writer queue.
    tx: Arc<[mpsc::Sender<AppendRequest>]>,
    _retention: Arc<RetentionHandle>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.inner.config.dir)
            .finish()
    }
}

const TOPIC_PREFIX: &[u8] = b"t\0";
const GROUP_PREFIX: &[u8] = b"g\0";
/// The shard count (u32 BE). A log written before shards existed has none: it is one shard.
const SHARDS_KEY: &[u8] = b"shards";

impl EmbeddedLog {
    /// Opens (recovering if needed) or creates the log under `config.dir`.
    pub fn open(config: EmbeddedLogConfig) -> Result<Self, LogError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| storage("create log dir", e))?;
        let first = open_shard(&config.dir, &config, config.shards.max(1))?;
        let meta = first
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(|e| storage("open meta", e))?;
        let shards = match meta
            .get(SHARDS_KEY)
            .map_err(|e| storage("read shards", e))?
        {
            Some(v) => u32::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| LogError::Storage("corrupt shard count".into()))?,
            ) as usize,
            // Topics but no count: a log from before shards, all in one journal.
            None if meta.prefix(TOPIC_PREFIX).next().is_some() => 1,
            None => {
                let n = config.shards.clamp(1, 64);
                meta.insert(SHARDS_KEY, (n as u32).to_be_bytes())
                    .map_err(|e| storage("record shards", e))?;
                first
                    .persist(PersistMode::SyncAll)
                    .map_err(|e| storage("persist shards", e))?;
                n
            }
        };
        if shards == 0 {
            return Err(LogError::Storage("corrupt shard count 0".into()));
        }
        if shards != config.shards {
            tracing::info!(
                shards,
                configured = config.shards,
                "the log keeps the shard count it was created with"
            );
        }
        // The other shards recover their journals side by side.
        let mut dbs = vec![first];
        let rest: Vec<Result<Database, LogError>> = std::thread::scope(|scope| {
            let opening: Vec<_> = (1..shards)
                .map(|i| {
                    let dir = config.dir.join(format!("shard-{i}"));
                    let config = &config;
                    scope.spawn(move || open_shard(&dir, config, shards))
                })
                .collect();
            opening
                .into_iter()
                .map(|h| h.join().expect("opening a shard panicked"))
                .collect()
        });
        for db in rest {
            dbs.push(db?);
        }
        let mut topics = HashMap::new();
        for kv in meta.prefix(TOPIC_PREFIX) {
            let (k, v) = kv.into_inner().map_err(|e| storage("read topics", e))?;
            let name = String::from_utf8_lossy(&k[TOPIC_PREFIX.len()..]).into_owned();
            let count = u32::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| LogError::Storage("corrupt topic entry".into()))?,
            );
            let state = recover_topic(&dbs, &name, count, config.memtable_bytes)?;
            topics.insert(name, Arc::new(state));
        }
        let fsyncs = Arc::new(AtomicU64::new(0));
        let mut tx = Vec::with_capacity(shards);
        for (i, db) in dbs.iter().enumerate() {
            let (sender, rx) = mpsc::channel(config.queue_depth.max(1));
            let writer = Writer {
                db: db.clone(),
                rx,
                durability: config.durability,
                max_batch_records: config.max_batch_records.max(1),
                fsyncs: fsyncs.clone(),
            };
            std::thread::Builder::new()
                .name(format!("philo-log-writer-{i}"))
                .spawn(move || writer.run())
                .map_err(|e| storage("spawn writer", e))?;
            tx.push(sender);
        }
        let inner = Arc::new(Inner {
            shards: dbs,
            meta,
            topics: RwLock::new(topics),
            fsyncs,
            config,
        });
        let retention = RetentionHandle::spawn(Arc::downgrade(&inner))?;
        Ok(Self {
            inner,
            tx: tx.into(),
            _retention: Arc::new(retention),
        })
    }

    /// How many journals the partitions are spread over (fixed when the log was created).
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// How many fsyncs the writers have done: with group commit, far fewer than appends.
    pub fn fsync_count(&self) -> u64 {
        self.inner.fsyncs.load(Ordering::Relaxed)
    }

    /// Runs retention once now (the background thread also runs it every `retention_interval`).
    /// Returns how many records were deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<u64, LogError> {
        self.inner.enforce_retention(now_ms)
    }

    /// Bytes the log's files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|db| db.disk_space().unwrap_or(0))
            .sum()
    }

    /// Queues records of one shard with its writer and waits until they are durable.
    async fn send(
        &self,
        shard: usize,
        topic: Arc<TopicState>,
        partitions: Vec<u32>,
        records: Vec<Record>,
    ) -> Result<Vec<Position>, LogError> {
        let (reply, rx) = oneshot::channel();
        self.tx[shard]
            .send(AppendRequest {
                topic,
                partitions,
                records,
                reply,
            })
            .await
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    fn topic(&self, topic: &str) -> Result<Arc<TopicState>, LogError> {
        self.inner
            .topics
            .read()
            .expect("topics lock")
            .get(topic)
            .cloned()
            .ok_or_else(|| LogError::TopicNotFound(topic.to_owned()))
    }

    fn partition(t: &TopicState, partition: u32) -> Result<&PartitionState, LogError> {
        t.partitions
            .get(partition as usize)
            .ok_or_else(|| LogError::PartitionOutOfRange {
                topic: t.name.clone(),
                partition,
                partitions: t.partitions.len() as u32,
            })
    }
}

fn storage(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("{what}: {e}"))
}

/// Opens one shard's database. The block cache is split between the shards.
fn open_shard(
    dir: &std::path::Path,
    config: &EmbeddedLogConfig,
    shards: usize,
) -> Result<Database, LogError> {
    // One background worker per shard: on a small machine more only compete with ingest, and
    // fjall's multi-worker pool re-queues compaction requests in a busy loop while one worker
    // is compacting (seen in `perf` as `worker_tick` + `flume::send`).
    Database::builder(dir)
        .cache_size((config.cache_bytes / shards as u64).max(4 << 20))
        .worker_threads(1)
        .open()
        .map_err(|e| storage("open log", e))
}

fn keyspace_name(topic: &str, partition: u32) -> String {
    format!("topic.{topic}.{partition}")
}

fn recover_topic(
    shards: &[Database],
    name: &str,
    count: u32,
    memtable_bytes: u64,
) -> Result<TopicState, LogError> {
    let mut partitions = Vec::with_capacity(count as usize);
    for p in 0..count {
        let shard = p as usize % shards.len();
        let keyspace = shards[shard]
            .keyspace(&keyspace_name(name, p), || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes.max(1 << 20))
            })
            .map_err(|e| storage("open partition", e))?;
        let range = codec::key(p, 0)..=codec::key(p, u64::MAX);
        let first = keyspace.range(range.clone()).next();
        let last = keyspace.range(range).next_back();
        let state = match (first, last) {
            (Some(first), Some(last)) => {
                let (fk, fv) = first.into_inner().map_err(|e| storage("recover", e))?;
                let (lk, lv) = last.into_inner().map_err(|e| storage("recover", e))?;
                let (_, low) = codec::decode_key(&fk)?;
                let (_, high) = codec::decode_key(&lk)?;
                let first_rec = codec::decode(p, low, Bytes::from_owner(fv.clone()))?;
                let first_size = codec::stored_size(&first_rec);
                let first_cum = codec::decode_meta(&fv)?.cum_bytes;
                let cum = codec::decode_meta(&lv)?.cum_bytes;
                PartitionState {
                    shard,
                    keyspace,
                    low: AtomicU64::new(low),
                    durable_high: AtomicU64::new(high + 1),
                    cum_bytes: AtomicU64::new(cum),
                    cum_at_low: AtomicU64::new(first_cum - first_size),
                }
            }
            _ => PartitionState {
                shard,
                keyspace,
                low: AtomicU64::new(0),
                durable_high: AtomicU64::new(0),
                cum_bytes: AtomicU64::new(0),
                cum_at_low: AtomicU64::new(0),
            },
        };
        partitions.push(state);
    }
    Ok(TopicState {
        name: name.to_owned(),
        partitions,
        appended: tokio::sync::watch::Sender::new(0),
    })
}

fn group_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(GROUP_PREFIX.len() + group.len() + topic.len() + 6);
    k.extend_from_slice(GROUP_PREFIX);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

#[async_trait]
impl Log for EmbeddedLog {
    fn appends(&self, topic: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.topic(topic).ok().map(|t| t.appended.subscribe())
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        if !super::valid_topic(topic) || partitions == 0 || partitions > 10_000 {
            return Err(LogError::InvalidTopic(topic.to_owned()));
        }
        let inner = self.inner.clone();
        let topic = topic.to_owned();
        blocking(move || {
            let mut topics = inner.topics.write().expect("topics lock");
            if let Some(t) = topics.get(&topic) {
                let existing = t.partitions.len() as u32;
                return if existing == partitions {
                    Ok(())
                } else {
                    Err(LogError::TopicMismatch {
                        topic,
                        existing,
                        requested: partitions,
                    })
                };
            }
            let state = recover_topic(
                &inner.shards,
                &topic,
                partitions,
                inner.config.memtable_bytes,
            )?;
            let mut key = TOPIC_PREFIX.to_vec();
            key.extend_from_slice(topic.as_bytes());
            inner
                .meta
                .insert(key, partitions.to_be_bytes().to_vec())
                .map_err(|e| storage("create topic", e))?;
            inner.shards[0]
                .persist(PersistMode::SyncAll)
                .map_err(|e| storage("persist topic", e))?;
            topics.insert(topic, Arc::new(state));
            Ok(())
        })
        .await
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.topic(topic)?.partitions.len() as u32)
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let limit = self.inner.config.max_record_bytes;
        for r in &records {
            let size = codec::record_size(r) as usize;
            if size > limit {
                return Err(LogError::RecordTooLarge { size, limit });
            }
        }
        let topic = self.topic(topic)?;
        let parts = topic.partitions.len() as u32;
        let partitions: Vec<u32> = records
            .iter()
            .map(|r| partition_for_key(&r.key, parts))
            .collect();
        let shards = self.tx.len();
        let shard = partitions[0] as usize % shards;
        if partitions.iter().all(|&p| p as usize % shards == shard) {
            return self.send(shard, topic, partitions, records).await;
        }
        // The records span shards: one request per shard, polled together so that each is
        // queued before any is awaited and they share their shards' next group commits.
        let total = records.len();
        let mut split: Vec<(Vec<usize>, Vec<u32>, Vec<Record>)> =
            (0..shards).map(|_| Default::default()).collect();
        for (i, (record, p)) in records.into_iter().zip(partitions).enumerate() {
            let part = &mut split[p as usize % shards];
            part.0.push(i);
            part.1.push(p);
            part.2.push(record);
        }
        let pending = split
            .into_iter()
            .enumerate()
            .filter(|(_, part)| !part.0.is_empty())
            .map(|(shard, (indices, partitions, records))| {
                let topic = topic.clone();
                async move {
                    let positions = self.send(shard, topic, partitions, records).await?;
                    Ok::<_, LogError>((indices, positions))
                }
            });
        let mut out = vec![
            Position {
                partition: 0,
                offset: 0
            };
            total
        ];
        for (indices, positions) in futures::future::try_join_all(pending).await? {
            for (i, position) in indices.into_iter().zip(positions) {
                out[i] = position;
            }
        }
        Ok(out)
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let t = self.topic(topic)?;
        let p = Self::partition(&t, partition)?;
        let high = p.durable_high.load(Ordering::Acquire);
        let low = p.low.load(Ordering::Acquire);
        if offset < low || offset > high {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                low,
                high,
            });
        }
        if offset == high || max_records == 0 {
            return Ok(Vec::new());
        }
        blocking(move || {
            let mut out = Vec::with_capacity(max_records.min((high - offset) as usize));
            let range = codec::key(partition, offset)..codec::key(partition, high);
            for kv in t.partitions[partition as usize]
                .keyspace
                .range(range)
                .take(max_records)
            {
                let (k, v) = kv.into_inner().map_err(|e| storage("read", e))?;
                let (_, off) = codec::decode_key(&k)?;
                out.push(codec::decode(partition, off, Bytes::from_owner(v))?);
            }
            Ok(out)
        })
        .await
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> Result<Watermarks, LogError> {
        let t = self.topic(topic)?;
        let p = Self::partition(&t, partition)?;
        Ok(Watermarks {
            low: p.low.load(Ordering::Acquire),
            high: p.durable_high.load(Ordering::Acquire),
        })
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        positions: &[Position],
    ) -> Result<(), LogError> {
        let t = self.topic(topic)?;
        for pos in positions {
            Self::partition(&t, pos.partition)?;
        }
        let inner = self.inner.clone();
        let entries: Vec<(Vec<u8>, u64)> = positions
            .iter()
            .map(|p| (group_key(group, topic, p.partition), p.offset))
            .collect();
        blocking(move || {
            let mut batch = inner.shards[0].batch();
            for (k, off) in entries {
                batch.insert(&inner.meta, k, off.to_be_bytes().to_vec());
            }
            batch.commit().map_err(|e| storage("commit offsets", e))?;
            inner.shards[0]
                .persist(PersistMode::SyncAll)
                .map_err(|e| storage("persist offsets", e))
        })
        .await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        let t = self.topic(topic)?;
        Self::partition(&t, partition)?;
        let v = self
            .inner
            .meta
            .get(group_key(group, topic, partition))
            .map_err(|e| storage("read committed", e))?;
        v.map(|v| {
            v.as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| LogError::Storage("corrupt committed offset".into()))
        })
        .transpose()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Storage(format!("blocking task failed: {e}")))?
}
