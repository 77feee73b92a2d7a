//! Scale-out on Kafka (ADR 009): two `philo streams` processes in one consumer group, on a real
//! Kafka-protocol broker, split the partitions; killing one (-9) moves its partitions to the
//! other, which rebuilds those users' views from the log; each store ends with exactly the
//! views of one process replaying the same log, restricted to the users it holds.

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;
#[path = "../events/tests/support/tansu.rs"]
mod tansu;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, KafkaLog, Log, Record};
use philo_streams::workload::{Workload, WorkloadConfig};
use serde_json::Value;

use common::philo_with;

const PARTITIONS: u32 = 8;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn record(env: &Envelope) -> Record {
    Record::new(
        bytes::Bytes::copy_from_slice(env.actor_id.as_bytes()),
        env.to_json(),
        env.received_at.timestamp_millis(),
    )
}

fn streams(env: &[(&str, &str)], data: &Path, port: u16) -> Child {
    philo_with(env)
        .args(["streams", "--data-dir"])
        .arg(data)
        .env("PHILO__STREAMS__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// The sum of a metric's series (all labels).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .reduce(|a, b| a + b)
}

struct Scrape {
    owned: f64,
    /// Records applied: the sum of the job's next offsets over all partitions.
    applied: f64,
    reshards: f64,
}

async fn scrape(http: &reqwest::Client, port: u16) -> Option<Scrape> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(Scrape {
        owned: metric(&text, "philo_streams_owned_partitions")?,
        applied: metric(&text, "philo_streams_position")?,
        reshards: metric(&text, "philo_streams_reshards_total").unwrap_or(0.0),
    })
}

/// Waits until `done` holds for the scrapes of `ports`.
async fn wait_for(
    http: &reqwest::Client,
    ports: &[u16],
    what: &str,
    done: impl Fn(&[Scrape]) -> bool,
) {
    let started = Instant::now();
    loop {
        let mut scrapes = Vec::new();
        for &p in ports {
            if let Some(s) = scrape(http, p).await {
                scrapes.push(s);
            }
        }
        if scrapes.len() == ports.len() && done(&scrapes) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn digest(env: &[(&str, &str)], args: &[&str]) -> Value {
    let out = philo_with(env)
        .args(["streams", "digest"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// One process's views of the whole log so far: `philo log replay --into DIR`.
fn reference(env: &[(&str, &str)], data: &Path, into: &Path) {
    let out = philo_with(env)
        .args(["log", "replay", "--data-dir"])
        .arg(data)
        .arg("--into")
        .arg(into)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Digests of a `philo log replay --into` store, restricted to `share` when given.
fn reference_digest(
    env: &[(&str, &str)],
    data: &Path,
    store: &Path,
    share: Option<&BTreeSet<u64>>,
) -> Value {
    let mut args = vec![
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--store".to_owned(),
        store.display().to_string(),
    ];
    if let Some(share) = share {
        args.push("--partitions".to_owned());
        args.push(csv(share));
    }
    digest(env, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn partitions_of(d: &Value) -> BTreeSet<u64> {
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

fn csv(p: &BTreeSet<u64>) -> String {
    p.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_processes_split_partitions_and_take_over_on_kill() {
    let broker = tansu::Broker::start();
    // A short session so a killed member's partitions move within seconds.
    let url = format!(
        "{}&session_timeout_ms=6000",
        common::kafka_url(&broker.bootstrap)
    );
    let env = [("PHILO__LOG__BACKEND", url.as_str())];
    let log = KafkaLog::from_url(&url).unwrap();
    log.create_topic(ACTIONS_TOPIC, PARTITIONS).await.unwrap();
    let mut c = WorkloadConfig::small(5);
    c.users = 300;
    c.actions = 1_500;
    let mut envs: Vec<Envelope> = Workload::new(c).collect();
    let second = envs.split_off(envs.len() * 2 / 3);
    for chunk in envs.chunks(500) {
        log.append(ACTIONS_TOPIC, chunk.iter().map(record).collect())
            .await
            .unwrap();
    }

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (a_port, b_port) = (free_port(), free_port());
    let a = common::Guard::new(streams(&env, &a_dir, a_port));
    let mut b = streams(&env, &b_dir, b_port);
    let http = reqwest::Client::new();
    wait_for(
        &http,
        &[a_port, b_port],
        "both members hold a share and caught up",
        |s| {
            s[0].owned > 0.0
                && s[1].owned > 0.0
                && s[0].owned + s[1].owned == f64::from(PARTITIONS)
                && s.iter().all(|s| s.applied == envs.len() as f64)
        },
    )
    .await;

    // B dies without leaving the group.
    b.kill().unwrap();
    b.wait().unwrap();
    let b_view = digest(&env, &["--data-dir", b_dir.to_str().unwrap()]);
    let b_share = partitions_of(&b_view);
    let scratch = dir.path().join("scratch");
    let reference_1 = dir.path().join("reference-1");
    reference(&env, &scratch, &reference_1);
    let expected_b = reference_digest(&env, &scratch, &reference_1, Some(&b_share));
    assert_eq!(
        b_view["tables"], expected_b["tables"],
        "B's share {b_share:?}"
    );
    assert_eq!(b_view["views"], expected_b["views"]);

    // The group moves B's partitions to A, which rebuilds them and carries on.
    wait_for(&http, &[a_port], "A holds every partition", |s| {
        s[0].owned == f64::from(PARTITIONS) && s[0].reshards >= 2.0
    })
    .await;
    // Live traffic as ingest makes it: stamped when received, each appended once the one
    // before is durable (a client refers only to what it got a 202 for).
    for e in &second {
        let live = Envelope::with_id(e.id, e.actor_id, e.action.clone(), chrono::Utc::now());
        log.append(ACTIONS_TOPIC, vec![record(&live)])
            .await
            .unwrap();
    }
    let total = (envs.len() + second.len()) as f64;
    wait_for(&http, &[a_port], "A caught up", |s| s[0].applied == total).await;
    assert!(a.terminate().success());

    let reference_2 = dir.path().join("reference-2");
    reference(&env, &scratch, &reference_2);
    let a_view = digest(&env, &["--data-dir", a_dir.to_str().unwrap()]);
    assert_eq!(partitions_of(&a_view).len(), PARTITIONS as usize);
    let expected = reference_digest(&env, &scratch, &reference_2, None);
    assert_eq!(a_view["views"], expected["views"]);
    assert!(
        !b_share.is_empty() && b_share.len() < PARTITIONS as usize,
        "{b_share:?}"
    );
}
