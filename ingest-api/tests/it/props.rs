//! Whatever bytes reach `POST /v1/actions`, the answer is a 2xx or a 4xx with a JSON error
//! code; never a 5xx.

use axum::http::StatusCode;
use philo_events::ActionKind;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};

use crate::harness::TestApp;

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "type", "title", "body", "tags", "post_id", "actor_id", "id", "amount",
            "currency", "starts_at", "location", "online_url", "user_id", "reason",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_.\\[\\]0-9`]{0,10}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    let kinds: Vec<&'static str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        prop::sample::select(kinds).prop_map(Value::from),
        Just(Value::from("0190f5c2-1b2c-7d3e-8f40-1234567890ab")),
        Just(Value::from("2030-01-01T00:00:00Z")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object with a real kind's `type` and arbitrary members: deep into the decoder.
fn action_like() -> impl Strategy<Value = Value> {
    let kinds: Vec<&'static str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
    (
        prop::sample::select(kinds),
        prop::collection::btree_map(key(), json_value(), 0..6),
    )
        .prop_map(|(kind, members)| {
            let mut obj: Map<String, Value> = members.into_iter().collect();
            obj.insert("type".into(), kind.into());
            Value::Object(obj)
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        action_like().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        // Valid JSON cut short.
        (action_like(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let bytes = serde_json::to_vec(&v).unwrap();
            bytes[..cut.index(bytes.len())].to_vec()
        }),
    ]
}

#[test]
fn arbitrary_bodies_never_cause_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, fuzzer) = rt.block_on(async {
        let app = TestApp::new().await;
        let s = app.register("fuzzer").await;
        (app, s)
    });
    let token = fuzzer.access.clone();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(body(), any::<bool>()), |(bytes, batch)| {
            let path = if batch {
                "/v1/actions/batch"
            } else {
                "/v1/actions"
            };
            let bytes = if batch {
                // Wrapped in an array, so most batches get past the shape check.
                [b"[".as_slice(), &bytes, b"]"].concat()
            } else {
                bytes
            };
            let res = rt.block_on(app.post_raw(path, Some(&token), &[], bytes.clone()));
            let shown = String::from_utf8_lossy(&bytes);
            if res.status.is_success() {
                prop_assert!(
                    [StatusCode::ACCEPTED, StatusCode::MULTI_STATUS].contains(&res.status),
                    "{} for {shown}",
                    res.status
                );
                return Ok(());
            }
            prop_assert!(
                res.status.is_client_error() && res.status != StatusCode::NOT_FOUND,
                "{} for {path} {shown}: {}",
                res.status,
                String::from_utf8_lossy(&res.body)
            );
            let body: Value = serde_json::from_slice(&res.body)
                .map_err(|e| TestCaseError::fail(format!("4xx body is not JSON ({e}): {shown}")))?;
            let has_code = |v: &Value| v["code"].as_str().is_some_and(|c| !c.is_empty());
            if let Some(results) = body["results"].as_array() {
                // A batch whose every item was refused: each item carries its code.
                prop_assert!(batch && res.status == StatusCode::UNPROCESSABLE_ENTITY);
                prop_assert!(
                    !results.is_empty() && results.iter().all(has_code),
                    "{body}"
                );
            } else {
                prop_assert!(has_code(&body), "no code in {body} for {shown}");
            }
            Ok(())
        })
        .unwrap();
    // Whatever was accepted is in the log as the fuzzer's own, client-submittable action.
    for r in rt.block_on(app.records()) {
        assert_eq!(r.envelope.actor_id, fuzzer.user_id);
        let kind = r.envelope.action.kind();
        assert!(kind.client_submittable() || kind.as_str() == "user.registered");
    }
}
