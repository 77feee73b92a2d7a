//! `Idempotency-Key`: a retry returns the first answer and appends nothing; a crashed first
//! attempt (a *pending* entry) is completed with the planned action ids.

use axum::http::StatusCode;
use chrono::Utc;
use philo_events::{Action, Envelope, new_action_id};
use philo_ingest_api::idempotency::IdempotencyEntry;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Resp, Session, TestApp, action_json, post};

async fn with_key(app: &TestApp, path: &str, s: &Session, key: &str, body: &Value) -> Resp {
    app.post_raw(
        path,
        Some(&s.access),
        &[("idempotency-key", key)],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

/// The fingerprint the API stores: SHA-256 of route, a zero byte, and the body bytes.
fn fingerprint(route: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

#[tokio::test]
async fn a_retry_replays_the_first_answer_and_appends_once() {
    let app = TestApp::new().await;
    let s = app.register("retrier").await;
    let action = post("exactly once");

    let first = with_key(&app, "/v1/actions", &s, "key-1", &action).await;
    first.expect(StatusCode::ACCEPTED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = with_key(&app, "/v1/actions", &s, "key-1", &action).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(second.json(), first.json(), "same id, kind and position");
    assert_eq!(app.records_of_kind("post.created").await.len(), 1);

    // Same key, another body (or another route): refused, nothing appended.
    with_key(&app, "/v1/actions", &s, "key-1", &post("something else"))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    with_key(&app, "/v1/actions/batch", &s, "key-1", &json!([action]))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    // Keys are per user: another user's same key is a new request.
    let other = app.register("neighbour").await;
    with_key(&app, "/v1/actions", &other, "key-1", &post("mine"))
        .await
        .expect(StatusCode::ACCEPTED);
    // A new key is a new action.
    with_key(&app, "/v1/actions", &s, "key-2", &action)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(app.records_of_kind("post.created").await.len(), 3);
}

#[tokio::test]
async fn a_refused_request_is_replayed_too() {
    let app = TestApp::new().await;
    let s = app.register("stubborn").await;
    let bad = json!({"type": "post.created", "title": "", "body": "b"});
    let first = with_key(&app, "/v1/actions", &s, "bad-1", &bad).await;
    let body = first.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "required");
    let again = with_key(&app, "/v1/actions", &s, "bad-1", &bad).await;
    assert_eq!(
        again.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "required"),
        body
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert!(app.records_of_kind("post.created").await.is_empty());
}

#[tokio::test]
async fn a_batch_retry_replays_and_appends_once() {
    let app = TestApp::new().await;
    let s = app.register("batchretry").await;
    let items = json!([post("one"), {"type": "nope"}, post("two")]);
    let first = with_key(&app, "/v1/actions/batch", &s, "b-1", &items).await;
    let body = first.expect(StatusCode::MULTI_STATUS);
    let second = with_key(&app, "/v1/actions/batch", &s, "b-1", &items).await;
    assert_eq!(second.status, StatusCode::MULTI_STATUS);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.json(), body);
    assert_eq!(app.records_of_kind("post.created").await.len(), 2);

    with_key(&app, "/v1/actions/batch", &s, "b-1", &json!([post("one")]))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    assert_eq!(app.records_of_kind("post.created").await.len(), 2);
}

#[tokio::test]
async fn a_pending_entry_is_completed_with_the_planned_ids() {
    let app = TestApp::new().await;
    let s = app.register("crashed").await;
    let before = app.records().await.len();

    // What a first attempt that crashed after storing its plan, before appending, leaves.
    let raw = serde_json::to_vec(&post("planned before the crash")).unwrap();
    let now = Utc::now();
    let planned = new_action_id(now);
    let env = Envelope::with_id(planned, s.user_id, Action::from_json(&raw).unwrap(), now);
    let entry = IdempotencyEntry {
        fingerprint: fingerprint("/v1/actions", &raw),
        created_ms: now.timestamp_millis(),
        status: 0,
        body: serde_json::to_vec(&json!({"Single": {"id": planned, "kind": "post.created"}}))
            .unwrap(),
        pending: vec![env.to_json()],
    };
    app.state
        .idempotency
        .put(s.user_id, "crash-1", &entry, true)
        .unwrap();

    let retry = app
        .post_raw(
            "/v1/actions",
            Some(&s.access),
            &[("idempotency-key", "crash-1")],
            raw.clone(),
        )
        .await;
    let body = retry.expect(StatusCode::ACCEPTED);
    assert_eq!(body["id"], planned.to_string());
    assert_eq!(body["kind"], "post.created");
    let rec = app.record_at(body["position"].as_str().unwrap()).await;
    assert_eq!(rec.envelope, env, "the planned envelope, byte for byte");

    // Completed: a further retry is a plain replay and appends nothing.
    let replay = app
        .post_raw(
            "/v1/actions",
            Some(&s.access),
            &[("idempotency-key", "crash-1")],
            raw,
        )
        .await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), body);
    let after = app.records().await;
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.iter().filter(|r| r.envelope.id == planned).count(), 1);
}

#[tokio::test]
async fn a_pending_batch_entry_is_completed_with_the_planned_ids() {
    let app = TestApp::new().await;
    let s = app.register("crashedbatch").await;
    let items = json!([post("a"), {"type": "nope"}, post("b")]);
    let raw = serde_json::to_vec(&items).unwrap();
    let now = Utc::now();
    let envs: Vec<Envelope> = [&items[0], &items[2]]
        .iter()
        .map(|v| {
            let action = Action::from_value((*v).clone()).unwrap();
            Envelope::with_id(new_action_id(now), s.user_id, action, now)
        })
        .collect();
    let plan = json!({"Batch": {"results": [
        {"status": "accepted", "index": 0, "id": envs[0].id, "kind": "post.created", "position": ""},
        {"status": "rejected", "index": 1, "code": "unknown_kind", "message": "unknown action type", "field": "type"},
        {"status": "accepted", "index": 2, "id": envs[1].id, "kind": "post.created", "position": ""},
    ]}});
    let entry = IdempotencyEntry {
        fingerprint: fingerprint("/v1/actions/batch", &raw),
        created_ms: now.timestamp_millis(),
        status: 0,
        body: serde_json::to_vec(&plan).unwrap(),
        pending: envs.iter().map(Envelope::to_json).collect(),
    };
    app.state
        .idempotency
        .put(s.user_id, "crash-b", &entry, true)
        .unwrap();

    let body = app
        .post_raw(
            "/v1/actions/batch",
            Some(&s.access),
            &[("idempotency-key", "crash-b")],
            raw,
        )
        .await
        .expect(StatusCode::MULTI_STATUS);
    let results = body["results"].as_array().unwrap();
    for (r, env) in [&results[0], &results[2]].into_iter().zip(&envs) {
        assert_eq!(r["id"], env.id.to_string());
        let rec = app.record_at(r["position"].as_str().unwrap()).await;
        assert_eq!(&rec.envelope, env);
    }
    assert_eq!(results[1]["code"], "unknown_kind");
    let posts = app.records_of_kind("post.created").await;
    let titles: Vec<Value> = posts
        .iter()
        .map(|r| action_json(&r.envelope)["title"].clone())
        .collect();
    assert_eq!(titles, [json!("a"), json!("b")]);
}

#[tokio::test]
async fn a_key_in_flight_or_malformed_is_refused() {
    let app = TestApp::new().await;
    let s = app.register("racer").await;
    assert!(app.state.idempotency.begin(s.user_id, "busy"));
    with_key(&app, "/v1/actions", &s, "busy", &post("racing"))
        .await
        .expect_error(StatusCode::CONFLICT, "idempotency_key_in_flight");
    app.state.idempotency.end(s.user_id, "busy");
    with_key(&app, "/v1/actions", &s, "busy", &post("racing"))
        .await
        .expect(StatusCode::ACCEPTED);

    let long = "k".repeat(256);
    for key in ["has space", long.as_str()] {
        let body = with_key(&app, "/v1/actions", &s, key, &post("bad key"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key");
        assert_eq!(body["field"], "Idempotency-Key");
    }
    assert_eq!(app.records_of_kind("post.created").await.len(), 1);
}
