//! `philo bench ingest`: how close durable single-action ingest gets to a trivial route of the
//! same server, the latency at half that rate, batch throughput, and the server's peak RSS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Args;
use hdrhistogram::Histogram;

use super::server::ServerProcess;

#[derive(Args, Clone)]
pub struct IngestArgs {
    /// Concurrent connections for the single-request phases.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Actions per batch request.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Concurrent connections for the batch phase.
    #[arg(long, default_value_t = 4)]
    pub batch_connections: usize,
    /// Scratch data directory for the server (default: a fresh temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also print the results as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Which server to measure: `ingest-api` (the ingest role alone, the default) or `up`
    /// (everything in one process: the stream jobs then apply every action on the same cores).
    #[arg(long, default_value = "ingest-api", value_parser = ["ingest-api", "up"])]
    pub role: String,
    /// The server's log: `embedded` or `kafka://host:port[,…]`.
    #[arg(long, default_value = "embedded")]
    pub log: String,
}

struct Phase {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// `workers` loops, each sending as fast as answers come back, for `duration`.
async fn closed_loop(
    client: &reqwest::Client,
    workers: usize,
    duration: Duration,
    make: MakeRequest,
) -> Result<Phase> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = client.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match make(&client, w).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed, hist)
        }));
    }
    collect(tasks, started).await
}

/// `workers` senders sharing a fixed schedule of `rate` requests/s; latency counts from the
/// scheduled send time, so a stall is not hidden (no coordinated omission).
async fn open_loop(
    client: &reqwest::Client,
    workers: usize,
    rate: f64,
    duration: Duration,
    make: MakeRequest,
) -> Result<Phase> {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(workers as f64 / rate.max(1.0));
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = client.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let (mut ok, mut failed) = (0u64, 0u64);
            let offset = interval.mul_f64(w as f64 / workers as f64);
            let mut due = started + offset;
            while due < started + duration {
                tokio::time::sleep_until(due.into()).await;
                match make(&client, w).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                        let _ = hist.record(due.elapsed().as_micros() as u64);
                    }
                    _ => failed += 1,
                }
                due += interval;
            }
            (ok, failed, hist)
        }));
    }
    collect(tasks, started).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(u64, u64, Histogram<u64>)>>,
    started: Instant,
) -> Result<Phase> {
    let mut phase = Phase {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    for t in tasks {
        let (ok, failed, hist) = t.await?;
        phase.ok += ok;
        phase.failed += failed;
        phase.latency.add(hist)?;
    }
    phase.elapsed = started.elapsed();
    Ok(phase)
}

fn post_body(i: usize) -> String {
    serde_json::json!({
        "type": "post.created",
        "title": format!("How do we price a B2B pilot? #{i}"),
        "body": "We run a small consultancy and need a way to price three-month pilots for mid-size clients without underselling the follow-on contract.",
        "tags": ["pricing", "b2b", "pilots"],
    })
    .to_string()
}

/// Runs the benchmark, prints its report, and returns the figures as JSON.
pub async fn run(args: IngestArgs) -> Result<serde_json::Value> {
    ensure!(
        args.connections > 0 && args.batch_connections > 0 && args.batch_size > 0,
        "counts must be positive"
    );
    let scratch = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("philo-bench-{}", uuid::Uuid::new_v4().simple())),
    };
    std::fs::create_dir_all(&scratch)?;
    let env = [
        ("PHILO__LOG__BACKEND", args.log.clone()),
        (
            "PHILO__INGEST__RATE_LIMIT_PER_SECOND",
            "10000000".to_owned(),
        ),
        ("PHILO__INGEST__RATE_LIMIT_BURST", "10000000".to_owned()),
        (
            "PHILO__INGEST__AUTH_ATTEMPTS_PER_MINUTE",
            "1000000".to_owned(),
        ),
        (
            "PHILO__INGEST__MAX_BATCH_ACTIONS",
            args.batch_size.max(500).to_string(),
        ),
        (
            "PHILO__INGEST__MAX_BATCH_BYTES",
            (args.batch_size.max(500) * 1024).to_string(),
        ),
    ];
    let server = ServerProcess::start_role(&args.role, &scratch, &env).await?;
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections * 2)
        .build()?;

    let users = args.connections.max(args.batch_connections);
    let mut tokens = Vec::with_capacity(users);
    for i in 0..users {
        let r = client
            .post(format!("{base}/v1/auth/register"))
            .json(&serde_json::json!({"username": format!("bench_{i}"), "email": format!("bench_{i}@example.com"), "password": "correct horse battery staple"}))
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "register failed: {}",
            r.text().await?
        );
        let v: serde_json::Value = r.json().await?;
        tokens.push(format!(
            "Bearer {}",
            v["access_token"].as_str().context("access_token")?
        ));
    }
    let tokens = Arc::new(tokens);
    let bodies: Arc<Vec<String>> = Arc::new((0..users).map(post_body).collect());
    let secs = Duration::from_secs(args.seconds);

    let reference: MakeRequest = {
        let url = format!("{base}/healthz");
        Arc::new(move |c, _| c.get(&url))
    };
    let single: MakeRequest = {
        let url = format!("{base}/v1/actions");
        let (tokens, bodies) = (tokens.clone(), bodies.clone());
        Arc::new(move |c, w| {
            c.post(&url)
                .header("authorization", &tokens[w])
                .header("content-type", "application/json")
                .body(bodies[w].clone())
        })
    };
    let batch_body: Arc<String> = Arc::new(format!(
        "[{}]",
        (0..args.batch_size)
            .map(post_body)
            .collect::<Vec<_>>()
            .join(",")
    ));
    let batch: MakeRequest = {
        let url = format!("{base}/v1/actions/batch");
        let (tokens, body) = (tokens.clone(), batch_body.clone());
        Arc::new(move |c, w| {
            c.post(&url)
                .header("authorization", &tokens[w])
                .header("content-type", "application/json")
                .body((*body).clone())
        })
    };

    eprintln!("warming up…");
    closed_loop(
        &client,
        args.connections,
        Duration::from_secs(1),
        reference.clone(),
    )
    .await?;
    closed_loop(
        &client,
        args.connections,
        Duration::from_secs(1),
        single.clone(),
    )
    .await?;

    eprintln!(
        "reference route, {} connections, {} s…",
        args.connections, args.seconds
    );
    let (cpu_before, machine_before) = (server.cpu_seconds(), MachineCpu::read());
    let r_ref = closed_loop(&client, args.connections, secs, reference).await?;
    let ref_cpu = cpu_per(&server, cpu_before, r_ref.ok);
    let ref_machine = MachineCpu::since(machine_before);
    eprintln!("single actions…");
    // Read before the CPU counters start, so rendering `/metrics` is not counted in the phase.
    let commits_before = group_commits(&client, &base).await;
    let (cpu_before, machine_before) = (server.cpu_seconds(), MachineCpu::read());
    let r_single = closed_loop(&client, args.connections, secs, single.clone()).await?;
    let single_cpu = cpu_per(&server, cpu_before, r_single.ok);
    let single_machine = MachineCpu::since(machine_before);
    let single_commits = GroupCommits::since(commits_before, group_commits(&client, &base).await);
    let half = r_single.rate() / 2.0;
    eprintln!("latency at {half:.0} req/s…");
    let r_half = open_loop(&client, args.connections, half, secs, single).await?;
    eprintln!("batches of {}…", args.batch_size);
    let cpu_before = server.cpu_seconds();
    let r_batch = closed_loop(&client, args.batch_connections, secs, batch).await?;
    let batch_cpu = cpu_per(&server, cpu_before, r_batch.ok * args.batch_size as u64);
    let rss = server.peak_rss_bytes();
    let commits = GroupCommits::since(
        Some(GroupCommits::default()),
        group_commits(&client, &base).await,
    );
    let log_bytes = dir_size(&scratch.join("log"));
    server.stop().await?;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }

    let ratio = r_single.rate() / r_ref.rate();
    let batch_actions = r_batch.rate() * args.batch_size as f64;
    let rss_mb = rss.map(|b| b as f64 / 1_048_576.0);
    println!(
        "philo bench ingest: `philo {}`, {} connections, {} s per phase, log {}",
        args.role,
        args.connections,
        args.seconds,
        if args.log == "embedded" {
            "embedded (fsync)"
        } else {
            "Kafka (acks=all)"
        }
    );
    println!(
        "  reference   GET  /healthz             {:>10.0} req/s   p99 {:>7.2} ms",
        r_ref.rate(),
        r_ref.ms(0.99)
    );
    println!(
        "  single      POST /v1/actions          {:>10.0} req/s   p99 {:>7.2} ms   ratio {:.2} (target >= 0.50)",
        r_single.rate(),
        r_single.ms(0.99),
        ratio
    );
    println!(
        "  half rate   POST /v1/actions          {:>10.0} req/s   p50 {:>7.2} ms   p99 {:.2} ms (open loop at {half:.0} req/s)",
        r_half.rate(),
        r_half.ms(0.5),
        r_half.ms(0.99)
    );
    println!(
        "  batch       POST /v1/actions/batch    {:>10.0} actions/s ({} per request, {} connections; target >= 200000)",
        batch_actions, args.batch_size, args.batch_connections
    );
    println!(
        "  server CPU per action                {:>10.1} µs single, {:.1} µs in batches, {:.1} µs per reference request (user + system, all threads)",
        single_cpu.unwrap_or(f64::NAN),
        batch_cpu.unwrap_or(f64::NAN),
        ref_cpu.unwrap_or(f64::NAN)
    );
    for (name, m) in [("reference", &ref_machine), ("single", &single_machine)] {
        if let Some(m) = m {
            println!(
                "  machine in the {name:<9} phase       {:>10.2} of {} cores busy, {:.2} in I/O wait",
                m.busy, m.cores, m.iowait
            );
        }
    }
    for (name, c) in [("single phase", &single_commits), ("whole run", &commits)] {
        if let Some((records, seconds)) = c {
            println!(
                "  log group commits ({name:<12})      {records:>10.1} records, {:.2} ms write+fsync per commit (means)",
                seconds * 1000.0
            );
        }
    }
    println!(
        "  server peak RSS                      {:>10.1} MB (target <= 500)",
        rss_mb.unwrap_or(f64::NAN)
    );
    println!(
        "  log on disk                          {:>10.1} MB",
        log_bytes as f64 / 1_048_576.0
    );
    let failed = r_ref.failed + r_single.failed + r_half.failed + r_batch.failed;
    if failed > 0 {
        println!("  failed requests: {failed}");
    }
    let figures = serde_json::json!({
        "role": args.role, "log": if args.log == "embedded" { "embedded" } else { "kafka" },
        "connections": args.connections, "seconds": args.seconds,
        "reference_rps": r_ref.rate(), "single_rps": r_single.rate(), "ratio": ratio,
        "single_p99_ms": r_single.ms(0.99),
        "half_rate_rps": r_half.rate(), "half_rate_p50_ms": r_half.ms(0.5), "half_rate_p99_ms": r_half.ms(0.99),
        "batch_actions_per_s": batch_actions, "peak_rss_mb": rss_mb, "failed": failed,
        "single_server_cpu_us": single_cpu, "batch_server_cpu_us_per_action": batch_cpu,
        "reference_server_cpu_us": ref_cpu,
        "reference_machine_busy_cores": ref_machine.as_ref().map(|m| m.busy),
        "single_machine_busy_cores": single_machine.as_ref().map(|m| m.busy),
        "single_machine_iowait_cores": single_machine.as_ref().map(|m| m.iowait),
        "single_commit_records": single_commits.map(|c| c.0),
        "single_commit_ms": single_commits.map(|c| c.1 * 1000.0),
    });
    if args.json {
        println!("{figures}");
    }
    Ok(figures)
}

/// Server CPU microseconds per action since `before` (a reading of [`ServerProcess::cpu_seconds`]).
fn cpu_per(server: &ServerProcess, before: Option<f64>, actions: u64) -> Option<f64> {
    let used = server.cpu_seconds()? - before?;
    (actions > 0).then(|| used * 1e6 / actions as f64)
}

/// How busy the whole machine was over a phase, from `/proc/stat`: whether a phase was bound by
/// the cores (the generator and the server share them) or by waiting (fsync, the network).
struct MachineCpu {
    /// Cores' worth of time spent running anything (user, system, interrupts, steal).
    busy: f64,
    /// Cores' worth of idle time with I/O outstanding.
    iowait: f64,
    cores: usize,
}

impl MachineCpu {
    /// The aggregate `cpu` line's counters (clock ticks) and the number of cores.
    fn read() -> Option<(Vec<u64>, usize, Instant)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let total: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let cores = lines.filter(|l| l.starts_with("cpu")).count();
        (total.len() >= 5).then_some((total, cores, Instant::now()))
    }

    fn since(before: Option<(Vec<u64>, usize, Instant)>) -> Option<Self> {
        let (before, cores, started) = before?;
        let (after, _, _) = Self::read()?;
        let delta: Vec<f64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.saturating_sub(*b) as f64 / 100.0)
            .collect();
        let secs = started.elapsed().as_secs_f64();
        // user nice system idle iowait irq softirq steal …; guest time is already in user.
        let busy: f64 = delta.iter().take(8).sum::<f64>() - delta[3] - delta[4];
        Some(Self {
            busy: busy / secs,
            iowait: delta[4] / secs,
            cores,
        })
    }
}

/// The log's group-commit totals so far, from the server's own `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct GroupCommits {
    commits: f64,
    records: f64,
    seconds: f64,
}

impl GroupCommits {
    /// Mean records per group commit and mean commit time (write + fsync) between two readings.
    fn since(before: Option<Self>, after: Option<Self>) -> Option<(f64, f64)> {
        let (b, a) = (before?, after?);
        let commits = a.commits - b.commits;
        (commits > 0.0).then(|| {
            (
                (a.records - b.records) / commits,
                (a.seconds - b.seconds) / commits,
            )
        })
    }
}

async fn group_commits(client: &reqwest::Client, base: &str) -> Option<GroupCommits> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    Some(GroupCommits {
        commits: value("philo_log_group_commit_records_count")?,
        records: value("philo_log_group_commit_records_sum")?,
        seconds: value("philo_log_group_commit_duration_seconds_sum")?,
    })
}

fn dir_size(path: &std::path::Path) -> u64 {
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
