//! Running the stream jobs: each on its own thread (their store work is synchronous), restarted
//! from their durable positions if they fail, stopped on request. Also rebuilds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use philo_events::log::{ACTIONS_TOPIC, Log};

use crate::job::{Job, JobConfig, JobError, Progress, StepStats};
use crate::read::{ItemCache, SocialViews};
use crate::social::{SocialConfig, SocialProcessor, tables};
use crate::store::{EmbeddedStore, EmbeddedStoreConfig, ResidentTables, StateStore, StoreError};

/// Settings of the streams role.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Directory of the embedded state store.
    pub state_dir: PathBuf,
    pub job: JobConfig,
    pub social: SocialConfig,
    /// Share the work with the other instances of the job's consumer group, where the log has
    /// a group coordinator (Kafka): hold the per-user views of the partitions the group assigns
    /// (ADR 009). Off, the instance holds every view (`philo up`, whose API reads them all).
    pub join_group: bool,
}

impl StreamsConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            job: JobConfig::default(),
            social: SocialConfig::default(),
            join_group: false,
        }
    }
}

/// The embedded state store's settings for the social views under `dir`: home feeds are a
/// resident table (in memory, durable through a changelog and checkpoints): a fan-out writes
/// one row into each follower's feed, which as LSM rows capped the delivery rate at the
/// store's row rate (ADR 011).
pub fn store_config(dir: &Path) -> EmbeddedStoreConfig {
    let mut config = EmbeddedStoreConfig::new(dir);
    config.resident_tables = ResidentTables::Named(vec![tables::FEED.to_owned()]);
    config
}

/// Opens the embedded state store under `dir` ([`store_config`]).
pub fn open_store(dir: &Path) -> Result<Arc<EmbeddedStore>, StoreError> {
    Ok(Arc::new(EmbeddedStore::open(store_config(dir))?))
}

/// Running stream jobs and their read side.
pub struct Streams {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    progress: Arc<Progress>,
    views: SocialViews,
}

impl Streams {
    /// Starts the social job against `log` and `store`. Returns once the job has loaded its
    /// positions (reads may wait on progress from then on).
    pub async fn start(
        log: Arc<dyn Log>,
        store: Arc<dyn StateStore>,
        config: StreamsConfig,
    ) -> Result<Self, JobError> {
        let processor = SocialProcessor::new(config.social.clone());
        let mut job = Job::open(processor, log.clone(), store.clone(), config.job.clone()).await?;
        let progress = job.progress();
        let views = SocialViews::new(store.clone(), config.social.clone());
        let cache = views.item_cache();
        job.on_commit(cache.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let config = config.clone();
            let store = store.clone();
            std::thread::Builder::new()
                .name("philo-streams-social".into())
                .spawn(move || run_forever(job, log, store, config, stop, cache))
                .map_err(|e| StoreError::Storage(format!("spawning the job thread: {e}")))?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            progress,
            views,
        })
    }

    /// How far the job has applied the log.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The read side.
    pub fn views(&self) -> SocialViews {
        self.views.clone()
    }

    /// Stops the job after its current step and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs the job until stopped; on an error, waits and reopens it from its durable positions
/// (a fresh processor, so no cache can outlive a failed write).
fn run_forever(
    job: Job<SocialProcessor>,
    log: Arc<dyn Log>,
    store: Arc<dyn StateStore>,
    config: StreamsConfig,
    stop: Arc<AtomicBool>,
    cache: Arc<ItemCache>,
) {
    // A reopened job reports to the readers of the first one and keeps their cache current.
    let progress = job.progress();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the job runtime");
            return;
        }
    };
    rt.block_on(async move {
        let mut job = Some(job);
        let mut backoff = Duration::from_millis(100);
        while !stop.load(Ordering::Acquire) {
            let mut current = match job.take() {
                Some(j) => j,
                None => {
                    let processor = SocialProcessor::new(config.social.clone());
                    match Job::open(processor, log.clone(), store.clone(), config.job.clone()).await
                    {
                        Ok(mut j) => {
                            j.adopt_progress(progress.clone());
                            // Whatever the failed step left in the store, nothing cached
                            // before it is trusted.
                            cache.invalidate_all();
                            j.on_commit(cache.clone());
                            j
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reopening the social job failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                            continue;
                        }
                    }
                }
            };
            match run_job(&mut current, &log, &config, &stop).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "the social job failed; restarting from its durable position");
                    metrics::counter!("philo_streams_job_restarts_total", "job" => crate::social::JOB)
                        .increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
}

/// Runs `job` until `stop` is set. With [`StreamsConfig::join_group`], where the log has a
/// shared group coordinator (Kafka), the job joins the consumer group named after it and holds
/// the per-user rows of the partitions the group assigns it, resharding at a step boundary
/// whenever the assignment changes (ADR 009); otherwise it holds every partition.
async fn run_job(
    job: &mut Job<SocialProcessor>,
    log: &Arc<dyn Log>,
    config: &StreamsConfig,
    stop: &AtomicBool,
) -> Result<(), JobError> {
    let member = if config.join_group {
        log.join_group(crate::social::JOB, ACTIONS_TOPIC).await?
    } else {
        None
    };
    let mut assignment = match &member {
        Some(m) => {
            job.set_member(m.clone());
            Some(m.assignment())
        }
        None => {
            let all = (0..job.shards().partitions()).collect();
            reshard(job, config, &all).await?;
            None
        }
    };
    let mut idle = config.job.idle_poll;
    // Where the log signals appends (embedded), an idle job waits for the signal instead of
    // sleeping, so a record appended during the wait is applied at once rather than after the
    // rest of a sleep of up to `idle_poll` × 8. The wait stays bounded as a poll.
    let mut appends = log.appends(ACTIONS_TOPIC);
    while !stop.load(Ordering::Acquire) {
        if let Some(rx) = &mut assignment {
            // Nothing is applied before the group's first assignment: the job does not yet
            // know which users' rows to hold.
            if !rx.borrow().assigned {
                let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
                continue;
            }
            if rx.has_changed().unwrap_or(false) || rx.borrow().partitions != job.shards().set() {
                let target = rx.borrow_and_update().partitions.clone();
                reshard(job, config, &target).await?;
            }
        }
        if let Some(rx) = &mut appends {
            rx.borrow_and_update();
        }
        let s = job.step().await?;
        if s.records == 0 {
            match &mut appends {
                Some(rx) => {
                    let waited = tokio::time::timeout(config.job.idle_poll * 8, rx.changed());
                    if let Ok(Err(_)) = waited.await {
                        // The log's writer is gone: no signal will come.
                        tokio::time::sleep(idle).await;
                    }
                }
                None => tokio::time::sleep(idle).await,
            }
            idle = (idle * 2).min(config.job.idle_poll * 8);
        } else {
            idle = config.job.idle_poll;
        }
    }
    job.finish_commits().await;
    Ok(())
}

/// Moves the job's per-user rows to `target`, replaying gained partitions into a scratch store
/// beside the live one (removed afterwards).
pub async fn reshard(
    job: &mut Job<SocialProcessor>,
    config: &StreamsConfig,
    target: &std::collections::BTreeSet<u32>,
) -> Result<crate::job::Reshard, JobError> {
    if *target == job.shards().set() {
        return Ok(crate::job::Reshard::default());
    }
    let dir = scratch_dir(&config.state_dir);
    let io =
        |e: std::io::Error| JobError::Store(StoreError::Storage(format!("{}: {e}", dir.display())));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io)?;
    }
    let report = {
        let scratch: Arc<dyn StateStore> = open_store(&dir)?;
        job.reshard(target, scratch, SocialProcessor::new(config.social.clone()))
            .await?
    };
    std::fs::remove_dir_all(&dir).map_err(io)?;
    crate::metrics::reshard(crate::social::JOB, report.replayed);
    Ok(report)
}

/// Where [`reshard`] replays gained partitions: next to the live store.
fn scratch_dir(state_dir: &Path) -> PathBuf {
    let mut name = state_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".reshard");
    state_dir.with_file_name(name)
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// Per view (table group) digest of the live store before the rebuild.
    pub live: Vec<(String, String)>,
    /// Per view digest of the rebuilt store.
    pub rebuilt: Vec<(String, String)>,
    pub stats: StepStats,
    pub took: Duration,
}

impl RebuildReport {
    /// Whether every compared view is equal.
    pub fn equal(&self) -> bool {
        self.live == self.rebuilt
    }
}

/// The views of the social job, by name, and their tables.
pub const VIEWS: &[(&str, &[&str])] = &[
    (
        "graph",
        &[
            tables::FOLLOW_EDGES,
            tables::FOLLOWING,
            tables::FOLLOWERS,
            tables::BLOCKS,
            tables::USER_STATS,
            tables::PULLED,
        ],
    ),
    ("feed", &[tables::FEED, tables::AUTHOR_ITEMS]),
    (
        "content",
        &[
            tables::USERS,
            tables::USERNAMES,
            tables::ITEMS,
            tables::CHILDREN,
            tables::ITEM_STATS,
            tables::REACTIONS,
            tables::DONATION_TOTALS,
            tables::RSVPS,
            tables::OFFER_BOXES,
        ],
    ),
    ("engagement", &[tables::ENGAGEMENT]),
    (
        "notifications",
        &[
            tables::NOTIFICATIONS,
            tables::NOTIF_GROUPS,
            tables::NOTIF_STATE,
            tables::SUBSCRIBERS,
        ],
    ),
    ("failed", &[crate::job::FAILED_TABLE]),
];

/// Per-view digests of `store`, for `views` (all when empty).
pub fn view_digests(
    store: &dyn StateStore,
    views: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for (name, tables) in VIEWS {
        if views.is_empty() || views.iter().any(|v| v == name) {
            out.push((name.to_string(), crate::job::digest(store, tables)?));
        }
    }
    Ok(out)
}

/// Whether an instance holding `shards` holds a row: every row every instance holds, and the
/// per-user rows of users in `shards`.
fn held_by(shards: &crate::shards::Shards) -> impl Fn(&str, &[u8], &[u8], &[u8]) -> bool + '_ {
    |table, pk, ck, v| {
        let owner = if table == crate::job::FAILED_TABLE {
            crate::job::failed_row_owner(v)
        } else {
            crate::social::row_owner(table, pk, ck)
        };
        owner.is_none_or(|u| shards.owns_user(&u))
    }
}

/// Per-view digests of the rows of `store` that an instance holding `shards` holds: every row
/// every instance holds, and the per-user rows of users in `shards`. Equal for a store that
/// holds `shards` and for one process's store restricted to them (ADR 009).
pub fn view_digests_held(
    store: &dyn StateStore,
    views: &[String],
    shards: &crate::shards::Shards,
) -> Result<Vec<(String, String)>, StoreError> {
    let keep = held_by(shards);
    let mut out = Vec::new();
    for (name, tables) in VIEWS {
        if views.is_empty() || views.iter().any(|v| v == name) {
            out.push((
                name.to_string(),
                crate::job::digest_where(store, tables, &keep)?,
            ));
        }
    }
    Ok(out)
}

/// Like [`view_digests_held`], per table (to find which table of a view differs).
pub fn table_digests_held(
    store: &dyn StateStore,
    shards: &crate::shards::Shards,
) -> Result<Vec<(String, String)>, StoreError> {
    let keep = held_by(shards);
    let mut out = Vec::new();
    for (_, tables) in VIEWS {
        for table in *tables {
            out.push((
                table.to_string(),
                crate::job::digest_where(store, &[table], &keep)?,
            ));
        }
    }
    Ok(out)
}

/// Rebuilds the social views from the log into a fresh store at `scratch_dir`, after bringing
/// the live store (`live`) up to the same log positions, and compares per-view digests.
///
/// The views of the social job derive from each other (a feed needs the graph as it was at each
/// post), so a rebuild replays the whole job; `views` selects which views are compared and,
/// with `swap`, replaced. Returns the rebuilt store for the caller to swap in.
pub async fn rebuild(
    log: Arc<dyn Log>,
    live: Arc<dyn StateStore>,
    scratch: Arc<dyn StateStore>,
    config: &StreamsConfig,
    views: &[String],
) -> Result<RebuildReport, JobError> {
    let started = Instant::now();
    for v in views {
        if !VIEWS.iter().any(|(n, _)| n == v) {
            return Err(JobError::Store(StoreError::Storage(format!(
                "unknown view `{v}` (known: {})",
                VIEWS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))));
        }
    }
    let partitions = log.partitions(ACTIONS_TOPIC).await?;
    let mut target = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let wm = log.watermarks(ACTIONS_TOPIC, p).await?;
        if wm.low > 0 {
            return Err(JobError::Gap {
                partition: p,
                position: 0,
                low: wm.low,
            });
        }
        target.push(wm.high);
    }
    let mut live_job = Job::open(
        SocialProcessor::new(config.social.clone()),
        log.clone(),
        live.clone(),
        config.job.clone(),
    )
    .await?;
    live_job.run_to(&target).await?;
    let held = live_job.shards();
    let mut fresh = Job::open(
        SocialProcessor::new(config.social.clone()),
        log,
        scratch.clone(),
        JobConfig {
            failed_topic: None,
            ..config.job.clone()
        },
    )
    .await?;
    // The rebuilt store holds the same users' rows as the live one (ADR 009).
    fresh.set_shards(held);
    let stats = fresh.run_to(&target).await?;
    Ok(RebuildReport {
        live: view_digests(&*live, views)?,
        rebuilt: view_digests(&*scratch, views)?,
        stats,
        took: started.elapsed(),
    })
}

/// The view a table belongs to.
pub fn view_of(table: &str) -> Option<&'static str> {
    VIEWS
        .iter()
        .find(|(_, tables)| tables.contains(&table))
        .map(|(name, _)| *name)
}

/// Replays the log from its start into `scratch` (a fresh store) up to `target` (per partition,
/// exclusive), calling `observer` with every action: what the job did with it and which tables
/// it wrote. Publishes nothing (no failed topic) and leaves the live views alone.
pub async fn replay(
    log: Arc<dyn Log>,
    scratch: Arc<dyn StateStore>,
    config: &StreamsConfig,
    target: &[u64],
    observer: crate::job::Observer,
) -> Result<StepStats, JobError> {
    let mut job = Job::open(
        SocialProcessor::new(config.social.clone()),
        log,
        scratch,
        JobConfig {
            failed_topic: None,
            ..config.job.clone()
        },
    )
    .await?;
    job.observe(observer);
    job.run_to(target).await
}

/// Replaces `views` (all when empty) of `live` with those of `rebuilt`: each table is truncated
/// and refilled, then synced. Both stores must be at the same log positions (as [`rebuild`]
/// leaves them), so the other views stay consistent with the replaced ones.
pub fn replace_views(
    live: &dyn StateStore,
    rebuilt: &dyn StateStore,
    views: &[String],
) -> Result<u64, StoreError> {
    let mut rows = 0u64;
    for (name, tables) in VIEWS {
        if !views.is_empty() && !views.iter().any(|v| v == name) {
            continue;
        }
        for &table in *tables {
            live.truncate(table)?;
            let mut batch = crate::store::WriteBatch::new();
            let mut failed: Option<StoreError> = None;
            rebuilt.for_each(table, &mut |pk, ck, v| {
                batch.put(
                    table,
                    bytes::Bytes::copy_from_slice(pk),
                    bytes::Bytes::copy_from_slice(ck),
                    bytes::Bytes::copy_from_slice(v),
                );
                rows += 1;
                if batch.len() >= 10_000
                    && let Err(e) = live.apply(std::mem::take(&mut batch))
                {
                    failed = Some(e);
                    return false;
                }
                true
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            live.apply(batch)?;
        }
    }
    live.sync()?;
    Ok(rows)
}
