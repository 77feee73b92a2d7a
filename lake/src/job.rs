//! The anonymizer job: reads the `actions` log, anonymizes every action, and lands the rows in
//! the lake's Delta tables in micro-batches, each action exactly once.
//!
//! ## Exactly once
//! Each table commit records, per log partition, the next offset the table has taken (a Delta
//! application transaction, see [`crate::table`]). On start the job reads those positions back,
//! resumes every partition from the smallest of them, and writes a row into a table only if its
//! action's offset is at or past that table's own position. A batch whose commit landed before
//! a crash is therefore skipped table by table; one that did not is written again.
//!
//! ## Catching up
//! What the anonymizer knows (usernames for mentions, opt-outs, erasures, the `users` facts) is
//! rebuilt on start by observing the log from its beginning to the resume point, and **every**
//! `account.erased` in the retained log is applied up front: a replay never writes an erased
//! user's rows, not even the ones logged before their erasure.
//!
//! ## Erasure
//! When the job reaches an `account.erased`, it drops the user's pending rows, commits the
//! batch, then deletes the user's rows from every table (by every user column), vacuums the
//! touched tables with zero retention so the files are physically gone, and writes a receipt
//! to `_philo/erasures/<action id>.json` beside the tables. An erasure whose receipt is missing
//! (a crash between the batch and the delete) is redone on the next start. The operations
//! themselves live in [`crate::tables`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::record_batch::RecordBatch;
use philo_events::log::{Log, LogError, StoredRecord};
use philo_events::{Action, ActionKind, Envelope};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::anonymize::{Anonymizer, Row, TABLES};
use crate::columnar::{BatchSizes, FactBatch, without_users};
use crate::storage::Location;
use crate::table::{LakeError, LakeTable, TableSettings};
pub use crate::tables::{ErasureReceipt, Lake, Receipts, TableErasure};

/// How the job batches and maintains the lake.
#[derive(Debug, Clone)]
pub struct LakeJobConfig {
    /// The topic of actions.
    pub topic: String,
    /// The topic of actions the stream jobs could not apply (`failed_actions`); read when it
    /// exists.
    pub failed_topic: String,
    /// A batch commits once it holds this many actions…
    pub batch_max_actions: usize,
    /// …or once its first action has waited this long.
    pub batch_max_wait: Duration,
    /// Records per log read.
    pub read_chunk: usize,
    /// A table that got no rows records its progress anyway after this many batches (bounds
    /// what a restart re-reads).
    pub progress_every: u32,
    /// k of the `users` dimension's k-anonymity.
    pub k: usize,
    /// How often the `users` dimension is rewritten (when it changed).
    pub users_every: Duration,
    /// How often tables are compacted (`None`: only by `philo lake optimize`).
    pub optimize_every: Option<Duration>,
    /// How often unreferenced files older than `vacuum_retention` are deleted.
    pub vacuum_every: Option<Duration>,
    pub vacuum_retention: Duration,
    /// Target size of compacted files.
    pub target_file_bytes: u64,
    /// Sleep between polls when caught up.
    pub idle_poll: Duration,
    pub settings: TableSettings,
}

impl Default for LakeJobConfig {
    fn default() -> Self {
        Self {
            topic: "actions".into(),
            failed_topic: "actions.failed".into(),
            batch_max_actions: 100_000,
            batch_max_wait: Duration::from_secs(1),
            read_chunk: 8_192,
            progress_every: 20,
            k: 5,
            users_every: Duration::from_secs(60),
            optimize_every: Some(Duration::from_secs(15 * 60)),
            vacuum_every: Some(Duration::from_secs(6 * 3600)),
            vacuum_retention: Duration::from_secs(7 * 24 * 3600),
            target_file_bytes: 128 * 1024 * 1024,
            idle_poll: Duration::from_millis(100),
            settings: TableSettings::default(),
        }
    }
}

/// Errors that stop the job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("erasure receipts: {0}")]
    Receipts(#[from] object_store::Error),
}

/// What one step did.
#[derive(Debug, Default, Clone)]
pub struct StepReport {
    /// Batches committed.
    pub batches: usize,
    /// Actions read (including ones that produced no rows or were skipped as already landed).
    pub actions: usize,
    /// Rows committed.
    pub rows: usize,
    /// Table commits made.
    pub commits: usize,
    /// Actions whose record did not decode (counted, never written).
    pub undecodable: usize,
    /// Receive times (unix ms) of the actions this step committed, for lag figures.
    pub received_ms: Vec<i64>,
    /// When the step's commits finished.
    pub committed_at: Option<DateTime<Utc>>,
    /// Erasures this step carried out.
    pub erasures: Vec<ErasureReceipt>,
    /// Time spent reading and anonymizing (this call's batch).
    pub gather_time: Duration,
    /// Time spent waiting for table commits to finish after gathering: near zero when
    /// gathering is the slower half of the pipeline.
    pub commit_wait: Duration,
    /// Time gathering waited for the log's records (read and decoded off the job's task):
    /// near zero when anonymizing is the slower half.
    pub read_wait: Duration,
}

/// The anonymizer job over one log and one lake.
pub struct LakeJob {
    log: Arc<dyn Log>,
    config: LakeJobConfig,
    lake: Lake,
    anon: Anonymizer,
    partitions: u32,
    /// Next offset to read, per partition.
    next: Vec<u64>,
    /// Per fact table, per partition: the next offset the table has taken.
    taken: Vec<Vec<u64>>,
    /// Per fact table: batches since it last recorded progress.
    idle_batches: Vec<u32>,
    /// The failed-actions topic: partitions (0 when it does not exist), next offset to read,
    /// what `failed_actions` has taken, and the action ids landed (the topic is at least once).
    failed_partitions: u32,
    failed_next: Vec<u64>,
    failed_taken: Vec<u64>,
    failed_seen: HashSet<Uuid>,
    /// The earliest day whose rows changed since the daily aggregates were last written.
    daily_since: Option<NaiveDate>,
    users_dirty: bool,
    last_users: Instant,
    last_optimize: Instant,
    last_vacuum: Instant,
    /// The batch whose table commits are running ([`LakeJob::step_pipelined`]); its tables
    /// are away from `lake.tables` meanwhile.
    in_flight: Option<InFlight>,
    /// The last batch's sizes, to start the next one's column builders at.
    sizes: BatchSizes,
}

/// A batch read and anonymized, not yet committed.
struct Gathered {
    /// Per fact table, its rows (`None`: none).
    pending: Vec<Option<RecordBatch>>,
    failed: Vec<Row>,
    erasures: Vec<(Uuid, Uuid)>,
    report: StepReport,
}

/// Chunks read and decoded ahead while the job anonymizes one: reading and decoding a chunk
/// takes about as long as anonymizing it, and with one chunk ahead the job still waited for
/// the log half of the time (`StepReport::read_wait`).
const CHUNKS_AHEAD: usize = 2;

/// A chunk of one partition's records being read and decoded off the job's task, while the job
/// anonymizes the chunk before it. Both halves run on one blocking-pool thread, which drives
/// the log's read itself: as a task on the runtime's workers, the fetch had to wait between
/// its read and its decoding for a worker busy encoding a table commit (Parquet and its
/// compression run inside the commit's future), and the job waited for the log about half of
/// its time (`StepReport::read_wait`; dev build, `bench lake`: 0.63 – 0.76 s of 1.58 – 1.65 s
/// gathering before, 0.29 – 0.41 s of 1.26 – 1.38 s after).
struct Fetch {
    pi: usize,
    /// Records asked for (the most this chunk can add to the batch).
    want: usize,
    task: tokio::task::JoinHandle<Result<Decoded, LogError>>,
}

/// A chunk's records decoded: offset and envelope (`None`: the record did not decode).
type Decoded = Vec<(u64, Option<Envelope>)>;

impl Fetch {
    fn start(log: Arc<dyn Log>, topic: String, p: u32, offset: u64, want: usize) -> Self {
        let runtime = tokio::runtime::Handle::current();
        // A blocking-pool thread is outside the runtime's async context, so it may block on
        // the read (on a current-thread runtime, the thread awaiting this task drives the
        // runtime's I/O and timers meanwhile).
        let task = tokio::task::spawn_blocking(move || {
            let records = runtime.block_on(log.read(&topic, p, offset, want))?;
            Ok(records
                .iter()
                .map(|r| (r.offset, Envelope::from_json(&r.value).ok()))
                .collect())
        });
        Self {
            pi: p as usize,
            want,
            task,
        }
    }

    async fn finish(self) -> Result<(usize, Decoded), LogError> {
        let decoded = self
            .task
            .await
            .unwrap_or_else(|e| rethrow(e, "reading a chunk of the log"))?;
        Ok((self.pi, decoded))
    }
}

/// A read or decode task that panicked or was cancelled. Decoding panics on no input, and the
/// runtime cancels tasks only when it shuts down. Either way nothing may be skipped: the job
/// stops before committing and a restart resumes from what the tables record.
fn rethrow(e: tokio::task::JoinError, what: &str) -> ! {
    match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A table commit running as its own task: the table travels with it and comes back.
type CommitTask = tokio::task::JoinHandle<CommitDone>;

/// A finished table commit: table index, the table, the progress it recorded, the rows it
/// wrote, and when it finished.
type CommitDone = (
    usize,
    LakeTable,
    HashMap<u32, u64>,
    Result<usize, LakeError>,
    DateTime<Utc>,
);

/// A batch whose fact-table commits are running.
struct InFlight {
    tasks: Vec<CommitTask>,
    /// The fact tables, `None` while their commit task has them.
    tables: Vec<Option<LakeTable>>,
    /// `failed_actions` is small: it commits when the batch is finished, with this progress.
    failed: Vec<Row>,
    failed_progress: HashMap<u32, u64>,
    erasures: Vec<(Uuid, Uuid)>,
    report: StepReport,
}

impl Drop for InFlight {
    /// A job dropped with a batch in flight stops its commits at their next await, as a crash
    /// would: a Delta commit either landed or did not, and a restart resumes from what the
    /// tables record. (Finished tasks are unaffected; `finish_commit` empties the list.)
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl StepReport {
    /// Adds what `other` did (two batches finished in one call).
    fn absorb(&mut self, other: StepReport) {
        self.batches += other.batches;
        self.actions += other.actions;
        self.rows += other.rows;
        self.commits += other.commits;
        self.undecodable += other.undecodable;
        self.received_ms.extend(other.received_ms);
        self.committed_at = self.committed_at.max(other.committed_at);
        self.erasures.extend(other.erasures);
        self.gather_time += other.gather_time;
        self.commit_wait += other.commit_wait;
        self.read_wait += other.read_wait;
    }
}

impl std::fmt::Debug for LakeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeJob")
            .field("lake", &self.lake)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl LakeJob {
    /// Opens the lake, reads how far each table got, and catches the anonymizer up.
    pub async fn start(
        log: Arc<dyn Log>,
        location: &Location,
        anon: Anonymizer,
        config: LakeJobConfig,
    ) -> Result<Self, JobError> {
        let lake = Lake::open(location, &config.settings).await?;
        let partitions = log.partitions(&config.topic).await?;
        let mut taken = Vec::with_capacity(lake.tables.len());
        for table in &lake.tables {
            taken.push(table.positions(partitions).await?);
        }
        let failed_partitions = match log.partitions(&config.failed_topic).await {
            Ok(n) => n,
            Err(LogError::TopicNotFound(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        let failed_taken = lake.failed.positions(failed_partitions).await?;
        let mut job = Self {
            log,
            lake,
            anon,
            partitions,
            next: vec![0; partitions as usize],
            idle_batches: vec![0; taken.len()],
            taken,
            failed_partitions,
            failed_next: failed_taken.clone(),
            failed_taken,
            failed_seen: HashSet::new(),
            daily_since: None,
            users_dirty: true,
            last_users: Instant::now(),
            last_optimize: Instant::now(),
            last_vacuum: Instant::now(),
            in_flight: None,
            sizes: BatchSizes::default(),
            config,
        };
        job.catch_up().await?;
        Ok(job)
    }

    /// The open lake. Its fact tables are away while a batch is committing: call
    /// [`LakeJob::flush`] after [`LakeJob::step_pipelined`] first.
    pub fn lake(&self) -> &Lake {
        debug_assert!(self.in_flight.is_none(), "a batch is committing");
        &self.lake
    }

    /// The open lake, for maintenance between steps (as [`LakeJob::lake`]).
    pub fn lake_mut(&mut self) -> &mut Lake {
        debug_assert!(self.in_flight.is_none(), "a batch is committing");
        &mut self.lake
    }

    /// The next offset to read, per partition.
    pub fn positions(&self) -> &[u64] {
        &self.next
    }

    /// Rebuilds the anonymizer's knowledge from the log: everything before the resume point is
    /// observed; every erasure anywhere in the retained log is applied up front.
    async fn catch_up(&mut self) -> Result<(), JobError> {
        let (log, chunk) = (self.log.clone(), self.config.read_chunk);
        let mut erasures = Vec::new();
        for p in 0..self.partitions {
            let resume = self.taken.iter().map(|t| t[p as usize]).min().unwrap_or(0);
            let wm = log.watermarks(&self.config.topic, p).await?;
            read_range(
                &*log,
                &self.config.topic,
                p,
                wm.low,
                wm.high,
                chunk,
                |record| {
                    // Only erasures matter ahead of the resume point, and only what the
                    // anonymizer learns from behind it: the kind header (written with the
                    // record, so it names the record's own kind) spares decoding the rest.
                    // Records without one (other writers) are decoded.
                    if let Some(kind) = kind_header(record)
                        && kind != ActionKind::AccountErased
                        && (record.offset >= resume || !Anonymizer::learns_from(kind))
                    {
                        return;
                    }
                    let Ok(env) = Envelope::from_json(&record.value) else {
                        return;
                    };
                    if record.offset < resume {
                        self.anon.observe(&env);
                    }
                    if matches!(env.action, Action::AccountErased(_)) {
                        self.anon.mark_erased(env.actor_id);
                        // Behind the resume point or ahead of it, an erasure without a receipt
                        // may have rows in the lake from before: carry it out now.
                        erasures.push((env.id, env.actor_id));
                    }
                },
            )
            .await?;
            self.next[p as usize] = resume.max(wm.low);
        }
        // The failures already landed, so duplicates in the (at least once) topic are skipped.
        for p in 0..self.failed_partitions {
            let wm = log.watermarks(&self.config.failed_topic, p).await?;
            let until = self.failed_taken[p as usize].min(wm.high);
            read_range(
                &*log,
                &self.config.failed_topic,
                p,
                wm.low,
                until,
                chunk,
                |r| {
                    if let Ok(f) = serde_json::from_slice::<FailedRecord>(&r.value) {
                        self.failed_seen.insert(f.action_id);
                    }
                },
            )
            .await?;
            self.failed_next[p as usize] = self.failed_taken[p as usize].max(wm.low);
        }
        // Erasures whose receipt never got written: carry them out (deleting is idempotent).
        for (action_id, user) in erasures {
            if self.lake.receipt(action_id).await?.is_none() {
                let pseudonym = self.anon.user_pseudonym(user);
                let key_id = self.anon.key_id().to_owned();
                self.lake.erase(action_id, &pseudonym, &key_id).await?;
            }
        }
        Ok(())
    }

    /// Reads up to one batch, anonymizes it, and commits it. Waits (up to `batch_max_wait`
    /// after the first action) for a batch to fill while the log is quiet.
    pub async fn step(&mut self) -> Result<StepReport, JobError> {
        let mut report = self.flush().await?;
        if let Some(batch) = self.gather().await? {
            let flight = self.start_commit(batch);
            report.absorb(self.finish_commit(flight).await?);
        }
        Ok(report)
    }

    /// Like [`LakeJob::step`], but a batch's table commits (Parquet encoding, object store,
    /// Delta log) run while the next batch is read and anonymized, so the two halves of the work
    /// overlap on separate cores. Returns what the batches finished in this call did (the
    /// previous one, and on a quiet log the current one); [`LakeJob::flush`] finishes the batch
    /// in flight. Order and exactly-once are unchanged: a batch starts committing only after
    /// the previous one finished, erasures included.
    pub async fn step_pipelined(&mut self) -> Result<StepReport, JobError> {
        let started = Instant::now();
        let gathered = self.gather().await;
        let gather_time = started.elapsed();
        // Finished even when reading failed: no commit task outlives the step that started it.
        let waiting = Instant::now();
        let mut report = self.flush().await?;
        report.gather_time += gather_time;
        report.commit_wait += waiting.elapsed();
        if let Some(batch) = gathered? {
            self.in_flight = Some(self.start_commit(batch));
        }
        if report.actions == 0 && self.in_flight.is_some() && !self.log_has_more().await? {
            // Caught up: nothing to overlap with, so finish now rather than a poll later.
            report.absorb(self.flush().await?);
        }
        Ok(report)
    }

    /// Whether a batch is committing ([`LakeJob::step_pipelined`]).
    pub fn committing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Finishes the batch in flight, if any (its commits, then its erasures).
    pub async fn flush(&mut self) -> Result<StepReport, JobError> {
        match self.in_flight.take() {
            Some(flight) => self.finish_commit(flight).await,
            None => Ok(StepReport::default()),
        }
    }

    /// Whether any partition has records past what was read.
    async fn log_has_more(&self) -> Result<bool, JobError> {
        for p in 0..self.partitions {
            let wm = self.log.watermarks_hint(&self.config.topic, p).await?;
            if self.next[p as usize] < wm.high {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads up to one batch and anonymizes it. `None` when there was nothing to do.
    ///
    /// Decoding overlaps anonymizing: each chunk read is decoded on the blocking pool while the
    /// chunk before it is anonymized here (the anonymizer's state depends on the order of the
    /// actions, so anonymizing stays sequential; decoding a record depends on nothing).
    async fn gather(&mut self) -> Result<Option<Gathered>, JobError> {
        let topic = self.config.topic.clone();
        let max = self.config.batch_max_actions;
        let mut report = StepReport::default();
        let mut facts = FactBatch::sized(&self.sizes);
        let mut first_day: Option<NaiveDate> = None;
        let mut erasures: Vec<(Uuid, Uuid)> = Vec::new();
        // Chunks being read and decoded while the oldest one is anonymized.
        let mut fetching: VecDeque<Fetch> = VecDeque::new();
        let started = Instant::now();
        loop {
            let mut read_any = false;
            for p in 0..self.partitions {
                let pi = p as usize;
                // A chunk of this partition in flight must land first: its end is where the
                // next read starts.
                while fetching.iter().any(|f| f.pi == pi) {
                    let f = fetching.pop_front().expect("a chunk is in flight");
                    read_any |= self
                        .land(f, &mut facts, &mut erasures, &mut report, &mut first_day)
                        .await?;
                }
                let in_flight: usize = fetching.iter().map(|f| f.want).sum();
                if report.actions + in_flight >= max {
                    break;
                }
                let wm = self.log.watermarks_hint(&topic, p).await?;
                if self.next[pi] < wm.low {
                    tracing::warn!(
                        partition = p,
                        from = self.next[pi],
                        to = wm.low,
                        "log retention removed records the lake had not taken"
                    );
                    self.next[pi] = wm.low;
                }
                if self.next[pi] >= wm.high {
                    continue;
                }
                let want = self.config.read_chunk.min(max - report.actions - in_flight);
                fetching.push_back(Fetch::start(
                    self.log.clone(),
                    topic.clone(),
                    p,
                    self.next[pi],
                    want,
                ));
                if fetching.len() > CHUNKS_AHEAD {
                    let f = fetching.pop_front().expect("a chunk is in flight");
                    read_any |= self
                        .land(f, &mut facts, &mut erasures, &mut report, &mut first_day)
                        .await?;
                }
            }
            while let Some(f) = fetching.pop_front() {
                read_any |= self
                    .land(f, &mut facts, &mut erasures, &mut report, &mut first_day)
                    .await?;
            }
            if report.actions >= max || started.elapsed() >= self.config.batch_max_wait {
                break;
            }
            if !read_any {
                if report.actions == 0 {
                    break;
                }
                tokio::time::sleep(self.config.idle_poll.min(self.config.batch_max_wait)).await;
            }
        }
        let mut failed = self.read_failed(&mut report).await?;
        // The failed topic's progress counts as recorded once the batch in flight carries it.
        let failed_recorded = self.failed_next.iter().enumerate().all(|(p, n)| {
            let in_flight = self
                .in_flight
                .as_ref()
                .and_then(|f| f.failed_progress.get(&(p as u32)));
            in_flight.copied().unwrap_or(self.failed_taken[p]) >= *n
        });
        if report.actions == 0 && failed.is_empty() && failed_recorded {
            return Ok(None);
        }
        let (mut pending, sizes) = facts.finish().map_err(|source| LakeError::Arrow {
            table: "fact tables".into(),
            source,
        })?;
        self.sizes = sizes;
        // An erased user's rows read earlier in this very batch never land.
        if !erasures.is_empty() {
            for (t, rows) in pending.iter_mut().enumerate() {
                let Some(batch) = rows.take() else { continue };
                let kept = without_users(&TABLES[t], batch, self.anon.erased_pseudonyms())
                    .map_err(|source| LakeError::Arrow {
                        table: TABLES[t].name.into(),
                        source,
                    })?;
                *rows = Some(kept).filter(|b| b.num_rows() > 0);
            }
            failed.retain(|row| !self.anon.names_erased(row));
        }
        let failed_days = failed.iter().filter_map(|row| match row.values.first() {
            Some(crate::anonymize::Value::Day(day)) => Some(*day),
            _ => None,
        });
        if let Some(day) = first_day.into_iter().chain(failed_days).min() {
            self.daily_since = Some(self.daily_since.map_or(day, |d| d.min(day)));
        }
        Ok(Some(Gathered {
            pending,
            failed,
            erasures,
            report,
        }))
    }

    /// Waits for a fetched chunk and anonymizes it into the batch; `false` when it was empty.
    async fn land(
        &mut self,
        fetch: Fetch,
        facts: &mut FactBatch,
        erasures: &mut Vec<(Uuid, Uuid)>,
        report: &mut StepReport,
        first_day: &mut Option<NaiveDate>,
    ) -> Result<bool, JobError> {
        let waiting = Instant::now();
        let (pi, decoded) = fetch.finish().await?;
        report.read_wait += waiting.elapsed();
        let Some(last) = decoded.last().map(|(offset, _)| *offset) else {
            return Ok(false);
        };
        self.next[pi] = last + 1;
        report.actions += decoded.len();
        self.take(pi, decoded, facts, erasures, report, first_day);
        Ok(true)
    }

    /// Anonymizes one decoded chunk of partition `pi` into the batch; `first_day` is the
    /// earliest day a row landed on.
    fn take(
        &mut self,
        pi: usize,
        decoded: Decoded,
        facts: &mut FactBatch,
        erasures: &mut Vec<(Uuid, Uuid)>,
        report: &mut StepReport,
        first_day: &mut Option<NaiveDate>,
    ) {
        // Past every table's position (the usual case), no table skips an action.
        let all_taken = self.taken.iter().map(|t| t[pi]).max().unwrap_or(0);
        let mut skip = vec![false; TABLES.len()];
        // By reference: moving each envelope out of the vector copies it.
        for (offset, env) in &decoded {
            let offset = *offset;
            let Some(env) = env else {
                report.undecodable += 1;
                continue;
            };
            if matches!(env.action, Action::AccountErased(_)) && !self.anon.is_erased(&env.actor_id)
            {
                erasures.push((env.id, env.actor_id));
            }
            if offset >= all_taken {
                facts.start_action(None);
            } else {
                for (t, taken) in self.taken.iter().enumerate() {
                    skip[t] = offset < taken[pi];
                }
                facts.start_action(Some(skip.as_slice()));
            }
            self.anon.anonymize_into(env, facts);
            if matches!(
                env.action,
                Action::UserRegistered(_)
                    | Action::ProfileUpdated(_)
                    | Action::ResumeUpdated(_)
                    | Action::AccountErased(_)
            ) {
                self.users_dirty = true;
            }
            if facts.wrote() {
                report.received_ms.push(env.received_at.timestamp_millis());
                let day = env.received_at.date_naive();
                *first_day = Some(first_day.map_or(day, |d| d.min(day)));
            }
        }
    }

    /// Starts the commits of every fact table that has rows or progress to record, each as its
    /// own task (so a batch's tables spread over the runtime's threads), with the log positions
    /// read so far.
    fn start_commit(&mut self, batch: Gathered) -> InFlight {
        let Gathered {
            mut pending,
            failed,
            erasures,
            report,
        } = batch;
        let key_id = self.anon.key_id().to_owned();
        let every = self.config.progress_every;
        let failed_progress: HashMap<u32, u64> = self
            .failed_next
            .iter()
            .enumerate()
            .filter(|(p, n)| **n > self.failed_taken[*p])
            .map(|(p, n)| (p as u32, *n))
            .collect();
        let mut tables: Vec<Option<LakeTable>> = std::mem::take(&mut self.lake.tables)
            .into_iter()
            .map(Some)
            .collect();
        let mut tasks = Vec::new();
        for t in 0..tables.len() {
            let progress: HashMap<u32, u64> = self
                .next
                .iter()
                .enumerate()
                .filter(|(p, n)| **n > self.taken[t][*p])
                .map(|(p, n)| (p as u32, *n))
                .collect();
            let rows = pending[t].take();
            if rows.is_none() {
                self.idle_batches[t] += 1;
                if progress.is_empty() || self.idle_batches[t] < every {
                    continue;
                }
            }
            self.idle_batches[t] = 0;
            let key_id = key_id.clone();
            let mut table = tables[t].take().expect("each table is taken once");
            tasks.push(tokio::spawn(async move {
                let result = append_with_retry(&mut table, rows, progress.clone(), &key_id).await;
                (t, table, progress, result, Utc::now())
            }));
        }
        InFlight {
            tasks,
            tables,
            failed,
            failed_progress,
            erasures,
            report,
        }
    }

    /// Waits for a batch's commits, commits its failed actions, records what every table took,
    /// and carries out the batch's erasures.
    async fn finish_commit(&mut self, flight: InFlight) -> Result<StepReport, JobError> {
        let mut flight = flight;
        let tasks = std::mem::take(&mut flight.tasks);
        let mut tables = std::mem::take(&mut flight.tables);
        let failed = std::mem::take(&mut flight.failed);
        let failed_progress = std::mem::take(&mut flight.failed_progress);
        let erasures = std::mem::take(&mut flight.erasures);
        let mut report = std::mem::take(&mut flight.report);
        let key_id = self.anon.key_id().to_owned();
        let joined = futures::future::join_all(tasks).await;
        let mut results = Vec::with_capacity(joined.len());
        let mut panicked = None;
        // When the batch became visible: its last table commit (not when this call noticed).
        let mut committed_at = None;
        for j in joined {
            match j {
                Ok((t, table, progress, result, at)) => {
                    tables[t] = Some(table);
                    results.push((t, progress, result));
                    committed_at = committed_at.max(Some(at));
                }
                Err(e) => panicked = Some(e),
            }
        }
        if let Some(e) = panicked {
            // A panicked commit task took its table with it: this job cannot go on (its
            // supervisor starts a fresh one from what the tables record).
            return Err(JobError::Lake(LakeError::Delta {
                table: "?".into(),
                source: deltalake::DeltaTableError::Generic(format!("commit task failed: {e}")),
            }));
        }
        self.lake.tables = tables
            .into_iter()
            .map(|t| t.expect("every table is back"))
            .collect();
        let mut first_error = None;
        // `failed_actions` commits whenever it got rows or its topic moved (it is small).
        if !failed.is_empty() || !failed_progress.is_empty() {
            let appended = match self.lake.failed.batch_of(&failed) {
                Ok(batch) => {
                    append_with_retry(
                        &mut self.lake.failed,
                        batch,
                        failed_progress.clone(),
                        &key_id,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match appended {
                Ok(rows) => {
                    committed_at = Some(Utc::now());
                    report.commits += 1;
                    report.rows += rows;
                    for (p, n) in failed_progress {
                        self.failed_taken[p as usize] = n;
                    }
                }
                Err(e) => first_error = Some(e),
            }
        }
        for (t, progress, result) in results {
            match result {
                Ok(rows) => {
                    report.commits += 1;
                    report.rows += rows;
                    for (p, n) in progress {
                        self.taken[t][p as usize] = n;
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        report.committed_at = committed_at.or_else(|| Some(Utc::now()));
        report.batches = 1;
        if let Some(e) = first_error {
            return Err(e.into());
        }
        metrics::counter!("philo_lake_actions_total").increment(report.actions as u64);
        metrics::counter!("philo_lake_rows_total").increment(report.rows as u64);
        metrics::counter!("philo_lake_commits_total").increment(report.commits as u64);
        for (action_id, user) in erasures {
            let pseudonym = self.anon.user_pseudonym(user);
            let key_id = self.anon.key_id().to_owned();
            let receipt = self.lake.erase(action_id, &pseudonym, &key_id).await?;
            tracing::info!(%action_id, "erased a user from the lake");
            report.erasures.push(receipt);
            // The aggregates of every day may have counted the user.
            self.daily_since = NaiveDate::from_ymd_opt(1970, 1, 1);
        }
        Ok(report)
    }

    /// Reads what the failed-actions topic got since the last step (no waiting) and turns it
    /// into `failed_actions` rows, skipping failures already landed.
    async fn read_failed(&mut self, report: &mut StepReport) -> Result<Vec<Row>, JobError> {
        let topic = self.config.failed_topic.clone();
        let mut rows = Vec::new();
        for p in 0..self.failed_partitions {
            let pi = p as usize;
            let wm = self.log.watermarks_hint(&topic, p).await?;
            self.failed_next[pi] = self.failed_next[pi].max(wm.low);
            if self.failed_next[pi] >= wm.high {
                continue;
            }
            let records = self
                .log
                .read(&topic, p, self.failed_next[pi], self.config.read_chunk)
                .await?;
            let Some(last) = records.last() else { continue };
            self.failed_next[pi] = last.offset + 1;
            for r in &records {
                let Ok(f) = serde_json::from_slice::<FailedRecord>(&r.value) else {
                    report.undecodable += 1;
                    continue;
                };
                if !self.failed_seen.insert(f.action_id) {
                    continue;
                }
                let job = r
                    .headers
                    .iter()
                    .find(|(k, _)| k == "philo-job")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok());
                let received = DateTime::from_timestamp_millis(r.timestamp_ms).unwrap_or_default();
                if let Some(row) =
                    self.anon
                        .failed_row(f.action_id, f.actor_id, &f.kind, &f.reason, job, received)
                {
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }

    /// Recomputes the daily aggregates for the days that changed since the last time.
    pub async fn write_daily(&mut self) -> Result<usize, JobError> {
        self.flush().await?;
        let Some(since) = self.daily_since.take() else {
            return Ok(0);
        };
        let key_id = self.anon.key_id().to_owned();
        match self.lake.write_daily(since, &key_id).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                self.daily_since = Some(since);
                Err(e)
            }
        }
    }

    /// Rewrites the `users` dimension if anything it is built from changed.
    pub async fn write_users(&mut self) -> Result<Option<u64>, JobError> {
        if !self.users_dirty {
            return Ok(None);
        }
        let (rows, dimension) = self.anon.users_dimension(self.config.k);
        let key_id = self.anon.key_id().to_owned();
        let version = self.lake.write_users(&rows, &key_id).await?;
        tracing::debug!(
            users = rows.len(),
            level = dimension.level,
            suppressed = dimension.suppressed,
            "users dimension rewritten"
        );
        self.users_dirty = false;
        self.last_users = Instant::now();
        Ok(Some(version))
    }

    /// Scheduled maintenance: the `users` dimension, compaction and vacuum when due.
    pub async fn maintain(&mut self) -> Result<(), JobError> {
        if !self.maintenance_due() {
            return Ok(());
        }
        self.flush().await?;
        if self.last_users.elapsed() >= self.config.users_every {
            if self.users_dirty {
                self.write_users().await?;
            }
            self.write_daily().await?;
            self.last_users = Instant::now();
        }
        let key_id = self.anon.key_id().to_owned();
        if let Some(every) = self.config.optimize_every
            && self.last_optimize.elapsed() >= every
        {
            self.lake
                .optimize(self.config.target_file_bytes, &key_id)
                .await?;
            self.last_optimize = Instant::now();
        }
        if let Some(every) = self.config.vacuum_every
            && self.last_vacuum.elapsed() >= every
        {
            self.lake.vacuum(self.config.vacuum_retention).await?;
            self.last_vacuum = Instant::now();
        }
        Ok(())
    }

    /// Runs until `stop` is cancelled (finishing the batch in hand) or an error stops it.
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), JobError> {
        loop {
            if stop.is_cancelled() {
                break;
            }
            // Maintenance reads and rewrites the fact tables, so a step before it leaves no
            // batch in flight.
            let step = if self.maintenance_due() {
                self.step().await
            } else {
                self.step_pipelined().await
            };
            let report = match step {
                Ok(report) => report,
                Err(JobError::Lake(LakeError::Raced(table))) => {
                    // Another writer landed some of this batch first: start over from what the
                    // tables record, so nothing lands twice.
                    tracing::warn!(%table, "another lake writer raced this one; resuming from the tables");
                    let location = self.lake.location.clone();
                    let anon = self.anon.fresh();
                    self = LakeJob::start(self.log.clone(), &location, anon, self.config.clone())
                        .await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.maintain().await {
                Ok(()) => {}
                // Another writer's maintenance won this round; ours runs again next time.
                Err(JobError::Lake(LakeError::Raced(table))) => {
                    tracing::warn!(%table, "lake maintenance raced another writer; retrying later");
                }
                Err(e) => return Err(e),
            }
            if report.commits > 0 {
                metrics::gauge!("philo_lake_last_commit_timestamp_seconds")
                    .set(Utc::now().timestamp() as f64);
            }
            let mut behind = 0u64;
            for p in 0..self.partitions {
                let wm = self.log.watermarks_hint(&self.config.topic, p).await?;
                behind += wm.high.saturating_sub(self.next[p as usize]);
            }
            metrics::gauge!("philo_lake_lag_records").set(behind as f64);
            if report.actions == 0 && !self.committing() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.config.idle_poll) => {}
                }
            }
        }
        self.flush().await?;
        if self.users_dirty {
            self.write_users().await?;
        }
        self.write_daily().await?;
        Ok(())
    }

    /// Whether [`LakeJob::maintain`] has work now.
    fn maintenance_due(&self) -> bool {
        self.last_users.elapsed() >= self.config.users_every
            || self
                .config
                .optimize_every
                .is_some_and(|every| self.last_optimize.elapsed() >= every)
            || self
                .config
                .vacuum_every
                .is_some_and(|every| self.last_vacuum.elapsed() >= every)
    }

    /// How far behind the log head the lake is: records not yet taken, per partition.
    pub async fn lag(&self) -> Result<BTreeMap<u32, u64>, JobError> {
        let mut out = BTreeMap::new();
        for p in 0..self.partitions {
            let wm = self.log.watermarks(&self.config.topic, p).await?;
            out.insert(p, wm.high.saturating_sub(self.next[p as usize]));
        }
        Ok(out)
    }
}

/// Calls `f` on every record of `topic`'s partition `p` in `[from, until)`, read in chunks.
async fn read_range(
    log: &dyn Log,
    topic: &str,
    p: u32,
    from: u64,
    until: u64,
    chunk: usize,
    mut f: impl FnMut(&StoredRecord),
) -> Result<(), JobError> {
    let mut offset = from;
    while offset < until {
        let records = log.read(topic, p, offset, chunk).await?;
        let Some(last) = records.last() else { break };
        offset = last.offset + 1;
        records.iter().filter(|r| r.offset < until).for_each(&mut f);
    }
    Ok(())
}

/// The kind a record's [`philo_events::KIND_HEADER`] names, when it names a known one.
fn kind_header(record: &StoredRecord) -> Option<ActionKind> {
    let (_, value) = record
        .headers
        .iter()
        .find(|(name, _)| name == philo_events::KIND_HEADER)?;
    ActionKind::parse(std::str::from_utf8(value).ok()?)
}

/// A record of the failed-actions topic (the stream jobs' `FailedAction`).
#[derive(Debug, Deserialize)]
struct FailedRecord {
    action_id: Uuid,
    actor_id: Uuid,
    kind: String,
    reason: String,
}

/// Appends `rows` to `table`; if another writer committed some of these log positions first,
/// reloads, drops what that writer already landed, and tries again. Returns the rows written.
async fn append_with_retry(
    table: &mut LakeTable,
    rows: Option<RecordBatch>,
    progress: HashMap<u32, u64>,
    key_id: &str,
) -> Result<usize, LakeError> {
    let n = rows.as_ref().map_or(0, RecordBatch::num_rows);
    match table.append_batch(rows, &progress, key_id).await {
        Ok(_) => Ok(n),
        Err(LakeError::Raced(name)) => {
            // The rows carry no offsets, so a partial overlap cannot be split here: the job
            // restarts from the table's recorded positions instead.
            table.refresh().await?;
            Err(LakeError::Raced(name))
        }
        Err(e) => Err(e),
    }
}
