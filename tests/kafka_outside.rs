//! An outside Kafka client checks what `philo up --log kafka://…` wrote: Python's
//! `confluent-kafka` consumes the `actions` topic from a real Kafka-protocol broker (tansu) and
//! validates every record against the JSON Schemas the server publishes (`scripts/check_kafka_topic.py`).

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;
#[path = "../events/tests/support/tansu.rs"]
mod tansu;

use std::collections::HashSet;
use std::process::Command;

use common::register_user as register;
use serde_json::{Value, json};

/// `PHILO_PYTHON` (the venv `scripts/python-tools.sh` makes), or that venv's default place.
fn python() -> String {
    std::env::var("PHILO_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/philo/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_reads_records_that_match_the_published_schemas() {
    let broker = tansu::Broker::start();
    let url = common::kafka_url(&broker.bootstrap);
    let env = [("PHILO__LOG__BACKEND", url.as_str())];
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (server, base) = common::start(dir.path(), &env);
    let server = common::Guard::new(server);
    let http = reqwest::Client::new();
    let (ann, ann_token) = register(&http, &base, "ann").await;
    let (_bob, bob_token) = register(&http, &base, "bob").await;

    let mut acked: Vec<String> = Vec::new();
    let mut submit = async |token: &str, action: Value, traceparent: Option<&str>| -> Value {
        let mut req = http
            .post(format!("{base}/v1/actions"))
            .bearer_auth(token)
            .json(&action);
        if let Some(t) = traceparent {
            req = req.header("traceparent", t);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 202, "{action} -> {body}");
        acked.push(body["id"].as_str().unwrap().to_owned());
        body
    };
    let post = submit(
        &ann_token,
        json!({"type": "post.created", "title": "Pricing a B2B pilot", "body": "How?", "tags": ["pricing"]}),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    )
    .await;
    let post_id = post["id"].as_str().unwrap().to_owned();
    for (token, action) in [
        (
            &bob_token,
            json!({"type": "follow.created", "user_id": ann}),
        ),
        (
            &bob_token,
            json!({"type": "approach.created", "post_id": post_id, "title": "Value-based", "body": "Anchor on savings."}),
        ),
        (
            &bob_token,
            json!({"type": "comment.created", "target_id": post_id, "body": "Good question @ann"}),
        ),
        (
            &bob_token,
            json!({"type": "reaction.added", "target_id": post_id, "kind": "insightful"}),
        ),
        (
            &ann_token,
            json!({"type": "event.created", "title": "Pricing clinic", "description": "Bring numbers", "starts_at": "2027-01-10T17:00:00Z", "ends_at": "2027-01-10T18:00:00Z", "online_url": "https://meet.example.com/p"}),
        ),
        (
            &ann_token,
            json!({"type": "profile.updated", "display_name": "Ann"}),
        ),
        (
            &bob_token,
            json!({"type": "resume.updated", "text": "Ten years of pricing.", "skills": ["pricing"]}),
        ),
        (
            &bob_token,
            json!({"type": "explore.viewed", "item_ids": [post_id]}),
        ),
    ] {
        submit(token, action, None).await;
    }
    // A batch too.
    let batch: Value = http
        .post(format!("{base}/v1/actions/batch"))
        .bearer_auth(&ann_token)
        .json(&json!([
            {"type": "post.created", "title": "one", "body": "b", "tags": []},
            {"type": "post.created", "title": "two", "body": "b", "tags": []},
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for item in batch["results"].as_array().unwrap() {
        assert_eq!(item["status"], "accepted", "{batch}");
        acked.push(item["id"].as_str().unwrap().to_owned());
    }

    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check_kafka_topic.py"
        ))
        .args(["--bootstrap", &broker.bootstrap, "--topic", "actions"])
        .args(["--schema", &format!("{base}/v1/schema")])
        .output()
        .expect("run the checker (scripts/python-tools.sh installs confluent-kafka)");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "checker failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "invalid records: {}",
        report["invalid"]
    );
    assert_eq!(report["invalid"], json!([]));
    let ids: Vec<&str> = report["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no action twice in the topic");
    for id in &acked {
        assert!(
            unique.contains(id.as_str()),
            "acknowledged {id} is not in Kafka"
        );
    }
    // Registrations (and their logins) come through the accounts outbox into the same topic.
    assert!(ids.len() >= acked.len() + 2, "{} records", ids.len());
    assert!(server.terminate().success());
}
