//! The stream jobs through the binary: `philo up` serves reads that see their own writes,
//! `philo streams rebuild` rebuilds views equal to the live ones, `philo streams` runs the jobs
//! as their own role with metrics.

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;
#[path = "../events/tests/support/tansu.rs"]
mod tansu;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{act, philo_with, register_user as register};
use serde_json::{Value, json};

fn rebuild(env: &[(&str, &str)], data: &std::path::Path, extra: &[&str]) -> Value {
    let out = philo_with(env)
        .args(["streams", "rebuild", "--data-dir"])
        .arg(data)
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "rebuild failed");
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_own_writes_and_rebuilds_equal_live_views() {
    reads_rebuilds_and_roles(&[]).await;
}

/// The same, with the log on a Kafka-protocol broker (`--log kafka://…`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_reads_see_own_writes_and_rebuilds_equal_live_views() {
    let broker = tansu::Broker::start();
    let url = common::kafka_url(&broker.bootstrap);
    reads_rebuilds_and_roles(&[("PHILO__LOG__BACKEND", &url)]).await;
}

async fn reads_rebuilds_and_roles(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path();
    let (server, base) = common::start(data, env);
    let server = common::Guard::new(server);
    let http = reqwest::Client::new();
    let (ann, ann_token) = register(&http, &base, "ann").await;
    let (_bob, bob_token) = register(&http, &base, "bob").await;

    act(
        &http,
        &base,
        &bob_token,
        json!({"type": "follow.created", "user_id": ann}),
    )
    .await;
    // Valid at ingest, but nobody has this id: the job records it as failed.
    let ghost = uuid::Uuid::now_v7();
    let failed = act(
        &http,
        &base,
        &bob_token,
        json!({"type": "follow.created", "user_id": ghost}),
    )
    .await;
    let mut last = Value::Null;
    for i in 0..5 {
        last = act(
            &http,
            &base,
            &ann_token,
            json!({"type": "post.created", "title": format!("post {i}"), "body": "text", "tags": []}),
        )
        .await;
    }
    // Read-your-writes: the feed waits until the views include the last post.
    let feed: Value = http
        .get(format!("{base}/v1/feed"))
        .query(&[
            ("after", last["position"].as_str().unwrap()),
            ("limit", "3"),
        ])
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = feed["items"].as_array().expect("a page");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0]["id"], last["id"],
        "newest first, including the last write"
    );
    assert!(feed["next_cursor"].is_string());

    assert!(server.terminate().success());

    // The failed action went to the `actions.failed` topic with its reason.
    let out = philo_with(env)
        .args(["log", "tail", "--topic", "actions.failed", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["record"]["action_id"], failed["id"]);
    assert_eq!(lines[0]["record"]["reason"], "unknown_user");
    assert_eq!(lines[0]["record"]["kind"], "follow.created");

    // Replay: what the job made of each action, and which views it changed.
    let replay = |extra: &[&str]| -> Vec<Value> {
        let out = philo_with(env)
            .args(["log", "replay", "--data-dir"])
            .arg(data)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = replay(&[]);
    let ghost_follow = all
        .iter()
        .find(|l| l["id"] == failed["id"])
        .expect("replayed");
    assert_eq!(ghost_follow["outcome"], "failed");
    assert_eq!(ghost_follow["reason"], "unknown_user");
    assert_eq!(ghost_follow["views"], json!([]));
    let feed_lines = replay(&["--view", "feed"]);
    let kinds: Vec<&str> = feed_lines
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["post.created"; 5], "{feed_lines:?}");
    // `--to` the last post's receive time: the last post is not replayed.
    let last_line = all.iter().find(|l| l["id"] == last["id"]).unwrap();
    let to = last_line["received_at"].as_str().unwrap();
    let before = replay(&["--view", "feed", "--to", to]);
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().all(|l| l["id"] != last["id"]));
    let window = replay(&["--from", to]);
    assert_eq!(
        window.len(),
        1,
        "only the last post was received from then on: {window:?}"
    );

    // With the server stopped: rebuild from the log, compare, replace one view.
    let check = rebuild(env, data, &["--check"]);
    assert_eq!(check["equal"], true, "{check}");
    assert!(check["records"].as_u64().unwrap() >= 8, "{check}");
    assert!(check["replaced_rows"].is_null());
    let feed_only = rebuild(env, data, &["--view", "feed"]);
    assert_eq!(feed_only["equal"], true, "{feed_only}");
    assert_eq!(
        feed_only["live"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["feed"]
    );
    assert!(feed_only["replaced_rows"].as_u64().unwrap() > 0);
    let unknown = philo_with(env)
        .args(["streams", "rebuild", "--view", "nope", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(!unknown.status.success());

    // `philo streams` as its own role: the jobs run, metrics are served.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let role = philo_with(env)
        .args(["streams", "--data-dir"])
        .arg(data)
        .env("PHILO__STREAMS__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let role = common::Guard::new(role);
    let started = Instant::now();
    let metrics = loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            && r.status() == 200
        {
            let text = r.text().await.unwrap();
            if text.contains("philo_streams_lag_records") {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "philo streams served no metrics"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("job=\"social\""), "{metrics}");
    // Every step, idle ones too, times its watermark sample.
    assert!(
        metrics.contains("philo_streams_step_phase_seconds_count{job=\"social\",phase=\"sample\"}"),
        "{metrics}"
    );
    assert!(role.terminate().success());

    // The views survive restarts: a new `philo up` answers from them at once.
    let (server, base) = common::start(data, env);
    let server = common::Guard::new(server);
    let feed: Value = http
        .get(format!("{base}/v1/feed"))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feed["items"].as_array().unwrap().len(), 5, "{feed}");
    assert!(server.terminate().success());
}
