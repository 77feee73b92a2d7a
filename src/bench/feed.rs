//! `philo bench feed`: the social job's fan-out throughput and footprint, in process, against
//! the raw write rate of the same state store measured in the same run; then freshness and feed
//! read latency against a `philo up` child process under ingest load.
//!
//! - **Fan-out.** The default workload (100 k users, 5 celebrities with 50 k followers, a
//!   power-law graph, then `--actions` content actions) is appended to a fresh embedded log
//!   and the social job runs from zero to the end (its steps until caught up, as
//!   `Job::catch_up` does), in two timed phases: registrations and the initial follow graph
//!   (no feed rows yet: nobody has posted), then the content actions. Reported: feed rows
//!   written per second of the content phase's job time, records per second of each, and as
//!   the reference the time the store takes for the content phase's writes alone: as many
//!   batches as the job had steps (a step commits one batch and syncs once), holding its feed
//!   rows and one dedupe marker per record, spread evenly, each batch synced.
//! - **Burst.** Then `--burst-posts` posts by the `--burst-authors` most-followed authors under
//!   the pull threshold (pushed to their followers), in turn: the writes fan-out-on-write exists
//!   for. Reported: feed rows written per second of that phase's job time (the content mix
//!   cannot show a fan-out rate: its 3 – 4 deliveries per action make the job's per-action work
//!   the bound), how the job's time split between applying actions and committing steps, how
//!   many feed trims read the committed store (ADR 011), and the same reference as above for
//!   the burst's writes. `--feed-store lsm`
//!   keeps feeds as LSM rows instead of the resident table (ADR 011), for comparison.
//! - **Footprint.** The state store's bytes on disk after a sync, this process's resident
//!   memory growth over the job, per million feed rows written, and the memory the resident
//!   feed rows take.
//! - **Freshness and reads.** Authors and readers register over HTTP, readers follow authors,
//!   authors post a little; then for `--seconds` an open-loop load appends posts, comments and
//!   reactions at `--ingest-rate` actions/s (batches of `--ingest-batch`), readers read their
//!   feeds (`limit=50`) at `--read-rate`/s, and `--probe-rate` times a second an author posts
//!   one post and one of their followers reads `GET /v1/feed?after=<its position>&limit=50`
//!   (which waits until the views include it; when newer items pushed the post past the first
//!   page, the probe follows `next_cursor`). Freshness is the time from the post's 202 to the
//!   answer holding the post. Open-loop latencies count from the scheduled send
//!   time, so a stall is not hidden. As the reference, `--reference-rate` times a second the
//!   same client asks `GET /healthz` (no work behind it) under the same load: what any read's
//!   latency includes on this machine (client, HTTP, scheduling) before the read does anything.
//! - **Where the server's time went.** The server's CPU over the load, and its own histograms
//!   (feed handler, `after=` waits, group commit, the social job's steps and their phases) as
//!   deltas of two `/metrics` scrapes (`scrape.rs`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use philo_events::log::{ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, Log, Record};
use philo_streams::job::{Job, JobConfig};
use philo_streams::runtime::store_config;
use philo_streams::social::{SocialConfig, SocialProcessor};
use philo_streams::store::{
    EmbeddedStore, EmbeddedStoreConfig, ResidentTables, StateStore, WriteBatch,
};
use philo_streams::workload::{Workload, WorkloadConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::load::record_of;
use super::scrape::{Interval, Scrape};
use super::server::ServerProcess;

#[derive(Args, Clone)]
pub struct FeedArgs {
    /// Users of the fan-out workload.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Content actions of the fan-out workload (after registrations and the initial graph).
    #[arg(long, default_value_t = 1_000_000)]
    pub actions: usize,
    /// Seeds the workload and the load generators.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Posts of the burst phase, after the content actions: the `--burst-authors`
    /// most-followed authors under the pull threshold post in turn (0: no burst).
    #[arg(long, default_value_t = 1_000)]
    pub burst_posts: usize,
    /// Authors of the burst phase.
    #[arg(long, default_value_t = 50)]
    pub burst_authors: usize,
    /// Where the fan-out phase keeps home feeds: `resident` (in memory with a changelog, as
    /// `philo up` does) or `lsm` (one LSM row per delivery, as before ADR 011), for comparison.
    #[arg(long, default_value = "resident", value_parser = ["resident", "lsm"])]
    pub feed_store: String,
    /// Records per append while loading the log.
    #[arg(long, default_value_t = 16_384)]
    pub chunk: usize,
    /// Partitions of the `actions` topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Authors registered for the freshness phase.
    #[arg(long, default_value_t = 50)]
    pub authors: usize,
    /// Readers registered for the freshness phase; each follows `--follows` authors.
    #[arg(long, default_value_t = 200)]
    pub readers: usize,
    /// Authors each reader follows.
    #[arg(long, default_value_t = 10)]
    pub follows: usize,
    /// Seconds of the measured freshness phase.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Actions per second appended during the freshness phase (open loop).
    #[arg(long, default_value_t = 5_000.0)]
    pub ingest_rate: f64,
    /// Concurrent ingest senders of the freshness phase (each waits for its answers, so a
    /// slow log needs more to offer the whole rate).
    #[arg(long, default_value_t = 16)]
    pub ingest_workers: usize,
    /// Actions per ingest request (1: single `POST /v1/actions`).
    #[arg(long, default_value_t = 10)]
    pub ingest_batch: usize,
    /// Feed reads per second during the freshness phase (open loop).
    #[arg(long, default_value_t = 2_000.0)]
    pub read_rate: f64,
    /// Freshness probes per second.
    #[arg(long, default_value_t = 20.0)]
    pub probe_rate: f64,
    /// Reference requests per second during the freshness phase: `GET /healthz` (no work
    /// behind it) from the same client under the same load, the floor of what a read's
    /// latency can be on this machine (0: none).
    #[arg(long, default_value_t = 200.0)]
    pub reference_rate: f64,
    /// Skip the fan-out phase.
    #[arg(long)]
    pub skip_fanout: bool,
    /// Skip the freshness phase.
    #[arg(long)]
    pub skip_freshness: bool,
    /// Scratch directory (default: a fresh temporary one, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also print the results as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// The freshness server's log: `embedded` or `kafka://host:port[,…]` (the fan-out phase
    /// always runs in process on the embedded log).
    #[arg(long, default_value = "embedded")]
    pub log: String,
    /// Run the freshness server without the lake's anonymizer (`lake.enabled = false`), as a
    /// deployment at scale does, where the lake is its own role on other machines.
    #[arg(long)]
    pub without_lake: bool,
}

impl FeedArgs {
    /// The command line's defaults.
    pub fn defaults() -> Self {
        use clap::FromArgMatches;
        let cmd = <Self as Args>::augment_args(clap::Command::new("feed"));
        Self::from_arg_matches(&cmd.get_matches_from(["feed"])).expect("the defaults parse")
    }
}

/// Runs the benchmark, prints its report, and returns the figures as JSON.
pub async fn run(args: FeedArgs) -> Result<serde_json::Value> {
    ensure!(
        args.chunk > 0 && args.ingest_batch > 0 && args.partitions > 0 && args.ingest_workers > 0,
        "counts must be positive"
    );
    ensure!(
        args.authors > 0 && args.readers > 0 && (1..=args.authors).contains(&args.follows),
        "need authors, readers, and 1..=authors follows per reader"
    );
    let scratch = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "philo-bench-feed-{}",
            uuid::Uuid::new_v4().simple()
        )),
    };
    std::fs::create_dir_all(&scratch)?;
    let fanout = if args.skip_fanout {
        None
    } else {
        Some(fanout(&args, &scratch.join("fanout")).await?)
    };
    let fresh = if args.skip_freshness {
        None
    } else {
        Some(freshness(&args, &scratch.join("server")).await?)
    };
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(print(&args, fanout.as_ref(), fresh.as_ref()))
}

/// The job over one part of the log.
struct Phase {
    records: u64,
    steps: u64,
    time: Duration,
    applied: u64,
    failed: u64,
    deliveries: u64,
    /// Of `time`: applying actions to the steps' staged views, and committing the steps.
    applying: Duration,
    committing: Duration,
    /// Feed trims that read the committed store rather than the staged view.
    committed_trims: u64,
}

struct Fanout {
    append: Duration,
    log_bytes: u64,
    /// Registrations and the initial follow graph.
    graph: Phase,
    /// The content actions: where feeds are written.
    content: Phase,
    /// Posts by the most-followed pushed authors: fan-out on its own.
    burst: Option<Phase>,
    reference: Duration,
    reference_rows: u64,
    /// The burst's writes alone, as `reference` for the content phase.
    burst_reference: Option<Duration>,
    disk_bytes: u64,
    rss_growth: Option<u64>,
    /// Memory the resident feed rows take at the end, and how many rows that is.
    resident_bytes: u64,
    feed_rows: u64,
}

impl Fanout {
    fn records(&self) -> u64 {
        self.graph.records + self.content.records + self.burst.as_ref().map_or(0, |b| b.records)
    }
    fn deliveries(&self) -> u64 {
        self.graph.deliveries
            + self.content.deliveries
            + self.burst.as_ref().map_or(0, |b| b.deliveries)
    }
    fn per_million(&self, bytes: u64) -> f64 {
        bytes as f64 / 1_048_576.0 / (self.deliveries().max(1) as f64 / 1e6)
    }
}

/// Appends the next `n` envelopes of `workload` in chunks, generating each chunk on the
/// blocking pool. Returns the generator for the next call.
pub(super) async fn append(
    log: &dyn Log,
    mut workload: Workload,
    n: usize,
    chunk: usize,
) -> Result<Workload> {
    let mut left = n;
    while left > 0 {
        let take = left.min(chunk);
        let (w, records) = tokio::task::spawn_blocking(move || {
            let records: Vec<Record> = workload
                .by_ref()
                .take(take)
                .map(|e| record_of(&e))
                .collect();
            (workload, records)
        })
        .await?;
        workload = w;
        if records.is_empty() {
            break;
        }
        left -= records.len();
        log.append(ACTIONS_TOPIC, records).await?;
    }
    Ok(workload)
}

/// Steps the job until it has caught up (as `Job::catch_up` does, counting the steps).
async fn run_job(job: &mut Job<SocialProcessor>) -> Result<Phase> {
    let before = job.processor().deliveries();
    let trims_before = job.processor().trims_read_committed();
    let started = Instant::now();
    let mut phase = Phase {
        records: 0,
        steps: 0,
        time: Duration::ZERO,
        applied: 0,
        failed: 0,
        deliveries: 0,
        applying: Duration::ZERO,
        committing: Duration::ZERO,
        committed_trims: 0,
    };
    loop {
        let s = job.step().await?;
        if s.records == 0 {
            break;
        }
        phase.steps += 1;
        phase.records += s.records as u64;
        phase.applied += s.applied as u64;
        phase.failed += s.failed as u64;
        phase.applying += s.applying;
        phase.committing += s.committing;
    }
    phase.time = started.elapsed();
    phase.deliveries = job.processor().deliveries() - before;
    phase.committed_trims = job.processor().trims_read_committed() - trims_before;
    Ok(phase)
}

async fn fanout(args: &FeedArgs, dir: &Path) -> Result<Fanout> {
    let _ = std::fs::remove_dir_all(dir);
    let log: Arc<dyn Log> = {
        let mut c = EmbeddedLogConfig::new(dir.join("log"));
        // The workload's clock starts in 2025: no retention, or it deletes the records.
        c.max_age = None;
        c.max_bytes_per_partition = None;
        Arc::new(tokio::task::spawn_blocking(move || EmbeddedLog::open(c)).await??)
    };
    log.create_topic(ACTIONS_TOPIC, args.partitions).await?;
    let (seed, users, actions) = (args.seed, args.users, args.actions);
    let workload = tokio::task::spawn_blocking(move || {
        Workload::new(WorkloadConfig::scaled(seed, users, actions))
    })
    .await?;
    let graph_records = workload.users().len() + workload.initial_follows();
    let content_records = workload.len() - graph_records;

    // Registrations and the graph first, then the content, so the job's two phases are timed
    // apart: feeds are written only in the second.
    eprintln!("appending {graph_records} registrations and follows…");
    let started = Instant::now();
    let workload = append(&*log, workload, graph_records, args.chunk).await?;
    let mut append_time = started.elapsed();
    let rss_before = rss_bytes();
    let store = {
        let mut config = store_config(&dir.join("state"));
        if args.feed_store == "lsm" {
            config.resident_tables = ResidentTables::None;
        }
        Arc::new(tokio::task::spawn_blocking(move || EmbeddedStore::open(config)).await??)
    };
    let job_config = JobConfig::default();
    let mut job = Job::open(
        SocialProcessor::new(SocialConfig::default()),
        log.clone(),
        store.clone(),
        job_config.clone(),
    )
    .await?;
    eprintln!("social job over them…");
    let graph = run_job(&mut job).await?;
    eprintln!("appending {content_records} content actions…");
    let started = Instant::now();
    let workload = append(&*log, workload, content_records, args.chunk).await?;
    append_time += started.elapsed();
    eprintln!("social job over them…");
    let content = run_job(&mut job).await?;
    let total = (graph.records + content.records) as usize;
    ensure!(
        total == graph_records + content_records,
        "the job applied {total} of {} records",
        graph_records + content_records
    );
    let (workload, burst) = if args.burst_posts > 0 {
        let (posts, authors) = (args.burst_posts, args.burst_authors);
        let below = job.processor().config().pull_threshold.max(0) as usize;
        let (workload, records) = tokio::task::spawn_blocking(move || {
            let mut workload: Workload = workload;
            let records: Vec<Record> = workload
                .post_burst(posts, authors, below)
                .iter()
                .map(record_of)
                .collect();
            (workload, records)
        })
        .await?;
        eprintln!("appending a burst of {} posts…", records.len());
        let started = Instant::now();
        let n = records.len() as u64;
        for chunk in records.chunks(args.chunk) {
            log.append(ACTIONS_TOPIC, chunk.to_vec()).await?;
        }
        append_time += started.elapsed();
        eprintln!("social job over them…");
        let burst = run_job(&mut job).await?;
        ensure!(
            burst.records == n,
            "the job applied {} of {n} posts",
            burst.records
        );
        (workload, Some(burst))
    } else {
        (workload, None)
    };

    store.sync()?;
    let disk_bytes = store.disk_bytes();
    let resident_bytes = store.resident_bytes();
    let feed_rows = store.stored_rows(philo_streams::social::tables::FEED)?;
    let rss_growth = rss_before
        .zip(rss_bytes())
        .map(|(a, b)| b.saturating_sub(a));
    drop((job, store, workload));
    drop(log);
    let log_bytes = dir_size(&dir.join("log"));

    eprintln!("reference: the content phase's writes straight into a fresh store…");
    let ref_dir = dir.join("reference");
    let (steps, rows, markers) = (content.steps, content.deliveries, content.records);
    let reference = tokio::task::spawn_blocking(move || {
        raw_writes(&ref_dir, steps, rows, markers, job_config.dedupe_ttl)
    })
    .await??;
    let burst_reference = match &burst {
        Some(b) => {
            eprintln!("reference: the burst's writes straight into a fresh store…");
            let ref_dir = dir.join("reference-burst");
            let (steps, rows, markers) = (b.steps, b.deliveries, b.records);
            let ttl = JobConfig::default().dedupe_ttl;
            Some(
                tokio::task::spawn_blocking(move || {
                    raw_writes(&ref_dir, steps, rows, markers, ttl)
                })
                .await??,
            )
        }
        None => None,
    };
    Ok(Fanout {
        append: append_time,
        log_bytes,
        graph,
        content,
        burst,
        reference,
        reference_rows: rows + markers,
        burst_reference,
        disk_bytes,
        rss_growth,
        resident_bytes,
        feed_rows,
    })
}

/// `batches` batches into a fresh store, together holding `rows` feed-shaped rows and `markers`
/// marker-shaped rows (with the job's TTL) spread evenly, each batch applied and synced. Returns
/// the time taken.
fn raw_writes(
    dir: &Path,
    batches: u64,
    rows: u64,
    markers: u64,
    ttl: Duration,
) -> Result<Duration> {
    let _ = std::fs::remove_dir_all(dir);
    let store = EmbeddedStore::open(EmbeddedStoreConfig::new(dir))?;
    let batches = batches.max(1);
    let started = Instant::now();
    let (mut rows_done, mut markers_done) = (0u64, 0u64);
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..batches {
        let mut batch = WriteBatch::new();
        let item = rng.random::<u128>();
        for _ in rows_done..rows * (i + 1) / batches {
            // A feed row: pk follower, ck the item's id descending, value author ++ kind.
            let user = rng.random_range(0..100_000u128).to_be_bytes();
            let mut value = rng.random::<u128>().to_be_bytes().to_vec();
            value.push(b'p');
            batch.put(
                "reference_feed",
                Bytes::copy_from_slice(&user),
                Bytes::copy_from_slice(&(!item).to_be_bytes()),
                value,
            );
        }
        rows_done = rows * (i + 1) / batches;
        for _ in markers_done..markers * (i + 1) / batches {
            batch.put_with_ttl(
                "reference_applied",
                Bytes::copy_from_slice(&rng.random::<u128>().to_be_bytes()),
                Bytes::from_static(b"social"),
                Bytes::new(),
                ttl,
            );
        }
        markers_done = markers * (i + 1) / batches;
        store.apply(batch)?;
        store.sync()?;
    }
    Ok(started.elapsed())
}

struct Latencies {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl Latencies {
    fn new() -> Self {
        Self {
            ok: 0,
            failed: 0,
            elapsed: Duration::ZERO,
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    fn merge(&mut self, other: Latencies) {
        self.ok += other.ok;
        self.failed += other.failed;
        let _ = self.hist.add(other.hist);
    }
}

struct Freshness {
    ingest: Latencies,
    reads: Latencies,
    /// `GET /healthz` under the same load (`--reference-rate`).
    reference: Latencies,
    fresh: Latencies,
    /// Probes whose post was past the first page (newer items arrived in the same job step).
    later_page: u64,
    /// Probes whose post was not in the first 20 pages.
    missing: u64,
    /// Per probe, how long the log reported the post's position as past its end (tansu's
    /// hidden batch tail, docs/kafka.md): part of `fresh`, not spent in the views.
    hidden: Latencies,
    peak_rss: Option<u64>,
    /// The server's CPU time over the load, per second of it (2.0 = both cores of this VM).
    cpu_share: Option<f64>,
    /// The server's own histograms over the load (see [`BREAKDOWN`]); `None` where absent.
    breakdown: Vec<(&'static str, Option<Interval>)>,
}

#[derive(Clone)]
struct User {
    id: uuid::Uuid,
    auth: String,
}

/// How long before the end of the load the freshness probes stop.
const PROBE_MARGIN: Duration = Duration::from_secs(1);

/// How long a probe asks again while the log's high watermark is below its post's position.
const HIDDEN_TAIL_WAIT: Duration = Duration::from_secs(5);

async fn freshness(args: &FeedArgs, dir: &Path) -> Result<Freshness> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let env = [
        ("PHILO__LOG__BACKEND", args.log.clone()),
        ("PHILO__LAKE__ENABLED", (!args.without_lake).to_string()),
        (
            "PHILO__INGEST__RATE_LIMIT_PER_SECOND",
            "10000000".to_owned(),
        ),
        ("PHILO__INGEST__RATE_LIMIT_BURST", "10000000".to_owned()),
        (
            "PHILO__INGEST__AUTH_ATTEMPTS_PER_MINUTE",
            "1000000".to_owned(),
        ),
    ];
    let server = ServerProcess::start(dir, &env).await?;
    let base = Arc::new(server.base.clone());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    eprintln!(
        "registering {} authors and {} readers…",
        args.authors, args.readers
    );
    let names: Vec<String> = (0..args.authors)
        .map(|i| format!("author_{i}"))
        .chain((0..args.readers).map(|i| format!("reader_{i}")))
        .collect();
    let registered: Vec<Result<User>> = futures::stream::iter(names)
        .map(|name| register(&client, &base, name))
        .buffered(4)
        .collect()
        .await;
    let users: Vec<User> = registered.into_iter().collect::<Result<_>>()?;
    let (authors, readers) = users.split_at(args.authors);
    let (authors, readers) = (Arc::new(authors.to_vec()), Arc::new(readers.to_vec()));

    // Each reader follows `follows` distinct authors; authors post a few posts to react to.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut followers: Vec<Vec<usize>> = vec![Vec::new(); authors.len()];
    let mut last = Vec::new();
    for (r, reader) in readers.iter().enumerate() {
        let picks = rand::seq::index::sample(&mut rng, authors.len(), args.follows);
        let body: Vec<Value> = picks
            .iter()
            .map(|a| {
                followers[a].push(r);
                json!({"type": "follow.created", "user_id": authors[a].id})
            })
            .collect();
        last.extend(batch(&client, &base, reader, &body).await?.1);
    }
    let mut posts = Vec::new();
    for (a, author) in authors.iter().enumerate() {
        let body: Vec<Value> = (0..4).map(|i| post(&format!("seed {a}/{i}"))).collect();
        let (ids, positions) = batch(&client, &base, author, &body).await?;
        posts.extend(ids);
        last.extend(positions);
    }
    if args.log.starts_with("kafka") {
        // tansu 0.6 reports a partition's high watermark as its last record batch's base
        // offset + 1 (docs/kafka.md), so the tail of a multi-record batch stays invisible until
        // the partition's next batch. One single action per user, each awaited (so each is its
        // own one-record batch), ends every partition with a one-record batch. Under the open
        // load below the next batch follows within the producer's linger time, which only
        // makes the measured freshness later, never earlier.
        for user in users.iter() {
            let body =
                json!({"type": "profile.updated", "description": "Runs a small farm co-op."});
            last.push(single(&client, &base, user, &body).await?.1);
        }
    }
    // Wait until the views hold all of it (a slow log may need several `after=` waits).
    let deadline = Instant::now() + Duration::from_secs(120);
    for position in &last {
        loop {
            let r = client
                .get(format!("{base}/v1/feed?limit=1&after={position}"))
                .header("authorization", &readers[0].auth)
                .send()
                .await?;
            if r.status().is_success() {
                break;
            }
            ensure!(
                r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
                "waiting for the views: {}",
                r.status()
            );
        }
    }
    let posts = Arc::new(posts);
    let followers = Arc::new(followers);
    let secs = Duration::from_secs(args.seconds);
    let scrape_before = Scrape::fetch(&client, &base).await?;
    let cpu_before = server.cpu_seconds();

    eprintln!(
        "{} s: ingest {} actions/s, feed reads {}/s, {} freshness probes/s…",
        args.seconds, args.ingest_rate, args.read_rate, args.probe_rate
    );
    let ingest = {
        let (client, base, authors, readers, posts) = (
            client.clone(),
            base.clone(),
            authors.clone(),
            readers.clone(),
            posts.clone(),
        );
        let per = args.ingest_batch;
        let seed = args.seed;
        open_loop(
            args.ingest_workers,
            args.ingest_rate / per as f64,
            secs,
            move |w, i| {
                let (client, base) = (client.clone(), base.clone());
                let mut rng = StdRng::seed_from_u64(seed ^ ((w as u64) << 32) ^ i);
                let is_author = rng.random_bool(0.3);
                let user = if is_author {
                    authors[rng.random_range(0..authors.len())].clone()
                } else {
                    readers[rng.random_range(0..readers.len())].clone()
                };
                let actions: Vec<Value> = (0..per)
                .map(|k| {
                    let target = &posts[rng.random_range(0..posts.len())];
                    match rng.random_range(0..10) {
                        0..3 if is_author => post(&format!("load {w}/{i}/{k}")),
                        0..6 => json!({"type": "comment.created", "target_id": target, "body": "Same here: we batch orders weekly."}),
                        _ => json!({"type": "reaction.added", "target_id": target, "kind": "insightful"}),
                    }
                })
                .collect();
                async move {
                    if actions.len() == 1 {
                        single(&client, &base, &user, &actions[0]).await?;
                        Ok(1)
                    } else {
                        Ok(batch(&client, &base, &user, &actions).await?.0.len() as u64)
                    }
                }
            },
        )
    };
    let reads = {
        let (client, base, readers) = (client.clone(), base.clone(), readers.clone());
        let seed = args.seed;
        open_loop(32, args.read_rate, secs, move |w, i| {
            let (client, base) = (client.clone(), base.clone());
            let mut rng = StdRng::seed_from_u64(!seed ^ ((w as u64) << 32) ^ i);
            let reader = readers[rng.random_range(0..readers.len())].clone();
            async move {
                let r = client
                    .get(format!("{base}/v1/feed?limit=50"))
                    .header("authorization", &reader.auth)
                    .send()
                    .await?;
                ensure!(r.status().is_success(), "feed read: {}", r.status());
                r.bytes().await?;
                Ok(1)
            }
        })
    };
    // The probes stop a second before the load, so each is measured under the whole load,
    // none while it winds down.
    let probes = probe(
        client.clone(),
        base.clone(),
        authors.clone(),
        readers.clone(),
        followers,
        args.probe_rate,
        secs.saturating_sub(PROBE_MARGIN).max(PROBE_MARGIN),
        args.seed,
    );
    let load_started = Instant::now();
    let reference = {
        let (client, base) = (client.clone(), base.clone());
        let rate = args.reference_rate;
        async move {
            if rate <= 0.0 {
                return Ok(Latencies::new());
            }
            open_loop(4, rate, secs, move |_, _| {
                let (client, base) = (client.clone(), base.clone());
                async move {
                    let r = client.get(format!("{base}/healthz")).send().await?;
                    ensure!(r.status().is_success(), "healthz: {}", r.status());
                    r.bytes().await?;
                    Ok(1)
                }
            })
            .await
        }
    };
    let (ingest, reads, reference, (fresh, later_page, missing, hidden)) =
        tokio::join!(ingest, reads, reference, probes);
    let cpu_share = cpu_before
        .zip(server.cpu_seconds())
        .map(|(a, b)| (b - a) / load_started.elapsed().as_secs_f64());
    let scrape_after = Scrape::fetch(&client, &base).await?;
    let breakdown = BREAKDOWN
        .iter()
        .map(|(what, name, labels)| (*what, scrape_after.since(&scrape_before, name, labels).ok()))
        .collect();
    let peak_rss = server.peak_rss_bytes();
    server.stop().await?;
    Ok(Freshness {
        ingest: ingest?,
        reads: reads?,
        reference: reference?,
        fresh,
        later_page,
        missing,
        hidden,
        peak_rss,
        cpu_share,
        breakdown,
    })
}

/// One histogram series of the server: (what it measures, metric name, labels).
type Series = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The server's histograms a freshness run reports over its load.
const BREAKDOWN: &[Series] = &[
    (
        "GET /v1/feed (server side)",
        "philo_ingest_http_request_duration_seconds",
        &[("route", "/v1/feed"), ("method", "GET")],
    ),
    (
        "read waits for the views (after=)",
        "philo_ingest_read_after_wait_seconds",
        &[("part", "views")],
    ),
    (
        "log group commit (write + fsync)",
        "philo_log_group_commit_duration_seconds",
        &[],
    ),
    (
        "social job step",
        "philo_streams_step_seconds",
        &[("job", "social")],
    ),
    (
        "  of which: read the log",
        "philo_streams_step_phase_seconds",
        &[("job", "social"), ("phase", "read")],
    ),
    (
        "  of which: apply",
        "philo_streams_step_phase_seconds",
        &[("job", "social"), ("phase", "apply")],
    ),
    (
        "  of which: store batch + fsync",
        "philo_streams_step_phase_seconds",
        &[("job", "social"), ("phase", "sync")],
    ),
];

fn post(title: &str) -> Value {
    json!({
        "type": "post.created",
        "title": format!("How do we cut cold-chain costs for small farms? ({title})"),
        "body": "We lose a tenth of every harvest between the field and the market. Has anyone tried shared cold rooms?",
        "tags": ["agriculture", "logistics"],
    })
}

async fn register(client: &reqwest::Client, base: &str, name: String) -> Result<User> {
    let r = client
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": "correct horse battery staple"}))
        .send()
        .await?;
    ensure!(
        r.status().is_success(),
        "register failed: {}",
        r.text().await?
    );
    let v: Value = r.json().await?;
    Ok(User {
        id: v["user_id"].as_str().context("user_id")?.parse()?,
        auth: format!(
            "Bearer {}",
            v["access_token"].as_str().context("access_token")?
        ),
    })
}

/// One action; returns its id and position token.
async fn single(
    client: &reqwest::Client,
    base: &str,
    user: &User,
    action: &Value,
) -> Result<(String, String)> {
    let r = client
        .post(format!("{base}/v1/actions"))
        .header("authorization", &user.auth)
        .json(action)
        .send()
        .await?;
    ensure!(r.status().is_success(), "append: {}", r.status());
    let v: Value = r.json().await?;
    let field = |k: &str| v[k].as_str().map(str::to_owned).context("accepted action");
    Ok((field("id")?, field("position")?))
}

/// A batch; returns the accepted ids and position tokens.
async fn batch(
    client: &reqwest::Client,
    base: &str,
    user: &User,
    actions: &[Value],
) -> Result<(Vec<String>, Vec<String>)> {
    let r = client
        .post(format!("{base}/v1/actions/batch"))
        .header("authorization", &user.auth)
        .json(actions)
        .send()
        .await?;
    ensure!(r.status().is_success(), "batch append: {}", r.status());
    let v: Value = r.json().await?;
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    for item in v["results"].as_array().context("batch results")? {
        if item["status"] == "accepted" {
            ids.push(item["id"].as_str().context("id")?.to_owned());
            positions.push(item["position"].as_str().context("position")?.to_owned());
        }
    }
    Ok((ids, positions))
}

/// `workers` senders sharing a schedule of `rate` calls/s for `duration`; `call(worker, n)`
/// builds the `n`-th call of a worker and resolves to how many operations it did. Latency counts
/// from the scheduled time.
async fn open_loop<F, Fut>(
    workers: usize,
    rate: f64,
    duration: Duration,
    call: F,
) -> Result<Latencies>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let interval = Duration::from_secs_f64(workers as f64 / rate.max(1e-3));
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Latencies::new();
            let mut due = started + interval.mul_f64(w as f64 / workers as f64);
            let mut n = 0u64;
            while due < started + duration {
                tokio::time::sleep_until(due.into()).await;
                match call(w, n).await {
                    Ok(done) => {
                        out.ok += done;
                        let _ = out.hist.record(due.elapsed().as_micros() as u64);
                    }
                    Err(_) => out.failed += 1,
                }
                n += 1;
                due += interval;
            }
            out
        }));
    }
    let mut all = Latencies::new();
    for t in tasks {
        all.merge(t.await?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// Freshness probes at `rate`/s, each its own task: an author posts, then a follower reads its
/// feed `after` the post's position, following the cursor until the post shows. Returns the
/// latencies, how many probes found the post past the first page, and how many not at all.
#[allow(clippy::too_many_arguments)]
async fn probe(
    client: reqwest::Client,
    base: Arc<String>,
    authors: Arc<Vec<User>>,
    readers: Arc<Vec<User>>,
    followers: Arc<Vec<Vec<usize>>>,
    rate: f64,
    duration: Duration,
    seed: u64,
) -> (Latencies, u64, u64, Latencies) {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let mut rng = StdRng::seed_from_u64(seed.rotate_left(17));
    let mut tasks = Vec::new();
    let mut due = started;
    let mut n = 0u64;
    let with_followers: Vec<usize> = (0..authors.len())
        .filter(|&a| !followers[a].is_empty())
        .collect();
    while due < started + duration && !with_followers.is_empty() {
        tokio::time::sleep_until(due.into()).await;
        let a = with_followers[rng.random_range(0..with_followers.len())];
        let f = followers[a][rng.random_range(0..followers[a].len())];
        let (client, base, author, reader) = (
            client.clone(),
            base.clone(),
            authors[a].clone(),
            readers[f].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (id, position) =
                single(&client, &base, &author, &post(&format!("probe {n}"))).await?;
            let acked = Instant::now();
            // The read answers once the views hold the post; newer items may push it past the
            // first page when the job lags, so follow the cursor (at most 20 pages).
            let mut query = vec![("limit", "50".to_owned()), ("after", position)];
            let mut page_no = 0;
            let mut hidden = Duration::ZERO;
            let found = loop {
                let r = client
                    .get(format!("{base}/v1/feed"))
                    .query(&query)
                    .header("authorization", &reader.auth)
                    .send()
                    .await?;
                let status = r.status();
                if status == reqwest::StatusCode::BAD_REQUEST && acked.elapsed() < HIDDEN_TAIL_WAIT
                {
                    // tansu 0.6 can report a high watermark below a record it acknowledged
                    // (docs/kafka.md), and the server refuses a position past the log's end:
                    // ask again until the broker owns up; the wait counts in the latency.
                    let body = r.text().await.unwrap_or_default();
                    ensure!(
                        body.contains("invalid_position"),
                        "feed read: {status} {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    hidden = acked.elapsed();
                    continue;
                }
                ensure!(
                    status.is_success(),
                    "feed read: {status} {}",
                    r.text().await.unwrap_or_default()
                );
                let page: Value = r.json().await?;
                let items = page["items"].as_array().context("feed items")?;
                if items.iter().any(|i| i["id"] == id.as_str()) {
                    break Some(page_no);
                }
                page_no += 1;
                match page["next_cursor"].as_str() {
                    Some(c) if page_no < 20 => {
                        query = vec![("limit", "50".to_owned()), ("cursor", c.to_owned())];
                    }
                    _ => break None,
                }
            };
            let took = acked.elapsed();
            Ok((took, found, hidden))
        }));
        n += 1;
        due += interval;
    }
    let mut out = Latencies::new();
    let mut hidden_out = Latencies::new();
    let (mut later_page, mut missing) = (0, 0);
    for t in tasks {
        match t.await {
            Ok(Ok((took, Some(page), hidden))) => {
                out.ok += 1;
                later_page += u64::from(page > 0);
                let _ = out.hist.record(took.as_micros() as u64);
                hidden_out.ok += 1;
                let _ = hidden_out.hist.record(hidden.as_micros() as u64);
            }
            Ok(Ok((_, None, _))) => missing += 1,
            failure => {
                if out.failed == 0 {
                    let why = match failure {
                        Ok(Err(e)) => format!("{e:#}"),
                        Err(e) => e.to_string(),
                        Ok(Ok(_)) => unreachable!("matched above"),
                    };
                    eprintln!("first failed probe: {why}");
                }
                out.failed += 1;
            }
        }
    }
    out.elapsed = started.elapsed();
    (out, later_page, missing, hidden_out)
}

/// This process's resident set size (VmRSS), bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// JSON has no infinity: a quantile past the last bucket is `null`.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn print(args: &FeedArgs, fanout: Option<&Fanout>, fresh: Option<&Freshness>) -> Value {
    const MB: f64 = 1_048_576.0;
    println!(
        "philo bench feed: embedded state store, durability fsync; freshness server's log: {}",
        if args.log == "embedded" {
            "embedded"
        } else {
            "Kafka"
        }
    );
    let mut out = serde_json::Map::new();
    if let Some(f) = fanout {
        let (g, c) = (&f.graph, &f.content);
        let rate = |n: u64, p: &Phase| n as f64 / p.time.as_secs_f64().max(1e-9);
        let d_rate = rate(c.deliveries, c);
        let ref_rate = f.reference_rows as f64 / f.reference.as_secs_f64();
        let ratio = f.reference.as_secs_f64() / c.time.as_secs_f64();
        let rss = f.rss_growth.map(|b| f.per_million(b));
        println!(
            "  workload: {} users, {} actions = {} records ({:.0} MB of log)",
            args.users,
            args.actions,
            f.records(),
            f.log_bytes as f64 / MB
        );
        println!(
            "  append to the log                    {:>12.0} records/s ({:.1} s, chunks of {})",
            f.records() as f64 / f.append.as_secs_f64(),
            f.append.as_secs_f64(),
            args.chunk
        );
        println!(
            "  job: registrations + follow graph    {:>12.0} records/s ({} in {:.1} s; {} failed, {} feed rows)",
            rate(g.records, g),
            g.records,
            g.time.as_secs_f64(),
            g.failed,
            g.deliveries
        );
        println!(
            "  job: content actions                 {:>12.0} actions/s ({} in {:.1} s, {} steps; {} failed)",
            rate(c.records, c),
            c.records,
            c.time.as_secs_f64(),
            c.steps,
            c.failed
        );
        println!(
            "  feed deliveries (content phase)      {:>12.0} /s ({} rows; target >= 1000000: {})",
            d_rate,
            c.deliveries,
            met(d_rate >= 1e6)
        );
        println!(
            "  reference: the same writes alone     {:>12.0} rows/s ({:.1} s, {} batches) -> the job runs at {:.3} of it",
            ref_rate,
            f.reference.as_secs_f64(),
            c.steps,
            ratio
        );
        let burst = f.burst.as_ref().zip(f.burst_reference).map(|(b, r)| {
            let d_rate = rate(b.deliveries, b);
            let ref_rate = (b.deliveries + b.records) as f64 / r.as_secs_f64().max(1e-9);
            println!(
                "  burst: posts by the {} most-followed pushed authors {:>7.0} posts/s ({} in {:.2} s, {} steps)",
                args.burst_authors,
                rate(b.records, b),
                b.records,
                b.time.as_secs_f64(),
                b.steps
            );
            println!(
                "    of which applying actions {:.2} s, committing steps {:.2} s; {} feed trims read the committed store",
                b.applying.as_secs_f64(),
                b.committing.as_secs_f64(),
                b.committed_trims
            );
            println!(
                "  feed deliveries (burst)              {:>12.0} /s ({} rows, {:.0} per post; target >= 1000000: {})",
                d_rate,
                b.deliveries,
                b.deliveries as f64 / b.records.max(1) as f64,
                met(d_rate >= 1e6)
            );
            println!(
                "  reference: the burst's writes alone  {:>12.0} rows/s ({:.2} s) -> the job runs at {:.3} of it",
                ref_rate,
                r.as_secs_f64(),
                r.as_secs_f64() / b.time.as_secs_f64().max(1e-9)
            );
            json!({
                "burst_posts": b.records, "burst_job_s": b.time.as_secs_f64(),
                "burst_deliveries": b.deliveries, "burst_deliveries_per_s": d_rate,
                "burst_reference_rows_per_s": ref_rate,
                "burst_applying_s": b.applying.as_secs_f64(),
                "burst_committing_s": b.committing.as_secs_f64(),
                "burst_trims_read_committed": b.committed_trims,
            })
        });
        println!(
            "  state store on disk                  {:>12.1} MB per 1M deliveries ({:.0} MB)",
            f.per_million(f.disk_bytes),
            f.disk_bytes as f64 / MB
        );
        println!(
            "  RSS growth over the job              {:>12.1} MB per 1M deliveries ({:.0} MB)",
            rss.unwrap_or(f64::NAN),
            f.rss_growth.map_or(f64::NAN, |b| b as f64 / MB)
        );
        println!(
            "  feed rows held in memory (resident)  {:>12.1} MB for {} live rows ({:.1} bytes a row)",
            f.resident_bytes as f64 / MB,
            f.feed_rows,
            f.resident_bytes as f64 / f.feed_rows.max(1) as f64
        );
        out.extend(
            json!({
                "resident_mb": f.resident_bytes as f64 / MB, "feed_rows": f.feed_rows,
                "users": args.users, "actions": args.actions, "records": f.records(),
                "append_s": f.append.as_secs_f64(),
                "graph_records": g.records, "graph_job_s": g.time.as_secs_f64(),
                "content_records": c.records, "content_job_s": c.time.as_secs_f64(),
                "content_actions_per_s": rate(c.records, c), "failed": g.failed + c.failed,
                "deliveries": f.deliveries(), "deliveries_per_s": d_rate,
                "reference_rows_per_s": ref_rate, "ratio": ratio,
                "disk_mb_per_m_deliveries": f.per_million(f.disk_bytes),
                "rss_mb_per_m_deliveries": rss,
            })
            .as_object()
            .expect("an object")
            .clone(),
        );
        if let Some(Value::Object(b)) = burst {
            out.extend(b);
        }
    }
    if let Some(f) = fresh {
        println!(
            "  ingest under read load               {:>12.0} actions/s (asked {}, batches of {}; {} failed requests; lake {})",
            f.ingest.rate(),
            args.ingest_rate,
            args.ingest_batch,
            f.ingest.failed,
            if args.without_lake { "off" } else { "on" }
        );
        println!(
            "  freshness: 202 -> follower's feed    p50 {:>7.2} ms   p99 {:>7.2} ms ({} probes, {} past page 1, {} missing, {} failed; target p99 <= 50 ms: {})",
            f.fresh.ms(0.5),
            f.fresh.ms(0.99),
            f.fresh.ok,
            f.later_page,
            f.missing,
            f.fresh.failed,
            met(f.fresh.ok > 0 && f.missing == 0 && f.fresh.ms(0.99) <= 50.0)
        );
        if f.hidden.hist.max() > 0 {
            println!(
                "    of which the log hid the post      p50 {:>7.2} ms   p99 {:>7.2} ms (its position past the reported end: tansu's batch tail, docs/kafka.md)",
                f.hidden.ms(0.5),
                f.hidden.ms(0.99),
            );
        }
        println!(
            "  GET /v1/feed?limit=50 (open loop)    p50 {:>7.2} ms   p99 {:>7.2} ms ({:.0} reads/s of {} asked, {} failed; target p99 <= 5 ms: {})",
            f.reads.ms(0.5),
            f.reads.ms(0.99),
            f.reads.rate(),
            args.read_rate,
            f.reads.failed,
            met(f.reads.ok > 0 && f.reads.ms(0.99) <= 5.0)
        );
        if f.reference.ok > 0 {
            println!(
                "  reference: GET /healthz (open loop)  p50 {:>7.2} ms   p99 {:>7.2} ms ({:.0}/s; the same client and load, no work behind it)",
                f.reference.ms(0.5),
                f.reference.ms(0.99),
                f.reference.rate(),
            );
        }
        println!(
            "  server peak RSS                      {:>12.1} MB",
            f.peak_rss.map_or(f64::NAN, |b| b as f64 / MB)
        );
        println!(
            "  server CPU over the load             {:>12.2} cores",
            f.cpu_share.unwrap_or(f64::NAN)
        );
        println!("  server-side histograms over the load (bucket bounds of its /metrics):");
        let mut parts = serde_json::Map::new();
        for (what, interval) in &f.breakdown {
            let Some(i) = interval else {
                println!("    {what:<36} (not in the server's metrics)");
                continue;
            };
            println!(
                "    {what:<36} n {:>7.0}  mean {:>7.2} ms  p50 <= {:>6} ms  p99 <= {:>6} ms  over 25 ms {:>5.2} %",
                i.count,
                i.mean_s * 1e3,
                i.quantile_bound(0.5) * 1e3,
                i.quantile_bound(0.99) * 1e3,
                i.share_above(0.025) * 100.0
            );
            parts.insert(
                what.trim().to_owned(),
                json!({
                    "count": i.count, "mean_ms": i.mean_s * 1e3,
                    "p50_le_ms": finite(i.quantile_bound(0.5) * 1e3),
                    "p99_le_ms": finite(i.quantile_bound(0.99) * 1e3),
                    "share_over_25ms": i.share_above(0.025),
                }),
            );
        }
        out.extend(
            json!({
                "ingest_actions_per_s": f.ingest.rate(), "ingest_failed": f.ingest.failed,
                "lake": !args.without_lake,
                "hidden_p50_ms": f.hidden.ms(0.5), "hidden_p99_ms": f.hidden.ms(0.99),
                "freshness_p50_ms": f.fresh.ms(0.5), "freshness_p99_ms": f.fresh.ms(0.99),
                "freshness_probes": f.fresh.ok, "freshness_past_first_page": f.later_page,
                "freshness_missing": f.missing,
                "freshness_failed": f.fresh.failed,
                "read_p50_ms": f.reads.ms(0.5), "read_p99_ms": f.reads.ms(0.99),
                "reads_per_s": f.reads.rate(), "reads_failed": f.reads.failed,
                "reference_p50_ms": f.reference.ms(0.5), "reference_p99_ms": f.reference.ms(0.99),
                "server_peak_rss_mb": f.peak_rss.map(|b| b as f64 / MB),
                "server_cpu_cores": f.cpu_share, "server_histograms": parts,
            })
            .as_object()
            .expect("an object")
            .clone(),
        );
    }
    let out = Value::Object(out);
    if args.json {
        println!("{out}");
    }
    out
}
