//! The job runner: consume the `actions` log, apply each action to a job's views, make the
//! writes durable, then commit the log position (DESIGN invariant 3).
//!
//! # One step
//! 1. Sample the high watermark of every partition, and read every partition from the job's
//!    position up to that mark (at most `max_batch_records` per partition).
//! 2. Decode the envelopes and order them by `(received_at, id)` across partitions (a partition's
//!    own order is kept for equal times). An action that refers to another entity was received
//!    after that entity's 202, so the entity's record was durable before the referring one was
//!    stamped: it is in this step or an earlier one, and sorted before it. References across
//!    partitions therefore resolve exactly as they would in one global order.
//! 3. For each action, skip it if its dedupe marker exists (a duplicate delivery), else let the
//!    [`Processor`] turn it into a [`WriteBatch`]; the runner adds the marker and applies the
//!    batch atomically. Reads of the next action see the writes of the previous one.
//! 4. Write the new positions into the store, `sync` once (one fsync per step; the store makes
//!    batches durable in order, so positions never get ahead of outputs), commit the positions
//!    to the log's consumer group (for lag monitoring and Kafka), and publish progress for reads
//!    that wait on `after=`.
//!
//! After a crash the job resumes from the positions in the store. Everything after them is
//! replayed; actions whose marker survived are skipped, the rest are applied once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, Log, LogError, Position, Record, StoredRecord};
use tokio::sync::watch;
use uuid::Uuid;

use crate::aggregate::{Aggregator, Fact};
use crate::store::{Mutation, Staged, StateStore, StoreError, WriteBatch};

/// Table of dedupe markers: pk = action id, ck = job name.
pub const APPLIED_TABLE: &str = "job_applied";
/// Table of job positions: pk = job name, ck = partition (u32 BE), value = next offset (u64 BE).
pub const POSITIONS_TABLE: &str = "job_positions";
/// Table of failed actions: pk = job name, ck = action id, value = JSON [`FailedAction`].
pub const FAILED_TABLE: &str = "failed_actions";

/// Why an action changed no view. `reason` is a stable snake_case code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedAction {
    pub action_id: Uuid,
    pub actor_id: Uuid,
    pub kind: String,
    pub reason: String,
    pub position: String,
}

/// What applying one action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The views changed (or the action was a valid no-op).
    Applied,
    /// A reference did not resolve or a rule needing state was broken; no view changed.
    Failed(&'static str),
}

/// An action as the processor sees it.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub envelope: &'a Envelope,
    pub position: Position,
}

/// A job's logic: turns actions into writes. It reads the store for state and may keep caches
/// that are exact functions of the store (they are rebuilt lazily after a restart).
pub trait Processor: Send + 'static {
    /// The job's name: its consumer group and the owner of its positions and markers.
    fn name(&self) -> &'static str;

    /// The tables holding this job's views (truncated by rebuilds, hashed by digests).
    fn tables(&self) -> &'static [&'static str];

    /// Applies one action. Writes go into `batch`, which the runner applies atomically together
    /// with the action's dedupe marker; on [`Outcome::Failed`] the batch must be left empty.
    fn apply(
        &mut self,
        store: &dyn StateStore,
        delivery: &Delivery<'_>,
        batch: &mut WriteBatch,
    ) -> Result<Outcome, StoreError>;

    /// Facts emitted since the last call, for the step's timely aggregation.
    fn take_facts(&mut self) -> Vec<Fact> {
        Vec::new()
    }

    /// Drops caches: a step's writes were discarded (a store error), so caches that followed
    /// them no longer match the store.
    fn reset(&mut self);
}

/// Settings of a job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Most records read per partition in one step.
    pub max_batch_records: usize,
    /// Sleep between polls when the job has caught up.
    pub idle_poll: Duration,
    /// How long dedupe markers are kept.
    pub dedupe_ttl: Duration,
    /// Timely worker threads of the aggregation stage.
    pub aggregation_workers: usize,
    /// Topic the live job also appends its failed actions to (`actions.failed`), for the lake
    /// and for operators. At least once: they are appended before the step commits, so a step
    /// retried after a crash appends them again (consumers dedupe on `action_id`). Rebuilds
    /// leave it unset: replaying history must not publish it twice.
    pub failed_topic: Option<String>,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 2_048,
            idle_poll: Duration::from_millis(2),
            dedupe_ttl: Duration::from_secs(7 * 24 * 3600),
            aggregation_workers: 1,
            failed_topic: None,
        }
    }
}

/// Errors that stop a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("aggregation stage: {0}")]
    Aggregation(String),
    #[error(
        "log partition {partition} starts at offset {low}, after the job's position {position}: retention dropped records the job never applied"
    )]
    Gap {
        partition: u32,
        position: u64,
        low: u64,
    },
}

/// How far a job has applied the log, shared with readers that wait on `after=` tokens.
#[derive(Debug)]
pub struct Progress {
    /// Per partition: the next offset to apply (everything below is applied and durable).
    next: Vec<AtomicU64>,
    changed: watch::Sender<u64>,
    caught_up: AtomicBool,
}

impl Progress {
    fn new(partitions: u32) -> Self {
        Self {
            next: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            changed: watch::channel(0).0,
            caught_up: AtomicBool::new(false),
        }
    }

    /// Whether the action at `position` is applied (and durable).
    pub fn covers(&self, position: Position) -> bool {
        self.next
            .get(position.partition as usize)
            .is_some_and(|n| n.load(Ordering::Acquire) > position.offset)
    }

    /// Whether the position names a partition this job consumes.
    pub fn knows(&self, position: Position) -> bool {
        (position.partition as usize) < self.next.len()
    }

    /// Next offset to apply, per partition.
    pub fn positions(&self) -> Vec<u64> {
        self.next
            .iter()
            .map(|n| n.load(Ordering::Acquire))
            .collect()
    }

    /// Whether the job had caught up with the log at its last step.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Waits until `position` is applied, at most `timeout`. Returns whether it is.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.covers(position) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the job stopped.
                _ => return self.covers(position),
            }
        }
    }

    /// A receiver that sees a change after every step of the job, idle ones included (compare
    /// [`Progress::positions`] to tell whether anything was applied).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn publish(&self, positions: &[u64], caught_up: bool) {
        for (n, &p) in self.next.iter().zip(positions) {
            n.store(p, Ordering::Release);
        }
        self.caught_up.store(caught_up, Ordering::Release);
        self.changed.send_modify(|g| *g += 1);
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepStats {
    pub records: usize,
    pub applied: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub undecodable: usize,
}

/// What the job did with one action, for an [`Observer`].
#[derive(Debug)]
pub struct Observed<'a> {
    pub envelope: &'a Envelope,
    pub position: Position,
    /// `applied`, `failed` or `duplicate`.
    pub outcome: &'static str,
    /// The failure's reason code.
    pub reason: Option<&'static str>,
    /// Tables the action wrote (its dedupe marker and failure row left out).
    pub tables: Vec<&'static str>,
}

/// Sees every action a job handles, after its writes are staged (`philo log replay`).
pub type Observer = Box<dyn FnMut(Observed<'_>) + Send>;

/// A processor bound to a log and a store.
pub struct Job<P: Processor> {
    observer: Option<Observer>,
    processor: P,
    log: Arc<dyn Log>,
    store: Arc<dyn StateStore>,
    config: JobConfig,
    positions: Vec<u64>,
    progress: Arc<Progress>,
    aggregator: Aggregator,
}

struct PartitionRead {
    /// Whether the partition has more records below the step's limit than were read.
    truncated: bool,
    records: Vec<StoredRecord>,
}

struct Decoded {
    position: Position,
    envelope: Result<Envelope, String>,
}

impl Decoded {
    fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.envelope.as_ref().ok().map(|e| e.received_at)
    }
}

fn position_ck(partition: u32) -> [u8; 4] {
    partition.to_be_bytes()
}

impl<P: Processor> Job<P> {
    /// Loads the job's positions from the store (0 for partitions it never saw).
    pub async fn open(
        processor: P,
        log: Arc<dyn Log>,
        store: Arc<dyn StateStore>,
        config: JobConfig,
    ) -> Result<Self, JobError> {
        let partitions = log.partitions(ACTIONS_TOPIC).await?;
        let mut positions = vec![0u64; partitions as usize];
        for (p, pos) in positions.iter_mut().enumerate() {
            if let Some(v) = store.get(
                POSITIONS_TABLE,
                processor.name().as_bytes(),
                &position_ck(p as u32),
            )? {
                *pos = decode_u64(&v);
            }
        }
        let progress = Arc::new(Progress::new(partitions));
        progress.publish(&positions, false);
        let aggregator =
            Aggregator::start(config.aggregation_workers).map_err(JobError::Aggregation)?;
        Ok(Self {
            observer: None,
            aggregator,
            processor,
            log,
            store,
            config,
            positions,
            progress,
        })
    }

    /// Calls `observer` with every action this job handles from now on.
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// Progress shared with readers.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The processor (tests inspect its caches).
    pub fn processor(&self) -> &P {
        &self.processor
    }

    /// Next offset to apply per partition.
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }

    /// Runs one step (see the module docs). Returns what it did; `records == 0` means caught up.
    pub async fn step(&mut self) -> Result<StepStats, JobError> {
        self.step_until(None).await
    }

    /// One step that reads no further than `limit` (per partition, exclusive), if given.
    async fn step_until(&mut self, limit: Option<&[u64]>) -> Result<StepStats, JobError> {
        let started = Instant::now();
        let mut reads: Vec<PartitionRead> = Vec::with_capacity(self.positions.len());
        let mut caught_up = true;
        // All partitions at once. A hint: on Kafka a query is a round trip to the leader, the
        // hint what the partition's reader has already fetched (a step reads up to a sample of
        // the high watermark anyway).
        let watermarks = futures::future::try_join_all(
            (0..self.positions.len() as u32).map(|p| self.log.watermarks_hint(ACTIONS_TOPIC, p)),
        )
        .await?;
        for (p, wm) in watermarks.into_iter().enumerate() {
            let mut high = wm.high;
            if let Some(limit) = limit {
                high = high.min(limit[p]);
            }
            if wm.low > self.positions[p] {
                return Err(JobError::Gap {
                    partition: p as u32,
                    position: self.positions[p],
                    low: wm.low,
                });
            }
            if high <= self.positions[p] {
                crate::metrics::lag(self.processor.name(), p as u32, wm.high - self.positions[p]);
                continue;
            }
            let want = ((high - self.positions[p]) as usize).min(self.config.max_batch_records);
            let got = self
                .log
                .read(ACTIONS_TOPIC, p as u32, self.positions[p], want)
                .await?;
            let end = self.positions[p] + got.len() as u64;
            crate::metrics::lag(self.processor.name(), p as u32, wm.high - end);
            if end < wm.high {
                caught_up = false;
            }
            reads.push(PartitionRead {
                truncated: end < high,
                records: got,
            });
        }
        if reads.iter().all(|r| r.records.is_empty()) {
            self.progress.publish(&self.positions, caught_up);
            return Ok(StepStats::default());
        }
        let store = self.store.clone();
        // The whole step is staged and committed as one atomic batch: a crash leaves the store
        // at a step boundary (outputs, markers and positions together), never inside a step.
        let staged = Staged::new(store.clone());
        let (stats, next, failures) = match self.apply_records(&staged, reads) {
            Ok(r) => r,
            Err(e) => {
                // Processor caches may hold effects of the discarded writes.
                self.processor.reset();
                return Err(e);
            }
        };
        if let Err(e) = self.aggregate(&staged) {
            self.processor.reset();
            return Err(e);
        }
        let name = self.processor.name();
        if let Err(e) = self.publish_failures(&failures).await {
            self.processor.reset();
            return Err(e);
        }
        let mut batch = staged.into_batch();
        let rows = batch.len();
        for (p, &offset) in next.iter().enumerate() {
            if offset != self.positions[p] {
                batch.put(
                    POSITIONS_TABLE,
                    Bytes::from_static(name.as_bytes()),
                    Bytes::copy_from_slice(&position_ck(p as u32)),
                    Bytes::copy_from_slice(&offset.to_be_bytes()),
                );
            }
        }
        if let Err(e) = store.apply(batch).and_then(|()| store.sync()) {
            self.processor.reset();
            return Err(e.into());
        }
        crate::metrics::step_rows(name, rows);
        let committed: Vec<Position> = next
            .iter()
            .enumerate()
            .filter(|&(p, &o)| o != self.positions[p])
            .map(|(p, &o)| Position {
                partition: p as u32,
                offset: o,
            })
            .collect();
        self.positions = next;
        // The store holds the authoritative positions; the group commit is for lag monitoring
        // and for Kafka tooling, so a failure here is logged, not fatal.
        if let Err(e) = self.log.commit(name, ACTIONS_TOPIC, &committed).await {
            tracing::warn!(job = name, error = %e, "committing the consumer-group position failed");
        }
        self.progress.publish(&self.positions, caught_up);
        crate::metrics::step(name, &stats, started.elapsed());
        Ok(stats)
    }

    /// Appends the step's failed actions to the failed topic, if the job has one. Keyed by
    /// actor like the actions themselves; the value is the [`FailedAction`] as JSON.
    async fn publish_failures(&self, failures: &[(FailedAction, i64)]) -> Result<(), JobError> {
        let Some(topic) = &self.config.failed_topic else {
            return Ok(());
        };
        if failures.is_empty() {
            return Ok(());
        }
        let name = self.processor.name();
        let records = failures
            .iter()
            .map(|(f, received_ms)| {
                Record::new(
                    Bytes::copy_from_slice(f.actor_id.as_bytes()),
                    serde_json::to_vec(f).expect("plain struct serialises"),
                    *received_ms,
                )
                .with_header("content-type", Bytes::from_static(b"application/json"))
                .with_header("philo-job", Bytes::from_static(name.as_bytes()))
                .with_header("philo-reason", Bytes::from(f.reason.clone()))
            })
            .collect();
        self.log.append(topic, records).await?;
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn apply_records(
        &mut self,
        store: &dyn StateStore,
        reads: Vec<PartitionRead>,
    ) -> Result<(StepStats, Vec<u64>, Vec<(FailedAction, i64)>), JobError> {
        let name = self.processor.name();
        let mut stats = StepStats::default();
        let mut failures = Vec::new();
        let mut next = self.positions.clone();
        let decoded_reads: Vec<(bool, Vec<Decoded>)> = reads
            .into_iter()
            .map(|r| {
                let decoded = r
                    .records
                    .iter()
                    .map(|rec| Decoded {
                        position: rec.position(),
                        envelope: Envelope::from_json(&rec.value).map_err(|e| e.to_string()),
                    })
                    .collect();
                (r.truncated, decoded)
            })
            .collect();
        // A partition read only partly (the per-step cap) may hold, beyond what was read,
        // records older than what other partitions returned. Apply only up to the oldest "last
        // read time" among truncated partitions, so the cross-partition order stays the
        // global time order however the log is split into steps.
        // The latest time read from a partition stands for "everything up to here": a record
        // appended late (stamped before records already applied) is handled where it sorts in
        // its own step, never allowed to pull a whole partition ahead of the others.
        let frontier = decoded_reads
            .iter()
            .filter(|(truncated, _)| *truncated)
            .filter_map(|(_, d)| d.iter().filter_map(Decoded::time).max())
            .min();
        let mut decoded: Vec<(Envelope, Position)> = Vec::new();
        for (_, records) in decoded_reads {
            for rec in records {
                // The partition that sets the frontier has no record past it, so every step
                // applies at least that partition's records.
                if let (Some(f), Some(t)) = (frontier, rec.time())
                    && t > f
                {
                    break; // this partition continues next step, from here
                }
                let p = rec.position.partition as usize;
                next[p] = rec.position.offset + 1;
                stats.records += 1;
                match rec.envelope {
                    Ok(env) => decoded.push((env, rec.position)),
                    Err(e) => {
                        // Ingest validated it, so this is a schema the job does not know (a
                        // newer writer) or corruption: count it, never stall the job on it.
                        stats.undecodable += 1;
                        tracing::error!(job = name, position = %rec.position, error = %e, "undecodable record");
                        crate::metrics::failed(name, "undecodable");
                    }
                }
            }
        }
        // Equal times keep their position order.
        decoded.sort_by_key(|(env, pos)| (env.received_at, env.id, *pos));
        let ttl = self.config.dedupe_ttl;
        for (env, position) in &decoded {
            let id = env.id.as_bytes();
            if store.get(APPLIED_TABLE, id, name.as_bytes())?.is_some() {
                stats.duplicates += 1;
                if let Some(observe) = &mut self.observer {
                    observe(Observed {
                        envelope: env,
                        position: *position,
                        outcome: "duplicate",
                        reason: None,
                        tables: Vec::new(),
                    });
                }
                continue;
            }
            let mut batch = WriteBatch::new();
            let delivery = Delivery {
                envelope: env,
                position: *position,
            };
            let outcome = self.processor.apply(store, &delivery, &mut batch)?;
            if let Some(observe) = &mut self.observer {
                let mut tables: Vec<&'static str> = batch
                    .mutations
                    .iter()
                    .map(|m| match m {
                        Mutation::Put { table, .. }
                        | Mutation::Delete { table, .. }
                        | Mutation::DeleteRange { table, .. } => *table,
                    })
                    .collect();
                tables.sort_unstable();
                tables.dedup();
                let (outcome, reason) = match outcome {
                    Outcome::Applied => ("applied", None),
                    Outcome::Failed(r) => ("failed", Some(r)),
                };
                observe(Observed {
                    envelope: env,
                    position: *position,
                    outcome,
                    reason,
                    tables,
                });
            }
            match outcome {
                Outcome::Applied => stats.applied += 1,
                Outcome::Failed(reason) => {
                    debug_assert!(batch.is_empty(), "a failed action writes nothing");
                    batch = WriteBatch::new();
                    stats.failed += 1;
                    crate::metrics::failed(name, reason);
                    let failed = FailedAction {
                        action_id: env.id,
                        actor_id: env.actor_id,
                        kind: env.action.kind().as_str().to_owned(),
                        reason: reason.to_owned(),
                        position: position.to_string(),
                    };
                    batch.put(
                        FAILED_TABLE,
                        Bytes::from_static(name.as_bytes()),
                        Bytes::copy_from_slice(id),
                        serde_json::to_vec(&failed).expect("plain struct serialises"),
                    );
                    failures.push((failed, env.received_at.timestamp_millis()));
                }
            }
            batch.put_with_ttl(
                APPLIED_TABLE,
                Bytes::copy_from_slice(id),
                Bytes::from_static(name.as_bytes()),
                Bytes::new(),
                ttl,
            );
            store.apply(batch)?;
        }
        Ok((stats, next, failures))
    }

    /// Sums the step's facts in the timely stage and stages `stored + sum` per key (a zero
    /// deletes the row).
    fn aggregate(&mut self, staged: &Staged) -> Result<(), JobError> {
        let facts = self.processor.take_facts();
        if facts.is_empty() {
            return Ok(());
        }
        let sums = self
            .aggregator
            .reduce(facts)
            .map_err(JobError::Aggregation)?;
        let mut batch = WriteBatch::new();
        for ((table, pk, ck), delta) in sums {
            let current = staged.get(table, &pk, &ck)?.map_or(0, |v| decode_i64(&v));
            let value = current.saturating_add(delta);
            if value == 0 {
                batch.delete(table, pk, ck);
            } else {
                batch.put(table, pk, ck, Bytes::copy_from_slice(&value.to_be_bytes()));
            }
        }
        staged.apply(batch)?;
        Ok(())
    }

    /// Steps until every partition reaches the high watermark sampled now. For rebuilds,
    /// benchmarks and tests.
    pub async fn catch_up(&mut self) -> Result<StepStats, JobError> {
        let mut target = Vec::with_capacity(self.positions.len());
        for p in 0..self.positions.len() {
            target.push(self.log.watermarks(ACTIONS_TOPIC, p as u32).await?.high);
        }
        self.run_to(&target).await
    }

    /// Steps until every partition reaches `target` (exclusive offsets).
    pub async fn run_to(&mut self, target: &[u64]) -> Result<StepStats, JobError> {
        let mut total = StepStats::default();
        while self.positions.iter().zip(target).any(|(p, t)| p < t) {
            let s = self.step_until(Some(target)).await?;
            if s.records == 0 {
                break;
            }
            total.records += s.records;
            total.applied += s.applied;
            total.duplicates += s.duplicates;
            total.failed += s.failed;
            total.undecodable += s.undecodable;
        }
        Ok(total)
    }

    /// Runs until `stop` is set, polling when caught up.
    pub async fn run(&mut self, stop: Arc<AtomicBool>) -> Result<(), JobError> {
        let mut idle = self.config.idle_poll;
        while !stop.load(Ordering::Acquire) {
            let s = self.step().await?;
            if s.records == 0 {
                tokio::time::sleep(idle).await;
                idle = (idle * 2).min(self.config.idle_poll * 8);
            } else {
                idle = self.config.idle_poll;
            }
        }
        Ok(())
    }

    /// A digest of the job's views: equal digests mean equal views (used to compare a rebuild
    /// with the live views, and a crashed run with an uninterrupted one).
    pub fn digest(&self) -> Result<String, StoreError> {
        let mut tables = self.processor.tables().to_vec();
        tables.push(FAILED_TABLE);
        digest(&*self.store, &tables)
    }
}

/// SHA-256 over every live row of `tables`, in key order, hex encoded.
pub fn digest(store: &dyn StateStore, tables: &[&str]) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for table in tables {
        h.update((table.len() as u32).to_be_bytes());
        h.update(table.as_bytes());
        store.for_each(table, &mut |pk, ck, v| {
            for part in [pk, ck, v] {
                h.update((part.len() as u32).to_be_bytes());
                h.update(part);
            }
            true
        })?;
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

fn decode_i64(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

pub(crate) fn decode_u64(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
