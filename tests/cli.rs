//! The binary end to end: `philo up` with embedded defaults, `admin create-admin`,
//! `log tail` (through a running server and directly), graceful shutdown, config errors.

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;
#[path = "../events/tests/support/tansu.rs"]
mod tansu;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{philo, philo_with};
use std::time::{Duration, Instant};

fn tail_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn kinds(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l["record"]["action"]["type"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_admin_tail_and_graceful_shutdown() {
    up_admin_tail_and_shutdown(&[]).await;
}

/// The same with `philo up --log kafka://…` on a Kafka-protocol broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_up_admin_tail_and_graceful_shutdown() {
    let broker = tansu::Broker::start();
    let url = common::kafka_url(&broker.bootstrap);
    up_admin_tail_and_shutdown(&[("PHILO__LOG__BACKEND", &url)]).await;
}

async fn up_admin_tail_and_shutdown(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path();
    let (server, base) = common::start(data, env);
    let http = reqwest::Client::new();

    // An admin comes only from the CLI; the password is read from stdin.
    let out = common::create_admin(data, env, "root", "an admin passphrase");
    assert!(out.status.success(), "create-admin failed");
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["role"], "admin");

    let login: serde_json::Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"login": "ROOT", "password": "an admin passphrase"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_token = login["access_token"]
        .as_str()
        .expect("admin logged in")
        .to_owned();

    let token = common::register(&http, &base, "ada", "analytical engine").await;
    let post = |title: &str| {
        http.post(format!("{base}/v1/actions"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"type": "post.created", "title": title, "body": "b", "tags": []}))
            .send()
    };
    for t in ["one", "two", "three"] {
        assert_eq!(post(t).await.unwrap().status(), 202);
    }

    // A non-admin may not read the log.
    let r = http
        .get(format!("{base}/v1/admin/log"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The admin's own registration is relayed from the outbox within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let through_server = loop {
        let out = philo_with(env)
            .args(["log", "tail", "--url", &base, "--token", &admin_token])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tail --url failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = tail_lines(&out.stdout);
        let k = kinds(&lines);
        if k.iter().filter(|k| *k == "user.registered").count() == 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut k = kinds(&through_server);
    k.sort();
    assert_eq!(
        k,
        [
            "post.created",
            "post.created",
            "post.created",
            "user.logged_in",
            "user.registered",
            "user.registered"
        ]
    );

    // --follow prints records appended after it started.
    let mut follow = philo_with(env)
        .args([
            "log",
            "tail",
            "--follow",
            "--url",
            &base,
            "--token",
            &admin_token,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut titles = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if let Some(t) = v["record"]["action"]["title"].as_str() {
                titles.push(t.to_owned());
                if t == "four" {
                    break;
                }
            }
        }
        titles
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(post("four").await.unwrap().status(), 202);
    let waited = Instant::now();
    while !reader.is_finished() {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "--follow never printed the new record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    follow.kill().unwrap();
    let _ = follow.wait();
    assert_eq!(
        reader.join().unwrap().last().map(String::as_str),
        Some("four")
    );

    // SIGTERM: graceful shutdown, exit status 0.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no graceful exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");

    // With the server stopped, the data directory can be read directly: same records.
    let out = philo_with(env)
        .args(["log", "tail", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tail_lines(&out.stdout).len(), through_server.len() + 1);
}

#[test]
fn unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = philo()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("PHILO__LOG__PARTITIONZ", "3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("partitionz"), "{err}");
}

/// `philo bench ingest` end to end on a tiny load: every phase runs against a real server child
/// and the JSON report carries every figure, consistent with itself. (Rates are not asserted:
/// figures belong to benchmarks, not tests.)
#[test]
fn bench_ingest_reports_every_figure() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = philo()
        .args([
            "bench",
            "ingest",
            "--seconds",
            "1",
            "--connections",
            "4",
            "--batch-connections",
            "2",
            "--batch-size",
            "20",
            "--json",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap();
    let num = |k: &str| {
        report[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    assert_eq!(report["failed"], 0, "{report}");
    for k in [
        "reference_rps",
        "single_rps",
        "half_rate_rps",
        "batch_actions_per_s",
        "peak_rss_mb",
        "single_server_cpu_us",
        "single_commit_ms",
    ] {
        assert!(num(k) > 0.0, "{k} in {report}");
    }
    let ratio = num("single_rps") / num("reference_rps");
    assert!((num("ratio") - ratio).abs() < 1e-9, "{report}");
    // The single phase's group commits each hold at least one of its actions, and at most one
    // per connection: a connection has one request in flight at a time.
    let per_commit = num("single_commit_records");
    assert!((1.0..=4.0).contains(&per_commit), "{report}");
    assert!(
        stdout.contains("log group commits (single phase)"),
        "{stdout}"
    );
}
