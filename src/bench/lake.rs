//! `philo bench lake`: the anonymizer's figures in one run.
//!
//! 1. Throughput: a deterministic workload in an embedded log, landed by the anonymizer job
//!    into Delta tables on local disk (anonymize + Parquet + commit), against the reference of
//!    reading and decoding the same records from the log (the floor any consumer pays).
//! 2. Files per table per day before and after compaction (`optimize`).
//! 3. Lake lag (an action's receive time → the commit that holds it) while actions arrive at a
//!    paced rate (default 5,000/s).
//! 4. The same throughput against a local S3 server (moto), when one is given or installed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, Durability, EmbeddedLog, EmbeddedLogConfig, Log, Record};
use philo_lake::anonymize::Anonymizer;
use philo_lake::job::{LakeJob, LakeJobConfig};
use philo_lake::pseudonym::Pseudonymizer;
use philo_lake::storage::Location;

use super::load::record_of;
use philo_streams::workload::{Workload, WorkloadConfig};
use serde_json::{Value, json};

#[derive(Args, Debug, Clone)]
pub struct LakeArgs {
    /// Content actions in the throughput runs (after the registrations and initial follows).
    #[arg(long, default_value_t = 300_000)]
    actions: usize,
    /// Users of the workload (their registrations and initial follows come first).
    #[arg(long, default_value_t = 2_000)]
    users: usize,
    /// Actions per micro-batch.
    #[arg(long, default_value_t = 100_000)]
    batch: usize,
    /// Paced arrival rate of the lag run, actions per second.
    #[arg(long, default_value_t = 5_000)]
    lag_rate: u64,
    /// Seconds of the lag run.
    #[arg(long, default_value_t = 10)]
    lag_seconds: u64,
    /// Time bound of a micro-batch in the lag run, milliseconds.
    #[arg(long, default_value_t = 1_000)]
    lag_batch_wait_ms: u64,
    /// `moto_server` to start for the S3 run (default: the test venv's; `none` skips it).
    #[arg(long)]
    moto: Option<String>,
    /// Scratch directory (default: a temporary one).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Parquet compression of the data files: `zstd`, `snappy`, `lz4` or `none` (default: the
    /// lake's default, as `[lake] compression`).
    #[arg(long)]
    compression: Option<String>,
}

const KEY: &[u8] = b"philo bench lake pseudonym key, not a secret of anyone";

fn anonymizer() -> Result<Anonymizer> {
    Ok(Anonymizer::new(Pseudonymizer::new("bench", KEY)?))
}

async fn fresh_log(dir: &Path) -> Result<Arc<dyn Log>> {
    let mut c = EmbeddedLogConfig::new(dir);
    c.durability = Durability::Buffered;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(c)?);
    log.create_topic(ACTIONS_TOPIC, 8).await?;
    Ok(log)
}

/// Appends the whole workload: registrations, the initial follows, then `actions` content
/// actions.
async fn fill(log: &Arc<dyn Log>, args: &LakeArgs) -> Result<()> {
    let workload = Workload::new(WorkloadConfig::scaled(0x1a4e, args.users, args.actions));
    super::feed::append(log.as_ref(), workload, usize::MAX, 20_000).await?;
    Ok(())
}

/// Reads and decodes every record: the reference.
async fn read_decode(log: &Arc<dyn Log>) -> Result<(u64, Duration)> {
    let started = Instant::now();
    let mut n = 0u64;
    for p in 0..log.partitions(ACTIONS_TOPIC).await? {
        let high = log.watermarks(ACTIONS_TOPIC, p).await?.high;
        let mut offset = 0;
        while offset < high {
            let records = log.read(ACTIONS_TOPIC, p, offset, 8_192).await?;
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in &records {
                if Envelope::from_json(&r.value).is_ok() {
                    n += 1;
                }
            }
        }
    }
    Ok((n, started.elapsed()))
}

fn job_config(args: &LakeArgs, wait: Duration) -> Result<LakeJobConfig> {
    let mut settings = philo_lake::table::TableSettings::default();
    if let Some(name) = &args.compression {
        settings.compression = philo_lake::table::parse_compression(name)
            .with_context(|| format!("unknown compression `{name}`"))?;
    }
    Ok(LakeJobConfig {
        batch_max_actions: args.batch,
        batch_max_wait: wait,
        optimize_every: None,
        vacuum_every: None,
        settings,
        ..Default::default()
    })
}

/// Lands the whole log into the lake at `location`; returns the figures and the job. The
/// throughput counts the steps (read, anonymize, Parquet, commit); opening the lake (creating
/// its tables) and the `users` rewrite are reported apart.
async fn land(
    log: &Arc<dyn Log>,
    location: &Location,
    args: &LakeArgs,
) -> Result<(Value, LakeJob)> {
    let opened = Instant::now();
    let mut job = LakeJob::start(
        log.clone(),
        location,
        anonymizer()?,
        job_config(args, Duration::ZERO)?,
    )
    .await?;
    let open_s = opened.elapsed().as_secs_f64();
    let started = Instant::now();
    let (mut actions, mut rows, mut commits, mut steps) = (0usize, 0usize, 0usize, 0usize);
    let (mut gather, mut wait, mut read_wait) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    // As `LakeJob::run` does: a batch commits while the next one is read and anonymized.
    loop {
        let r = job.step_pipelined().await?;
        steps += r.batches;
        actions += r.actions;
        rows += r.rows;
        commits += r.commits;
        gather += r.gather_time;
        wait += r.commit_wait;
        read_wait += r.read_wait;
        if r.actions == 0 && !job.committing() {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let users_started = Instant::now();
    job.write_users().await?;
    let users_s = users_started.elapsed().as_secs_f64();
    let daily_started = Instant::now();
    job.write_daily().await?;
    let daily_s = daily_started.elapsed().as_secs_f64();
    Ok((
        json!({
            "actions": actions,
            "rows": rows,
            "batches": steps,
            "table_commits": commits,
            "seconds": secs,
            "actions_per_s": actions as f64 / secs,
            // Where the pipeline's time went: reading + anonymizing, and waiting for the
            // previous batch's commits (near zero when anonymizing is the slower half).
            "gather_s": gather.as_secs_f64(),
            "commit_wait_s": wait.as_secs_f64(),
            // Of gathering: waiting for the log's records (read and decoded off the job's
            // task), near zero when anonymizing is the slower half.
            "read_wait_s": read_wait.as_secs_f64(),
            "open_lake_s": open_s,
            "users_dimension_s": users_s,
            "daily_aggregates_s": daily_s,
        }),
        job,
    ))
}

/// Active files per table per `day` partition: the most and the mean.
fn files_per_day(job: &LakeJob) -> Value {
    let mut out = BTreeMap::new();
    for table in &job.lake().tables {
        let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
        if let Ok(uris) = table.delta().get_file_uris() {
            for uri in uris {
                let day = uri
                    .split('/')
                    .find_map(|seg| seg.strip_prefix("day="))
                    .unwrap_or("-")
                    .to_owned();
                *per_day.entry(day).or_default() += 1;
            }
        }
        if per_day.is_empty() {
            continue;
        }
        let max = per_day.values().copied().max().unwrap_or(0);
        let mean = per_day.values().sum::<u64>() as f64 / per_day.len() as f64;
        out.insert(
            table.name(),
            json!({"days": per_day.len(), "max": max, "mean": mean}),
        );
    }
    json!(out)
}

/// Paced arrivals while the job runs: lag from receive time to commit.
async fn lag(args: &LakeArgs, dir: &Path) -> Result<Value> {
    let log = fresh_log(&dir.join("lag-log")).await?;
    let location = Location::local(&dir.join("lag-lake"))?;
    let mut workload = Workload::new(WorkloadConfig::scaled(
        0x1a9,
        args.users.min(5_000),
        (args.lag_rate * args.lag_seconds) as usize + 1,
    ));
    // The registrations and the initial graph land first, unpaced.
    let setup = workload.config().users + workload.initial_follows();
    let records: Vec<Record> = workload
        .by_ref()
        .take(setup)
        .map(|e| record_of(&e))
        .collect();
    for chunk in records.chunks(10_000) {
        log.append(ACTIONS_TOPIC, chunk.to_vec()).await?;
    }
    let wait = Duration::from_millis(args.lag_batch_wait_ms);
    let mut job = LakeJob::start(
        log.clone(),
        &location,
        anonymizer()?,
        job_config(args, wait)?,
    )
    .await?;
    while job.step().await?.actions > 0 {}

    let rate = args.lag_rate.max(1);
    let total = rate * args.lag_seconds;
    let appender = {
        let log = log.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let tick = Duration::from_millis(10);
            let per_tick = (rate as f64 * tick.as_secs_f64()).max(1.0);
            let mut sent = 0u64;
            let mut owed = 0.0;
            while sent < total {
                owed += per_tick;
                let n = (owed as u64).min(total - sent);
                owed -= n as f64;
                let now = chrono::Utc::now();
                let records: Vec<Record> = workload
                    .by_ref()
                    .take(n as usize)
                    .map(|e| record_of(&Envelope::with_id(e.id, e.actor_id, e.action, now)))
                    .collect();
                sent += records.len() as u64;
                log.append(ACTIONS_TOPIC, records).await?;
                let due = tick * ((sent as f64 / per_tick) as u32);
                if let Some(sleep) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(sleep).await;
                }
            }
            anyhow::Ok((sent, started.elapsed()))
        })
    };
    let mut hist = Histogram::<u64>::new(3)?;
    let mut landed = 0u64;
    loop {
        let r = job.step_pipelined().await?;
        if let Some(at) = r.committed_at {
            let at = at.timestamp_millis();
            for ms in &r.received_ms {
                hist.record((at - ms).max(0) as u64)?;
                landed += 1;
            }
        }
        if appender.is_finished() && r.actions == 0 && !job.committing() {
            break;
        }
        if r.actions == 0 && !job.committing() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let (sent, took) = appender.await??;
    Ok(json!({
        "offered_per_s": rate,
        "achieved_per_s": sent as f64 / took.as_secs_f64(),
        "actions": sent,
        "actions_with_rows": landed,
        "batch_max_wait_ms": args.lag_batch_wait_ms,
        "lag_ms": {"p50": hist.value_at_quantile(0.5), "p99": hist.value_at_quantile(0.99), "max": hist.max()},
    }))
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto(bin: &str) -> Result<(Moto, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let moto = Moto(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/")).send().await.is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = client.put(format!("{base}/philo-lake")).send().await?;
    anyhow::ensure!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    Ok((moto, base))
}

fn moto_binary(args: &LakeArgs) -> Option<String> {
    match args.moto.as_deref() {
        Some("none") => None,
        Some(path) => Some(path.to_owned()),
        None => {
            let path = std::env::var("PHILO_MOTO_SERVER").unwrap_or_else(|_| {
                format!(
                    "{}/.cache/philo/venv/bin/moto_server",
                    std::env::var("HOME").unwrap_or_default()
                )
            });
            Path::new(&path).exists().then_some(path)
        }
    }
}

pub async fn run(args: LakeArgs) -> Result<()> {
    // Checked before the workload is written: a bad `--compression` fails at once.
    let compression = job_config(&args, Duration::ZERO)?.settings.compression;
    let scratch = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let log = fresh_log(&dir.join("log")).await?;
    eprintln!("appending the workload to the log…");
    fill(&log, &args).await?;
    eprintln!("reference: reading and decoding the log…");
    // Every envelope decodes: the reference's count is the workload's size.
    let (envelopes, took) = read_decode(&log).await?;
    let reference = envelopes as f64 / took.as_secs_f64();

    let location = Location::local(&dir.join("lake"))?;
    eprintln!("landing the log on local disk…");
    let (local, mut job) = land(&log, &location, &args).await?;
    let before = files_per_day(&job);
    eprintln!("compacting…");
    let started = Instant::now();
    job.lake_mut().optimize(128 * 1024 * 1024, "bench").await?;
    let optimize_s = started.elapsed().as_secs_f64();
    let after = files_per_day(&job);
    drop(job);

    eprintln!(
        "lake lag at {} actions/s for {} s…",
        args.lag_rate, args.lag_seconds
    );
    let lag = lag(&args, &dir).await?;

    let s3 = match moto_binary(&args) {
        None => json!("skipped: no moto_server"),
        Some(bin) => {
            let (_moto, endpoint) = start_moto(&bin).await?;
            let options = [
                ("endpoint", endpoint.as_str()),
                ("allow_http", "true"),
                ("region", "us-east-1"),
                ("access_key_id", "bench"),
                ("secret_access_key", "bench"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let location = Location::parse("s3://philo-lake/bench", options)?;
            eprintln!("landing the log on S3 (moto)…");
            let (figures, _) = land(&log, &location, &args).await?;
            figures
        }
    };

    let actions_per_s = local["actions_per_s"].as_f64().unwrap_or_default();
    let report = json!({
        "bench": "lake",
        "workload": {"envelopes": envelopes, "content_actions": args.actions, "users": args.users, "batch": args.batch, "compression": format!("{compression:?}")},
        "reference_read_decode_per_s": reference,
        "local": local,
        "ratio_local_vs_read_decode": actions_per_s / reference,
        "files_per_table_per_day": {"before_optimize": before, "after_optimize": after, "optimize_s": optimize_s},
        "lag": lag,
        "s3_moto": s3,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
