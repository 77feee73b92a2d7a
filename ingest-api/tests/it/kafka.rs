//! Ingest on the Kafka backend while the cluster fails (librdkafka's mock cluster: a real
//! broker cannot be made to go down on cue). An action is acknowledged only once Kafka has it;
//! while the brokers are down ingest answers 503 `log_unavailable` with `Retry-After` — never a
//! 2xx, never a 500 — and every acknowledged action is in the topic afterwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, KafkaLog, KafkaLogConfig, Log};
use rdkafka::mocking::MockCluster;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{PARTITIONS, TestApp};

fn post(i: usize) -> serde_json::Value {
    json!({"type": "post.created", "title": format!("post {i}"), "body": "text", "tags": []})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_answers_503_and_loses_no_acknowledged_action() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    // Provisioned ahead, as operators do on clusters that deny CreateTopics.
    cluster
        .create_topic(ACTIONS_TOPIC, PARTITIONS as i32, 1)
        .unwrap();
    let mut config = KafkaLogConfig::new(cluster.bootstrap_servers());
    config.delivery_timeout = Duration::from_millis(1500);
    config.request_timeout = Duration::from_secs(3);
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(config).unwrap());
    let app = TestApp::with_log(log.clone()).await;
    let ann = app.register("ann").await;

    let mut acknowledged = HashSet::new();
    for i in 0..5 {
        let body = app
            .post_action(&ann.access, &post(i))
            .await
            .expect(StatusCode::ACCEPTED);
        acknowledged.insert(body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }

    cluster.broker_down(1).unwrap();
    let started = Instant::now();
    let down = app.post_action(&ann.access, &post(100)).await;
    let err = down.expect_error(StatusCode::SERVICE_UNAVAILABLE, "log_unavailable");
    assert!(
        err["message"].as_str().unwrap().contains("unavailable"),
        "{err}"
    );
    assert_eq!(down.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the delivery timeout, took {:?}",
        started.elapsed()
    );
    let batch = app
        .post_json(
            "/v1/actions/batch",
            Some(&ann.access),
            &json!([post(101), post(102)]),
        )
        .await;
    batch.expect_error(StatusCode::SERVICE_UNAVAILABLE, "log_unavailable");

    cluster.broker_up(1).unwrap();
    // The producer reconnects on its own; the client's retry after Retry-After succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut back = 0;
    while back < 5 {
        let r = app.post_action(&ann.access, &post(200 + back)).await;
        match r.status {
            StatusCode::ACCEPTED => {
                acknowledged.insert(r.json()["id"].as_str().unwrap().parse().unwrap());
                back += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(Instant::now() < deadline, "Kafka did not come back");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("unexpected {other}: {}", r.json()),
        }
    }

    // Every acknowledged action is in the topic, once.
    let mut seen = HashSet::new();
    for p in 0..PARTITIONS {
        let wm = log.watermarks(ACTIONS_TOPIC, p).await.unwrap();
        let mut offset = wm.low;
        while offset < wm.high {
            let records = log.read(ACTIONS_TOPIC, p, offset, 500).await.unwrap();
            offset += records.len() as u64;
            for r in records {
                let env = Envelope::from_json(&r.value).unwrap();
                assert!(seen.insert(env.id), "{} stored twice", env.id);
            }
        }
    }
    let missing: Vec<_> = acknowledged.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in Kafka: {missing:?}"
    );
}
