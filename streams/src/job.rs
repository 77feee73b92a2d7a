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
//!    batches durable in order, so positions never get ahead of outputs), publish progress for
//!    reads that wait on `after=`, and commit the positions to the log's consumer group (for lag
//!    monitoring and Kafka) in the background, beside the next steps.
//!
//! After a crash the job resumes from the positions in the store. Everything after them is
//! replayed; actions whose marker survived are skipped, the rest are applied once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use philo_events::Envelope;
use philo_events::log::{
    ACTIONS_TOPIC, GroupMember, Log, LogError, Position, Record, StoredRecord,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::aggregate::{Aggregator, Fact};
use crate::shards::Shards;
use crate::store::{Mutation, Staged, StateStore, StoreError, WriteBatch};

/// Table of dedupe markers: pk = action id, ck = job name.
pub const APPLIED_TABLE: &str = "job_applied";
/// Table of job positions: pk = job name, ck = partition (u32 BE), value = next offset (u64 BE).
/// Also pk = `<job>.shards`, ck = "": the partitions whose per-user rows the store holds
/// ([`Shards::encode`]); absent = all of them.
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

    /// A step begins: its actions will be applied to a staged view over `committed` (the
    /// store as of the last committed step), and nothing of the step is staged yet. A
    /// processor may read `committed` directly where it knows the step's own writes cannot
    /// change the answer (the staged view indexes a large lane on its first read).
    fn begin_step(&mut self, committed: &Arc<dyn StateStore>) {
        let _ = committed;
    }

    /// Tables that hold rows kept per user (see [`crate::shards`]); [`Processor::row_owner`]
    /// names the user of each of their rows.
    fn sharded_tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// The user whose shard holds this row, for rows held per user (a feed, an inbox); `None`
    /// for rows every instance holds (the state decisions read).
    fn row_owner(&self, table: &str, pk: &[u8], ck: &[u8]) -> Option<Uuid> {
        let _ = (table, pk, ck);
        None
    }

    /// The shards this instance holds from now on: work for other users' rows may be skipped
    /// (the runner drops such rows anyway).
    fn set_shards(&mut self, shards: Arc<Shards>) {
        let _ = shards;
    }
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
    /// Time applying the actions to the staged view (and the step's aggregation).
    pub applying: Duration,
    /// Time writing the step's batch into the store and syncing it.
    pub committing: Duration,
}

impl std::ops::AddAssign for StepStats {
    /// Totals over several steps.
    fn add_assign(&mut self, s: StepStats) {
        self.records += s.records;
        self.applied += s.applied;
        self.duplicates += s.duplicates;
        self.failed += s.failed;
        self.undecodable += s.undecodable;
        self.applying += s.applying;
        self.committing += s.committing;
    }
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

/// Told which partitions of some tables each step wrote, once the step's batch is in the
/// store and before readers learn of its positions: read-side caches drop those rows there
/// (see [`crate::read::ItemCache`]).
pub trait CommitListener: Send + Sync {
    /// The tables whose written partition keys it wants.
    fn tables(&self) -> &[&'static str];
    /// (table, partition key) of every row the step put or deleted in those tables.
    fn committed(&self, written: &[(&'static str, Bytes)]);
}

/// A processor bound to a log and a store.
pub struct Job<P: Processor> {
    observer: Option<Observer>,
    listener: Option<Arc<dyn CommitListener>>,
    processor: P,
    log: Arc<dyn Log>,
    store: Arc<dyn StateStore>,
    config: JobConfig,
    positions: Vec<u64>,
    progress: Arc<Progress>,
    aggregator: Aggregator,
    /// The per-user rows this store holds (see [`crate::shards`]).
    shards: Arc<Shards>,
    /// The consumer-group member the job commits through, when it shares the work.
    member: Option<Arc<dyn GroupMember>>,
    /// The consumer-group commit in flight, if any: it runs beside the next steps.
    commit_task: Option<tokio::task::JoinHandle<()>>,
    /// Whether positions advanced since the last commit began.
    commit_due: bool,
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

fn shards_pk(job: &str) -> Bytes {
    Bytes::from(format!("{job}.shards"))
}

/// The actor of a failed-action row: failures are held with the actor's shard (the record's
/// partition is the actor's).
pub fn failed_row_owner(value: &[u8]) -> Option<Uuid> {
    serde_json::from_slice::<FailedAction>(value)
        .ok()
        .map(|f| f.actor_id)
}

/// The partitions whose per-user rows `store` holds for `job` (all when never resharded).
pub fn held_shards(
    store: &dyn StateStore,
    job: &str,
    partitions: u32,
) -> Result<Shards, StoreError> {
    Ok(match store.get(POSITIONS_TABLE, &shards_pk(job), b"")? {
        Some(v) => Shards::decode(partitions, &v),
        None => Shards::all(partitions),
    })
}

/// What [`Job::reshard`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reshard {
    pub gained: Vec<u32>,
    pub lost: Vec<u32>,
    /// Rows copied in from the replay of the gained partitions.
    pub adopted_rows: u64,
    /// Rows of the lost partitions deleted.
    pub dropped_rows: u64,
    /// Actions replayed to rebuild the gained partitions' rows.
    pub replayed: usize,
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
        let shards = Arc::new(held_shards(&*store, processor.name(), partitions)?);
        let mut processor = processor;
        processor.set_shards(shards.clone());
        let progress = Arc::new(Progress::new(partitions));
        progress.publish(&positions, false);
        let aggregator =
            Aggregator::start(config.aggregation_workers).map_err(JobError::Aggregation)?;
        Ok(Self {
            observer: None,
            listener: None,
            aggregator,
            processor,
            log,
            store,
            config,
            positions,
            progress,
            shards,
            member: None,
            commit_task: None,
            commit_due: false,
        })
    }

    /// The per-user rows this job's store holds.
    pub fn shards(&self) -> Arc<Shards> {
        self.shards.clone()
    }

    /// Commits group positions through `member` (and only for the partitions it holds) from
    /// now on.
    pub fn set_member(&mut self, member: Arc<dyn GroupMember>) {
        self.member = Some(member);
    }

    /// Makes the store hold the per-user rows of exactly `target`: rows of partitions no longer
    /// held are deleted; rows of newly held partitions are rebuilt by replaying the log from its
    /// start into `scratch` (an empty store) with `fresh` (a new processor) up to this job's
    /// positions, then copied in. Both happen in one atomic batch with the new shard set, so a
    /// crash leaves the old set or the new one. Like restoring a Kafka Streams task from its
    /// changelog: the log is the changelog, so retention must keep it whole (else
    /// [`JobError::Gap`]).
    pub async fn reshard(
        &mut self,
        target: &BTreeSet<u32>,
        scratch: Arc<dyn StateStore>,
        fresh: P,
    ) -> Result<Reshard, JobError> {
        let held = self.shards.set();
        let partitions = self.shards.partitions();
        let target = Shards::of(partitions, target);
        let gained: BTreeSet<u32> = target.set().difference(&held).copied().collect();
        let lost: BTreeSet<u32> = held.difference(&target.set()).copied().collect();
        let mut report = Reshard {
            gained: gained.iter().copied().collect(),
            lost: lost.iter().copied().collect(),
            ..Reshard::default()
        };
        if gained.is_empty() && lost.is_empty() {
            return Ok(report);
        }
        let name = self.processor.name();
        let mut tables: Vec<&'static str> = self.processor.sharded_tables().to_vec();
        tables.push(FAILED_TABLE);
        let mut batch = WriteBatch::new();
        if !gained.is_empty() {
            for p in 0..partitions {
                let low = self.log.watermarks(ACTIONS_TOPIC, p).await?.low;
                if low > 0 {
                    return Err(JobError::Gap {
                        partition: p,
                        position: 0,
                        low,
                    });
                }
            }
            let mut replay = Job::open(
                fresh,
                self.log.clone(),
                scratch.clone(),
                JobConfig {
                    failed_topic: None,
                    ..self.config.clone()
                },
            )
            .await?;
            replay.set_shards(Arc::new(Shards::of(partitions, &gained)));
            report.replayed = replay.run_to(&self.positions).await?.records;
            let gained = Shards::of(partitions, &gained);
            self.for_each_held(&*scratch, &tables, &gained, &mut |table, pk, ck, v| {
                batch.put(
                    table,
                    Bytes::copy_from_slice(pk),
                    Bytes::copy_from_slice(ck),
                    Bytes::copy_from_slice(v),
                );
                report.adopted_rows += 1;
            })?;
        }
        if !lost.is_empty() {
            let lost = Shards::of(partitions, &lost);
            self.for_each_held(&*self.store, &tables, &lost, &mut |table, pk, ck, _| {
                batch.delete(
                    table,
                    Bytes::copy_from_slice(pk),
                    Bytes::copy_from_slice(ck),
                );
                report.dropped_rows += 1;
            })?;
        }
        batch.put(
            POSITIONS_TABLE,
            shards_pk(name),
            Bytes::new(),
            Bytes::from(target.encode()),
        );
        self.store.apply(batch)?;
        self.store.sync()?;
        self.set_shards(Arc::new(target));
        // Caches may hold state of users whose rows were just dropped or adopted.
        self.processor.reset();
        tracing::info!(job = name, ?report, "shards changed");
        Ok(report)
    }

    /// Holds `shards` from now on (without moving rows: for a fresh store, or after
    /// [`Job::reshard`] moved them).
    pub(crate) fn set_shards(&mut self, shards: Arc<Shards>) {
        self.processor.set_shards(shards.clone());
        crate::metrics::owned_partitions(self.processor.name(), shards.set().len());
        self.shards = shards;
    }

    /// Calls `f` with every per-user row of `tables` in `store` whose user `shards` holds.
    fn for_each_held(
        &self,
        store: &dyn StateStore,
        tables: &[&'static str],
        shards: &Shards,
        f: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        for &table in tables {
            store.for_each(table, &mut |pk, ck, v| {
                if self
                    .owner(table, pk, ck, v)
                    .is_some_and(|u| shards.owns_user(&u))
                {
                    f(table, pk, ck, v);
                }
                true
            })?;
        }
        Ok(())
    }

    /// The user whose shard holds a row of `table`, if it is held per user.
    fn owner(&self, table: &str, pk: &[u8], ck: &[u8], value: &[u8]) -> Option<Uuid> {
        if table == FAILED_TABLE {
            failed_row_owner(value)
        } else {
            self.processor.row_owner(table, pk, ck)
        }
    }

    /// Drops the writes of `batch` to per-user rows of users this store does not hold.
    fn retain_held(&self, batch: &mut WriteBatch) {
        if self.shards.is_all() {
            return;
        }
        batch.mutations.retain(|m| {
            let (table, pk, ck): (&str, &[u8], &[u8]) = match m {
                Mutation::Put { table, pk, ck, .. } | Mutation::Delete { table, pk, ck } => {
                    (table, pk, ck)
                }
                Mutation::DeleteRange { table, pk, .. } => (table, pk, &[]),
            };
            self.processor
                .row_owner(table, pk, ck)
                .is_none_or(|u| self.shards.owns_user(&u))
        });
        for l in &mut batch.lanes {
            let (ops, len) = crate::store::lane::retain(&l.ops, |op| {
                let ck = match op {
                    crate::store::lane::OpRef::Put { ck, .. }
                    | crate::store::lane::OpRef::Delete { ck, .. } => *ck,
                    crate::store::lane::OpRef::DeleteRange { .. } => &[],
                };
                self.processor
                    .row_owner(l.table, op.pk(), ck)
                    .is_none_or(|u| self.shards.owns_user(&u))
            });
            l.ops = ops;
            l.len = len;
            l.last_put = None;
        }
    }

    /// Calls `observer` with every action this job handles from now on.
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// Tells `listener` what every step from now on wrote (see [`CommitListener`]).
    pub fn on_commit(&mut self, listener: Arc<dyn CommitListener>) {
        self.listener = Some(listener);
    }

    /// Publishes this job's progress to `progress` from now on (and its positions at once):
    /// a job reopened after a failure reports to the readers of the one it replaces.
    pub fn adopt_progress(&mut self, progress: Arc<Progress>) {
        progress.publish(&self.positions, false);
        self.progress = progress;
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
        // Where partitions are sampled one by one (Kafka), a live step takes true watermarks
        // and applies only what was received before it began sampling: a record received
        // earlier was stamped after everything it refers to was durable, so that is inside
        // every partition's sample (ADR 009). Later records wait for the next step. Elsewhere
        // (one consistent cut: the embedded log) a cheap hint of the high watermark will do.
        let strict = limit.is_none() && !self.log.consistent_sample();
        let name = self.processor.name();
        let sampled_at = chrono::Utc::now();
        let log = &*self.log;
        let watermarks = if strict {
            log.watermarks_all(ACTIONS_TOPIC).await?
        } else {
            futures::future::try_join_all(
                (0..self.positions.len() as u32).map(|p| log.watermarks_hint(ACTIONS_TOPIC, p)),
            )
            .await?
        };
        crate::metrics::phase(name, "sample", started.elapsed());
        // What to read of each partition: (partition, from, how many, high watermark, bound).
        let mut wanted = Vec::with_capacity(watermarks.len());
        for (p, wm) in watermarks
            .into_iter()
            .enumerate()
            .take(self.positions.len())
        {
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
            wanted.push((p as u32, self.positions[p], want, wm.high, high));
        }
        // The partitions are read concurrently: against a remote log each read is a round
        // trip, and a step waits for the slowest one rather than for their sum.
        let phase_started = Instant::now();
        let got = futures::future::try_join_all(
            wanted
                .iter()
                .map(|&(p, from, want, _, _)| log.read(ACTIONS_TOPIC, p, from, want)),
        )
        .await?;
        for ((p, from, _, wm_high, high), got) in wanted.into_iter().zip(got) {
            let end = from + got.len() as u64;
            crate::metrics::lag(self.processor.name(), p, wm_high - end);
            if end < wm_high {
                caught_up = false;
            }
            reads.push(PartitionRead {
                truncated: end < high,
                records: got,
            });
        }
        if reads.iter().all(|r| r.records.is_empty()) {
            self.progress.publish(&self.positions, caught_up);
            self.start_commit();
            return Ok(StepStats::default());
        }
        crate::metrics::phase(name, "read", phase_started.elapsed());
        let phase_started = Instant::now();
        let store = self.store.clone();
        // The whole step is staged and committed as one atomic batch: a crash leaves the store
        // at a step boundary (outputs, markers and positions together), never inside a step.
        let staged = Staged::new(store.clone());
        self.processor.begin_step(&store);
        let received_before = strict.then_some(sampled_at);
        let (mut stats, next, failures) = match self.apply_records(&staged, reads, received_before)
        {
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
        stats.applying = phase_started.elapsed();
        crate::metrics::phase(name, "apply", stats.applying);
        let phase_started = Instant::now();
        if !failures.is_empty() {
            if let Err(e) = self.publish_failures(&failures).await {
                self.processor.reset();
                return Err(e);
            }
            crate::metrics::phase(name, "publish", phase_started.elapsed());
        }
        let phase_started = Instant::now();
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
        let written: Vec<(&'static str, Bytes)> = match &self.listener {
            Some(l) => batch
                .mutations
                .iter()
                .filter_map(|m| {
                    let (table, pk) = match m {
                        Mutation::Put { table, pk, .. }
                        | Mutation::Delete { table, pk, .. }
                        | Mutation::DeleteRange { table, pk, .. } => (*table, pk),
                    };
                    l.tables().contains(&table).then(|| (table, pk.clone()))
                })
                .chain(
                    batch
                        .lanes
                        .iter()
                        .filter(|lane| l.tables().contains(&lane.table))
                        .flat_map(|lane| {
                            lane.pks()
                                .map(|pk| (lane.table, Bytes::copy_from_slice(pk)))
                        }),
                )
                .collect(),
            None => Vec::new(),
        };
        let applied = store.apply(batch);
        if applied.is_ok()
            && let Some(l) = &self.listener
        {
            // The rows are in the store (readable) even if the fsync below fails.
            l.committed(&written);
        }
        if let Err(e) = applied.and_then(|()| store.sync()) {
            self.processor.reset();
            return Err(e.into());
        }
        stats.committing = phase_started.elapsed();
        crate::metrics::phase(name, "sync", stats.committing);
        crate::metrics::step_rows(name, rows);
        self.commit_due |= next != self.positions;
        self.positions = next;
        crate::metrics::positions(name, &self.positions);
        // Readers waiting on these positions go first: the store already holds them durably.
        self.progress.publish(&self.positions, caught_up);
        self.start_commit();
        crate::metrics::step(name, &stats, started.elapsed());
        Ok(stats)
    }

    /// Commits the positions to the log's consumer group in the background, unless a commit is
    /// still in flight (then a later step commits, positions being cumulative). The store holds
    /// the authoritative positions; the group commit is for lag monitoring and Kafka tooling,
    /// so it stays off the step's path (against a broker it is a round trip that freshness
    /// would otherwise pay on every step) and a failure is logged, not fatal. A member of a
    /// shared group commits the partitions it holds.
    fn start_commit(&mut self) {
        if !self.commit_due || self.commit_task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.commit_due = false;
        let positions: Vec<Position> = self
            .positions
            .iter()
            .enumerate()
            .map(|(p, &offset)| Position {
                partition: p as u32,
                offset,
            })
            .filter(|p| self.member.is_none() || self.shards.owns_partition(p.partition))
            .collect();
        let (member, log, name) = (self.member.clone(), self.log.clone(), self.processor.name());
        self.commit_task = Some(tokio::spawn(async move {
            let started = Instant::now();
            let commit = match member {
                Some(member) => member.commit(&positions).await,
                None => log.commit(name, ACTIONS_TOPIC, &positions).await,
            };
            if let Err(e) = commit {
                tracing::warn!(job = name, error = %e, "committing the consumer-group position failed");
            }
            crate::metrics::phase(name, "commit", started.elapsed());
        }));
    }

    /// Waits for the consumer-group commit in flight and commits what is still due (before the
    /// job stops, so the group's positions end where the store's do).
    pub async fn finish_commits(&mut self) {
        if let Some(task) = self.commit_task.take() {
            let _ = task.await;
        }
        self.start_commit();
        if let Some(task) = self.commit_task.take() {
            let _ = task.await;
        }
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
        received_before: Option<chrono::DateTime<chrono::Utc>>,
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
                if let (Some(b), Some(t)) = (received_before, rec.time())
                    && t >= b
                {
                    break; // received after the sample began: next step
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
            self.retain_held(&mut batch);
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
                tables.extend(batch.lanes.iter().filter(|l| l.len > 0).map(|l| l.table));
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
                // Every instance decides the same; the one holding the actor's partition
                // (the record's) records and publishes the failure.
                Outcome::Failed(_) if !self.shards.owns_partition(position.partition) => {
                    batch = WriteBatch::new();
                }
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
            total += s;
        }
        Ok(total)
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
    digest_where(store, tables, &|_, _, _, _| true)
}

/// Sees one row: `(table, pk, ck, value)`.
type RowVisitor<'a> = dyn FnMut(&'static str, &[u8], &[u8], &[u8]) + 'a;

/// Which rows a digest counts: `keep(table, pk, ck, value)`.
pub type RowFilter<'a> = &'a dyn Fn(&str, &[u8], &[u8], &[u8]) -> bool;

/// Like [`digest`], over the rows `keep` accepts.
pub fn digest_where(
    store: &dyn StateStore,
    tables: &[&str],
    keep: RowFilter<'_>,
) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for table in tables {
        h.update((table.len() as u32).to_be_bytes());
        h.update(table.as_bytes());
        store.for_each(table, &mut |pk, ck, v| {
            if !keep(table, pk, ck, v) {
                return true;
            }
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
