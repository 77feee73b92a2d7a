//! `philo bench load`: for tests and benchmarks. Appends a deterministic workload to the
//! embedded log of a data directory while the social job applies it in this process, resuming
//! after whatever an earlier run (possibly killed with `kill -9`) appended, and prints the
//! views' digests once the job has caught up.
//!
//! Output: on stderr first `{"resuming": {"log_records": …, "job_position": …}}` (records
//! already in the log, records the job had already applied), then on stdout one JSON line with
//! the report: `appended` (records in the log), `workload` (records of the whole stream),
//! `digests` (per view), and counters of this run.
//!
//! # What it runs
//! - The log and the state store are opened exactly as `philo up` opens them
//!   ([`app::open_log`], [`open_store`] on [`PhiloConfig::streams_config`]'s directory), so the
//!   data directory has the same layout; `--partitions` and the small-config flags override the
//!   configuration's values, and log retention is off (the workload's clock starts in 2025, so
//!   age-based retention would delete its records).
//! - The workload is [`WorkloadConfig::scaled`]`(seed, users, actions)`: registrations, the
//!   initial follow graph, then the content mix. With `--fail-every N`, after every N-th content
//!   action one more action by the same actor, stamped at the same time, is added that the job
//!   must refuse (alternately a comment on a post that never existed and a follow of oneself),
//!   so the failed-actions view is not empty. The stream is a function of the arguments alone.
//! - Records are appended in chunks of `--chunk`, one [`Log::append`] call each. The embedded
//!   log writes a chunk's records of one shard as one atomic batch, and each shard's journal
//!   recovers a prefix of its batches, so after a crash every partition holds a prefix of its
//!   share of the stream — shard by shard, not necessarily whole chunks. A restart walks the
//!   stream chunk by chunk and appends, per chunk, the records their partitions do not hold
//!   yet, so every partition ends up with exactly the records, in the order, of an
//!   uninterrupted run.
//!
//! # Why the job is driven here rather than by [`Streams`](philo_streams::runtime::Streams)
//! The embedded log's writers raise the partitions' high watermarks one after the other once a
//! batch is durable (and a chunk spans shards, each with its own writer), so a job sampling
//! them at that instant can see part of one append. For ingest
//! that is harmless (an action refers only to entities whose 202 came back, so they are in an
//! earlier group commit), but one chunk of this workload holds an entity and actions that refer
//! to it, so the job could see the reference first and fail it — a race that would make the
//! views differ between two runs. The job here (same processor, store and job settings as
//! `Streams` uses) therefore only runs up to the end of the last chunk wholly in the log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use clap::Args;
use philo_events::action::{CommentCreated, FollowCreated};
use philo_events::log::{ACTIONS_TOPIC, Log, Record, partition_for_key};
use philo_events::{Action, Envelope};
use philo_streams::job::{Job, StepStats};
use philo_streams::runtime::{open_store, view_digests};
use philo_streams::social::SocialProcessor;
use philo_streams::store::StateStore;
use philo_streams::workload::{Workload, WorkloadConfig};
use tokio::sync::watch;
use uuid::Uuid;

use crate::app;
use crate::config::{Overrides, PhiloConfig};

#[derive(Args)]
pub struct LoadArgs {
    /// Data directory (created if needed; an earlier run's is resumed).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Seeds the workload.
    #[arg(long)]
    pub seed: u64,
    /// Registered users.
    #[arg(long)]
    pub users: usize,
    /// Content actions after the registrations and the initial follow graph.
    #[arg(long)]
    pub actions: usize,
    /// Records per append call.
    #[arg(long, default_value_t = 500)]
    pub chunk: usize,
    /// Partitions of the `actions` topic (must match an existing log).
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Add an action the job must refuse after every N-th content action (0: none).
    #[arg(long, default_value_t = 0)]
    pub fail_every: usize,
    /// Most items kept in a home feed (default: the configuration's).
    #[arg(long)]
    pub feed_cap: Option<usize>,
    /// Follower count from which an author is pulled at read time (default: the configuration's).
    #[arg(long)]
    pub pull_threshold: Option<i64>,
    /// Recent items a new follow copies into the feed (default: the configuration's).
    #[arg(long)]
    pub backfill: Option<usize>,
}

/// The log record for an envelope, shaped as ingest writes it (key = actor, schema headers).
pub(super) fn record_of(env: &Envelope) -> Record {
    Record::new(
        Bytes::copy_from_slice(env.actor_id.as_bytes()),
        env.to_json(),
        env.received_at.timestamp_millis(),
    )
    .with_header("content-type", Bytes::from_static(b"application/json"))
    .with_header(
        philo_events::KIND_HEADER,
        Bytes::from_static(env.action.kind().as_str().as_bytes()),
    )
    .with_header(
        "philo-schema-version",
        Bytes::from(env.schema_version.to_string()),
    )
}

/// The workload with the refused actions of `--fail-every` interleaved (see the module docs).
struct LoadStream {
    workload: Workload,
    seed: u64,
    fail_every: usize,
    /// Index of the first content action in the workload's stream.
    content_start: usize,
    /// Workload envelopes yielded so far.
    yielded: usize,
    pending: Option<Envelope>,
    len: usize,
}

impl LoadStream {
    fn new(config: WorkloadConfig, fail_every: usize) -> Self {
        let actions = config.actions;
        let seed = config.seed;
        let workload = Workload::new(config);
        let content_start = workload.users().len() + workload.initial_follows();
        let extra = actions.checked_div(fail_every).unwrap_or(0);
        let len = workload.len() + extra;
        Self {
            workload,
            seed,
            fail_every,
            content_start,
            yielded: 0,
            pending: None,
            len,
        }
    }

    /// The `n`-th refused action (from 0), after `after`.
    fn refused(&self, n: u64, after: &Envelope) -> Envelope {
        let mut bits = [0u8; 10];
        bits.copy_from_slice(&mix(self.seed ^ 0x0fa1_1ed0, n).to_le_bytes()[..10]);
        let millis = after.received_at.timestamp_millis().max(0) as u64;
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid();
        let action: Action = if n.is_multiple_of(2) {
            let phantom = Uuid::from_u128(mix(self.seed, n) | 1);
            CommentCreated {
                target_id: phantom,
                body: "Replying to a post that was never written.".into(),
                parent_id: None,
            }
            .into()
        } else {
            FollowCreated {
                user_id: after.actor_id,
            }
            .into()
        };
        Envelope::with_id(id, after.actor_id, action, after.received_at)
    }
}

/// SplitMix64 of `(seed, n)`: 128 well-mixed bits would be overkill for ids of refused actions.
fn mix(seed: u64, n: u64) -> u128 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let a = z ^ (z >> 31);
    let b = a.wrapping_mul(0xd6e8_feb8_6659_fd93).rotate_left(29);
    (u128::from(a) << 64) | u128::from(b)
}

impl Iterator for LoadStream {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        if let Some(env) = self.pending.take() {
            return Some(env);
        }
        let env = self.workload.next()?;
        let index = self.yielded;
        self.yielded += 1;
        if self.fail_every > 0 && index >= self.content_start {
            let content = index - self.content_start + 1;
            if content.is_multiple_of(self.fail_every) {
                let n = (content / self.fail_every - 1) as u64;
                self.pending = Some(self.refused(n, &env));
            }
        }
        Some(env)
    }
}

async fn watermarks(log: &dyn Log, partitions: u32) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let wm = log.watermarks(ACTIONS_TOPIC, p).await?;
        ensure!(
            wm.low == 0,
            "partition {p} starts at offset {}: retention dropped records, the run cannot resume",
            wm.low
        );
        out.push(wm.high);
    }
    Ok(out)
}

pub async fn run(args: LoadArgs) -> Result<()> {
    ensure!(args.chunk > 0, "--chunk must be positive");
    let started = Instant::now();
    let mut config = PhiloConfig::load(
        None,
        &Overrides {
            data_dir: Some(args.data_dir.clone()),
            ..Default::default()
        },
    )?;
    config.log.partitions = args.partitions;
    // The workload's clock starts in January 2025: age-based retention would delete its records
    // under the job. The run must keep every record to resume and to count them.
    config.log.retention_hours = 0;
    config.log.retention_bytes_per_partition = 0;
    if let Some(v) = args.feed_cap {
        config.streams.feed_cap = v;
    }
    if let Some(v) = args.pull_threshold {
        config.streams.pull_threshold = v;
    }
    if let Some(v) = args.backfill {
        config.streams.backfill = v;
    }
    let sc = config.streams_config();
    // Both recover their journals after a crash: open them side by side.
    let (log, store) = {
        let dir = sc.state_dir.clone();
        tokio::join!(
            app::open_log(&config),
            tokio::task::spawn_blocking(move || open_store(&dir))
        )
    };
    let log = log?;
    let store: Arc<dyn StateStore> =
        store?.with_context(|| format!("opening the state store in {}", sc.state_dir.display()))?;
    let partitions = log.partitions(ACTIONS_TOPIC).await?;
    let initial = watermarks(&*log, partitions).await?;
    let resumed_from: u64 = initial.iter().sum();

    // The job follows the appends on its own thread, up to the last whole chunk.
    let (target_tx, target_rx) = watch::channel(vec![0; partitions as usize]);
    let job = {
        let job = Job::open(
            SocialProcessor::new(sc.social.clone()),
            log.clone(),
            store.clone(),
            sc.job.clone(),
        )
        .await?;
        eprintln!(
            "{}",
            serde_json::json!({"resuming": {"log_records": resumed_from, "job_position": job.positions().iter().sum::<u64>()}})
        );
        std::thread::Builder::new()
            .name("philo-bench-load-job".into())
            .spawn(move || follow_appends(job, target_rx))?
    };

    let workload = WorkloadConfig::scaled(args.seed, args.users, args.actions);
    let mut stream = LoadStream::new(workload, args.fail_every);
    let total = stream.len as u64;
    ensure!(
        resumed_from <= total,
        "the log already holds {resumed_from} records, more than this workload's {total}: another workload's data directory?"
    );
    // Per partition, how many of the stream's records so far land there.
    let mut in_stream = vec![0u64; partitions as usize];
    let mut appended_now = 0u64;
    loop {
        let chunk: Vec<Envelope> = stream.by_ref().take(args.chunk).collect();
        if chunk.is_empty() {
            break;
        }
        // The log holds a prefix of each partition's share (see the module docs): a record is
        // missing when its partition held fewer records than precede it there.
        let mut missing = Vec::new();
        for env in &chunk {
            let p = partition_for_key(env.actor_id.as_bytes(), partitions) as usize;
            if in_stream[p] >= initial[p] {
                missing.push(record_of(env));
            }
            in_stream[p] += 1;
        }
        if !missing.is_empty() {
            appended_now += missing.len() as u64;
            log.append(ACTIONS_TOPIC, missing).await?;
        }
        // The chunk is wholly in the log now (`append` returns once all of it is durable).
        if target_tx.send(in_stream.clone()).is_err() {
            break; // the job stopped on an error; joining it reports the error
        }
    }
    let append_seconds = started.elapsed().as_secs_f64();
    let final_marks = watermarks(&*log, partitions).await?;
    drop(target_tx);
    let (stats, positions, deliveries) =
        tokio::task::spawn_blocking(move || job.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the job thread panicked"))??;
    ensure!(
        final_marks == in_stream,
        "the log holds {final_marks:?} records per partition, the workload {in_stream:?}: another workload's data directory?"
    );
    ensure!(
        positions == final_marks,
        "the job stopped at {positions:?}, short of the log's end {final_marks:?}"
    );
    let digests = tokio::task::spawn_blocking(move || view_digests(&*store, &[])).await??;
    let appended: u64 = final_marks.iter().sum();
    println!(
        "{}",
        serde_json::json!({
            "appended": appended,
            "workload": total,
            "resumed_from": resumed_from,
            "appended_now": appended_now,
            "applied": stats.applied,
            "failed": stats.failed,
            "duplicates": stats.duplicates,
            "deliveries": deliveries,
            "append_seconds": append_seconds,
            "seconds": started.elapsed().as_secs_f64(),
            "digests": digests
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<serde_json::Map<_, _>>(),
        })
    );
    Ok(())
}

/// Runs the job up to each target the appender publishes, then to the last one once the
/// appender is done. Returns what it did, where it stopped, and its feed deliveries.
fn follow_appends(
    mut job: Job<SocialProcessor>,
    mut targets: watch::Receiver<Vec<u64>>,
) -> Result<(StepStats, Vec<u64>, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut total = StepStats::default();
        loop {
            let target = targets.borrow_and_update().clone();
            total += job.run_to(&target).await?;
            if targets.changed().await.is_err() {
                let target = targets.borrow().clone();
                total += job.run_to(&target).await?;
                break;
            }
        }
        let deliveries = job.processor().deliveries();
        Ok((total, job.positions().to_vec(), deliveries))
    })
}
