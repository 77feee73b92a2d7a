//! `philo log copy`: an embedded deployment moves its log onto Kafka and carries on there.
//! Partitions and offsets are kept, so the views' stored positions stay valid: `philo up
//! --log kafka://…` on the same data directory answers from the same views and takes new
//! writes. A second copy finds everything there and copies nothing.

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;
#[path = "../events/tests/support/tansu.rs"]
mod tansu;

use serde_json::{Value, json};

use common::{act, philo, philo_with, register_user as register};

async fn post(http: &reqwest::Client, base: &str, token: &str, title: &str) -> Value {
    act(
        http,
        base,
        token,
        json!({"type": "post.created", "title": title, "body": "b", "tags": []}),
    )
    .await
}

fn tail(env: &[(&str, &str)], data: &std::path::Path) -> Vec<Value> {
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
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn copy(data: &std::path::Path, to: &str) -> Value {
    let out = philo()
        .args([
            "log",
            "copy",
            "--from",
            "embedded",
            "--to",
            to,
            "--data-dir",
        ])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_moves_to_kafka_and_the_platform_carries_on() {
    let broker = tansu::Broker::start();
    let kafka = common::kafka_url(&broker.bootstrap);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path();
    let http = reqwest::Client::new();

    let (server, base) = common::start(data, &[]);
    let server = common::Guard::new(server);
    let (ann, ann_token) = register(&http, &base, "ann").await;
    let (_bob, bob_token) = register(&http, &base, "bob").await;
    let r = http
        .post(format!("{base}/v1/actions"))
        .bearer_auth(&bob_token)
        .json(&json!({"type": "follow.created", "user_id": ann}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut last = Value::Null;
    for i in 0..4 {
        last = post(&http, &base, &ann_token, &format!("before {i}")).await;
    }
    // Let the job apply everything before stopping (the feed waits for `after`).
    let r = http
        .get(format!("{base}/v1/feed"))
        .query(&[("after", last["position"].as_str().unwrap())])
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(server.terminate().success());

    let report = copy(data, &kafka);
    let copied = report["topics"]["actions"]["copied"].as_u64().unwrap();
    assert_eq!(copied, 7, "2 registrations, a follow, 4 posts: {report}");
    let embedded = tail(&[], data);
    let on_kafka = tail(&[("PHILO__LOG__BACKEND", kafka.as_str())], data);
    assert_eq!(embedded.len() as u64, copied);
    assert_eq!(on_kafka, embedded, "same records at the same positions");

    // Again: nothing left to copy.
    let again = copy(data, &kafka);
    assert_eq!(again["topics"]["actions"]["copied"], 0, "{again}");
    assert_eq!(again["topics"]["actions"]["already_there"], copied);

    // The platform on Kafka, same data directory: the views are where they were.
    let env = [("PHILO__LOG__BACKEND", kafka.as_str())];
    let (server, base) = common::start(data, &env);
    let server = common::Guard::new(server);
    let after = post(&http, &base, &ann_token, "after the move").await;
    let feed: Value = http
        .get(format!("{base}/v1/feed"))
        .query(&[("after", after["position"].as_str().unwrap())])
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = feed["items"]
        .as_array()
        .expect("a page")
        .iter()
        .map(|i| i["data"]["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        titles,
        [
            "after the move",
            "before 3",
            "before 2",
            "before 1",
            "before 0"
        ],
        "{feed}"
    );
    assert!(server.terminate().success());
}
