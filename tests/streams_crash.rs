//! Kill -9 `philo bench load` (the log appender and the social job in one process) at random
//! moments, restart it each time, let it finish: every view equals that of an uninterrupted run
//! of the same workload, and the log holds every envelope exactly once (DESIGN invariants 1–3).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// The shared helpers; this test starts no server, so it uses only `philo()`.
#[allow(dead_code)]
mod common;

use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, Log};
use philo_streams::workload::{Workload, WorkloadConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// At least this many kills …
const KILLS: usize = 20;
/// … of which at least this many while the job applies content actions (it needs a few rounds
/// to get through the registrations and the initial follow graph: each restart recovers the
/// log's and the store's journals first) …
const CONTENT_KILLS: usize = 8;
/// … within this many rounds.
const MAX_ROUNDS: usize = 100;
const SEED: u64 = 0x5eed_c0de;
const USERS: usize = 1_000;
const ACTIONS: usize = 300_000;
/// One refused action after every 200 content actions (so the failed view is not empty).
const FAIL_EVERY: usize = 200;

fn load(data_dir: &Path) -> Command {
    let mut c = common::philo();
    c.args(["bench", "load", "--data-dir"])
        .arg(data_dir)
        .args(["--seed", &SEED.to_string()])
        .args(["--users", &USERS.to_string()])
        .args(["--actions", &ACTIONS.to_string()])
        .args(["--fail-every", &FAIL_EVERY.to_string()])
        // Small settings, so that trimming, pull mode (the 5 celebrities have 500 followers)
        // and backfill all happen.
        .args([
            "--feed-cap",
            "100",
            "--pull-threshold",
            "400",
            "--backfill",
            "5",
        ])
        // Short steps (the job commits its position once per step; the default step of 8 × 2048
        // records takes seconds in a debug build, longer than the process lives between kills).
        .env("PHILO__STREAMS__MAX_BATCH_RECORDS", "64")
        // Two log shards: a chunk spans both journals, so a kill can leave part of a chunk
        // durable, and the restart must complete it partition by partition.
        .env("PHILO__LOG__SHARDS", "2")
        .stdin(Stdio::null());
    c
}

/// Runs the load to completion and returns its JSON report.
fn complete(data_dir: &Path) -> serde_json::Value {
    let out = load(data_dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("run philo bench load");
    assert!(out.status.success(), "bench load failed: {}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let line = stdout.lines().last().expect("a report line");
    serde_json::from_str(line).expect("a JSON report")
}

/// Envelope ids in the log, with how often each occurs.
async fn log_ids(data_dir: &Path) -> HashMap<uuid::Uuid, usize> {
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(data_dir.join("log")))
        .expect("log opens cleanly after kill -9");
    assert_eq!(log.shard_count(), 2, "the load created a log of two shards");
    let mut count: HashMap<uuid::Uuid, usize> = HashMap::new();
    for p in 0..log.partitions(ACTIONS_TOPIC).await.unwrap() {
        let wm = log.watermarks(ACTIONS_TOPIC, p).await.unwrap();
        assert_eq!(wm.low, 0);
        let mut offset = 0;
        while offset < wm.high {
            let records = log.read(ACTIONS_TOPIC, p, offset, 10_000).await.unwrap();
            offset += records.len() as u64;
            for r in &records {
                let env = Envelope::from_json(&r.value).expect("every record decodes");
                *count.entry(env.id).or_default() += 1;
            }
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_and_apply_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let workload = Workload::new(WorkloadConfig::scaled(SEED, USERS, ACTIONS));
    let content_start = (workload.users().len() + workload.initial_follows()) as u64;
    let expected = (workload.len() + ACTIONS / FAIL_EVERY) as u64;
    drop(workload);
    let seed = std::env::var("PHILO_STREAMS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("kill delays seeded with {seed} (PHILO_STREAMS_CRASH_SEED={seed} to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);

    let crashed = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (mut kills, mut content_kills) = (0, 0);
    let mut last_position = 0;
    while kills < KILLS || content_kills < CONTENT_KILLS {
        assert!(
            kills < MAX_ROUNDS,
            "only {content_kills} of {kills} kills hit the job in the content phase (job at {last_position} of {expected}, content from {content_start})"
        );
        let mut child = load(crashed.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn philo bench load");
        // The child reports, once it has recovered the log and the store, where its job starts.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(p) = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["resuming"]["job_position"].as_u64())
                {
                    let _ = tx.send(p);
                }
            }
        });
        // Even rounds count the delay from the process start (the kill may hit recovery), odd
        // ones from the job's start (recovery takes longer as the journals grow, and the kill
        // should also hit the work itself).
        let mut position = None;
        if kills % 2 == 1 {
            position = Some(
                rx.recv_timeout(Duration::from_secs(60))
                    .expect("the load reports its start"),
            );
        }
        let delay = rng.random_range(100..=900);
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = child.try_wait().unwrap() {
            panic!("round {kills}: the load finished ({status}) before it was killed; kill sooner");
        }
        child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        kills += 1;
        // Where this round's job started (absent when it was killed before it got there).
        let position = position.or_else(|| rx.try_recv().ok());
        if let Some(p) = position {
            assert!(p >= last_position, "the job's durable position went back");
            last_position = p;
            if p >= content_start {
                content_kills += 1;
            }
        }
        println!(
            "kill {kills} {delay} ms after the {}: the job had started at {position:?}",
            if kills % 2 == 0 {
                "job's start"
            } else {
                "process start"
            }
        );
    }
    let after_kills = started.elapsed();
    let resumed = complete(crashed.path());
    let crashed_took = started.elapsed();
    println!("after {kills} kills: {resumed}");

    let fresh = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let t = Instant::now();
    let reference = complete(fresh.path());
    println!(
        "uninterrupted ({:.1} s): {reference}",
        t.elapsed().as_secs_f64()
    );

    assert!(kills >= KILLS && content_kills >= CONTENT_KILLS);
    assert!(
        resumed["resumed_from"].as_u64().unwrap() > 0,
        "the killed runs appended nothing"
    );
    for report in [&resumed, &reference] {
        assert_eq!(report["appended"].as_u64(), Some(expected));
        assert_eq!(report["workload"].as_u64(), Some(expected));
    }
    assert_eq!(reference["resumed_from"].as_u64(), Some(0));
    assert_eq!(reference["duplicates"].as_u64(), Some(0));
    assert_eq!(
        reference["failed"].as_u64(),
        Some((ACTIONS / FAIL_EVERY) as u64),
        "exactly the refused actions fail"
    );
    let (crashed_views, reference_views) = (
        resumed["digests"].as_object().unwrap(),
        reference["digests"].as_object().unwrap(),
    );
    for view in ["graph", "feed", "content", "failed"] {
        assert!(reference_views.contains_key(view), "no digest of {view}");
    }
    for (view, digest) in reference_views {
        assert_eq!(
            crashed_views.get(view),
            Some(digest),
            "view `{view}` differs after {kills} kills"
        );
    }
    assert_eq!(crashed_views.len(), reference_views.len());

    for dir in [crashed.path(), fresh.path()] {
        let ids = log_ids(dir).await;
        assert_eq!(ids.len() as u64, expected, "distinct envelopes in the log");
        let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(twice.is_empty(), "envelopes stored twice: {twice:?}");
    }
    println!(
        "{kills} kills ({content_kills} in the content phase) in {:.1} s, resumed to the end in {:.1} s, whole test {:.1} s",
        after_kills.as_secs_f64(),
        (crashed_took - after_kills).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
