//! Kill -9 the server repeatedly under concurrent load: every action that got a 2xx is in the
//! log after restart, exactly once, and the log opens cleanly each time (DESIGN invariant 1).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;

use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, Log};

const ROUNDS: usize = 5;
const WORKERS: usize = 16;

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    title: String,
) -> Option<uuid::Uuid> {
    let body =
        serde_json::json!({"type": "post.created", "title": title, "body": "load", "tags": []});
    let r = client
        .post(format!("{base}/v1/actions"))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        assert!(
            r.status().is_server_error(),
            "unexpected refusal {}",
            r.status()
        );
        return None;
    }
    let v: serde_json::Value = r.json().await.ok()?;
    v["id"].as_str().and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path();
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let mut token = String::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill delays seeded with {seed}");

    for round in 0..ROUNDS {
        let (mut child, base) = common::start(
            data,
            &[
                ("PHILO__INGEST__RATE_LIMIT_PER_SECOND", "1000000"),
                ("PHILO__INGEST__RATE_LIMIT_BURST", "1000000"),
            ],
        );
        // Wait for readiness (the log and accounts open and recovered).
        let ready = Instant::now();
        while !client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                ready.elapsed() < Duration::from_secs(30),
                "not ready after restart {round}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if round == 0 {
            token = common::register(&client, &base, "crasher", "kill dash nine").await;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let (client, base, token, acked, stop) = (
                client.clone(),
                base.clone(),
                token.clone(),
                acked.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match post(&client, &base, &token, format!("r{round} w{w} i{i}")).await {
                        Some(id) => acked.lock().unwrap().push(id),
                        None => break, // the server died under us
                    }
                    i += 1;
                }
            }));
        }
        let delay = 300 + (seed.rotate_left(round as u32 * 7) % 500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "round {round}: killed after {delay} ms, {} acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    let log = EmbeddedLog::open(EmbeddedLogConfig::new(data.join("log")))
        .expect("log opens cleanly after kill -9");
    let mut count: HashMap<uuid::Uuid, usize> = HashMap::new();
    for p in 0..log.partitions(ACTIONS_TOPIC).await.unwrap() {
        let wm = log.watermarks(ACTIONS_TOPIC, p).await.unwrap();
        let mut offset = wm.low;
        loop {
            let records = log.read(ACTIONS_TOPIC, p, offset, 10_000).await.unwrap();
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in &records {
                let env = Envelope::from_json(&r.value).expect("every record decodes");
                *count.entry(env.id).or_default() += 1;
            }
        }
    }
    let acked: HashSet<uuid::Uuid> = acked.lock().unwrap().iter().copied().collect();
    assert!(
        acked.len() > 50 * ROUNDS,
        "too little load to mean anything: {} acks",
        acked.len()
    );
    let missing: Vec<_> = acked.iter().filter(|id| !count.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged actions lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "actions stored twice: {twice:?}");
}
