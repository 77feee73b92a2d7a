//! The `Log`: a durable, partitioned, append-only log with Kafka's semantics.
//!
//! Topics are split into partitions; a record's partition is chosen from its key with Kafka's
//! default partitioner (murmur2), so the embedded backend and a Kafka cluster place the same key
//! in the same partition. Offsets are per partition, dense, starting at 0. Consumer groups commit
//! the next offset they will read, per partition.
//!
//! Guarantees every backend gives (checked by [`contract`]):
//! - `append` returns only after every record of the batch is durable (fsync'd embedded,
//!   `acks=all` on Kafka), and returns one [`Position`] per record, in input order;
//! - records with the same key keep their append order in one partition;
//! - `read` never returns a record that is not durable, and never skips one;
//! - committed group positions survive restarts.

pub mod contract;
pub mod embedded;
pub mod kafka;
mod partitioner;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use embedded::{Durability, EmbeddedLog, EmbeddedLogConfig};
pub use kafka::{KafkaLog, KafkaLogConfig};
pub use partitioner::partition_for_key;

/// The topic every user action is appended to.
pub const ACTIONS_TOPIC: &str = "actions";

/// The topic stream jobs write the actions they could not apply to, with a reason code.
pub const FAILED_TOPIC: &str = "actions.failed";

/// A record header's name. The names Philo writes are static strings, and a record read back
/// borrows them from [`header_name`] instead of allocating one string per header and record.
pub type HeaderName = Cow<'static, str>;

/// The header names Philo's own writers use.
const KNOWN_HEADERS: [&str; 6] = [
    "content-type",
    crate::envelope::KIND_HEADER,
    "philo-schema-version",
    "traceparent",
    "philo-job",
    "philo-reason",
];

/// `name` as a [`HeaderName`]: one of Philo's own header names is borrowed, any other copied.
pub fn header_name(name: &str) -> HeaderName {
    match KNOWN_HEADERS.iter().find(|known| **known == name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name.to_owned()),
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key (the actor id for actions).
    pub key: Bytes,
    /// Payload (the envelope's JSON for actions).
    pub value: Bytes,
    /// Producer timestamp, unix milliseconds.
    pub timestamp_ms: i64,
    /// Headers (schema version, content type, trace context).
    pub headers: Vec<(HeaderName, Bytes)>,
}

impl Record {
    /// A record with no headers.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>, timestamp_ms: i64) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            timestamp_ms,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<HeaderName>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A record read back from the log, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub partition: u32,
    pub offset: u64,
    pub key: Bytes,
    pub value: Bytes,
    pub timestamp_ms: i64,
    pub headers: Vec<(HeaderName, Bytes)>,
}

impl StoredRecord {
    /// This record's position.
    pub fn position(&self) -> Position {
        Position {
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// Where a record sits: partition and offset. Printed and parsed as `"<partition>:<offset>"`,
/// the position token ingest hands to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl FromStr for Position {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LogError::InvalidPosition(s.chars().take(64).collect());
        let (p, o) = s.split_once(':').ok_or_else(bad)?;
        Ok(Position {
            partition: p.parse().map_err(|_| bad())?,
            offset: o.parse().map_err(|_| bad())?,
        })
    }
}

/// The retained range of one partition: `low` is the first offset still stored, `high` the
/// offset the next appended record will get (so `high - low` records are readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: u64,
    pub high: u64,
}

/// Errors of every `Log` backend. Each says whose fault it is and whether a retry helps.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    #[error("topic `{topic}` exists with {existing} partitions, not {requested}")]
    TopicMismatch {
        topic: String,
        existing: u32,
        requested: u32,
    },
    #[error("invalid topic name `{0}`")]
    InvalidTopic(String),
    #[error("partition {partition} out of range for topic `{topic}` ({partitions} partitions)")]
    PartitionOutOfRange {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("offset {requested} is outside the retained range [{low}, {high}]")]
    OffsetOutOfRange { requested: u64, low: u64, high: u64 },
    #[error("invalid position `{0}`: expected `<partition>:<offset>`")]
    InvalidPosition(String),
    #[error("record too large: {size} bytes, limit {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    /// The log cannot accept writes right now (queue full, broker unreachable); retry later.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// Storage failed underneath (I/O, corruption). Not retryable without an operator.
    #[error("log storage error: {0}")]
    Storage(String),
    #[error("log is shut down")]
    Closed,
    /// The log's configuration is unusable (a malformed `kafka://` URL, say).
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
}

/// Topic names both backends accept: Kafka's legal characters, at most 200 of them.
pub(crate) fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl LogError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LogError::Unavailable(_))
    }
}

/// A durable partitioned log. See the module docs for the guarantees.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Creates `topic` with `partitions` partitions; succeeds if it already exists with that count.
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError>;

    /// Number of partitions of `topic`.
    async fn partitions(&self, topic: &str) -> Result<u32, LogError>;

    /// Appends a batch; returns once all of it is durable, one position per record in order.
    /// A batch is not atomic as a whole: after an error or a crash some of its records can be
    /// durable and others not (Kafka writes partitions independently; the embedded log writes
    /// the records that share a shard as one atomic batch, so an ingest append — one actor's
    /// records, one partition — is all or nothing there).
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>, LogError>;

    /// Reads up to `max_records` durable records of one partition starting at `offset`.
    /// `offset == high` returns nothing; outside `[low, high]` is [`LogError::OffsetOutOfRange`].
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError>;

    /// The retained range of one partition.
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<Watermarks, LogError>;

    /// The retained range of every partition of `topic`, in partition order. The default asks
    /// [`Log::watermarks`] for each partition, concurrently; Kafka asks the cluster once per
    /// bound for all of them (one `ListOffsets` request per leader instead of two per
    /// partition), which is what a stream job's live step pays on every step.
    async fn watermarks_all(&self, topic: &str) -> Result<Vec<Watermarks>, LogError> {
        let partitions = self.partitions(topic).await?;
        futures::future::try_join_all((0..partitions).map(|p| self.watermarks(topic, p))).await
    }

    /// A cheap sample of the retained range for a consumer that polls in a loop: `high` may lag
    /// the true high watermark but never passes it, `low` may be stale. The default asks
    /// [`Log::watermarks`]; Kafka answers from what its partition reader has already fetched,
    /// without a round trip to the leader.
    async fn watermarks_hint(&self, topic: &str, partition: u32) -> Result<Watermarks, LogError> {
        self.watermarks(topic, partition).await
    }

    /// Whether watermarks sampled from several partitions form one consistent cut: a record
    /// visible in one partition's sample implies every record durable before it was appended
    /// is visible in the others'. True for the embedded log (its writers raise a partition's
    /// watermark in memory right after the fsync, before acknowledging anything). On
    /// Kafka each partition answers on its own, so a consumer that needs cross-partition order
    /// samples true watermarks and holds back records received after it began sampling.
    fn consistent_sample(&self) -> bool {
        true
    }

    /// A signal that changes after records were appended to `topic` (by this process), for
    /// consumers that would otherwise poll an idle topic: they note the value, read, and when
    /// nothing was new wait for it to change (with a bound: appends by other processes do not
    /// signal). `None` where the backend cannot tell (Kafka: consumers poll).
    fn appends(&self, topic: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        let _ = topic;
        None
    }

    /// Commits, for consumer `group`, the next offset to read in each given partition.
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        positions: &[Position],
    ) -> Result<(), LogError>;

    /// The next offset `group` will read in `partition`, if it ever committed one.
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError>;

    /// Joins consumer group `group` as one member consuming `topic`: the group's members split
    /// the topic's partitions between them and move a member's partitions to the others when it
    /// leaves or stops answering. `None` when the backend has no shared group coordinator (the
    /// embedded log is opened by one process, which consumes every partition).
    async fn join_group(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Option<Arc<dyn GroupMember>>, LogError> {
        let _ = (group, topic);
        Ok(None)
    }
}

/// One member of a consumer group (see [`Log::join_group`]). Leaves the group when dropped.
#[async_trait]
pub trait GroupMember: Send + Sync + fmt::Debug {
    /// The partitions assigned to this member now; it changes after every rebalance. Empty
    /// until the group's first assignment.
    fn assignment(&self) -> tokio::sync::watch::Receiver<Assignment>;

    /// Commits, as this member, the next offset to read in each given partition (Kafka accepts
    /// commits to a group with active members only from its members).
    async fn commit(&self, positions: &[Position]) -> Result<(), LogError>;
}

/// The partitions of one topic assigned to a group member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Whether the group has assigned anything yet (a member starts unassigned).
    pub assigned: bool,
    pub partitions: BTreeSet<u32>,
}
