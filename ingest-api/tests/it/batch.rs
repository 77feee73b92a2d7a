//! `POST /v1/actions/batch`: per-item results, exactly the valid items in the log, in order.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, action_json, post};

/// The titles of `user`'s `post.created` records, in log order.
async fn titles_of(app: &TestApp, user: uuid::Uuid) -> Vec<String> {
    app.records_of_kind("post.created")
        .await
        .iter()
        .filter(|r| r.envelope.actor_id == user)
        .map(|r| {
            action_json(&r.envelope)["title"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_mixed_batch_is_207_with_per_item_results() {
    let app = TestApp::new().await;
    let s = app.register("batcher").await;
    let items = json!([
        post("first"),
        {"type": "post.created", "title": ""},
        post("second"),
        {"type": "user.registered", "username": "x", "role": "user"},
        {"type": "nope"},
        post("third"),
        {"type": "post.created", "title": "t", "body": "b", "actor_id": s.user_id},
        17,
    ]);
    let body = app
        .post_json("/v1/actions/batch", Some(&s.access), &items)
        .await
        .expect(StatusCode::MULTI_STATUS);
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"], 5);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i, "results are in input order: {r}");
    }
    let rejected: Vec<(u64, &str, Option<&str>)> = results
        .iter()
        .filter(|r| r["status"] == "rejected")
        .map(|r| {
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap(),
                r["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "missing_field", Some("body")),
            (3, "server_only_kind", Some("type")),
            (4, "unknown_kind", Some("type")),
            (6, "unknown_field", Some("actor_id")),
            (7, "not_an_object", None),
        ]
    );

    let accepted: Vec<&Value> = results
        .iter()
        .filter(|r| r["status"] == "accepted")
        .collect();
    assert_eq!(
        accepted.iter().map(|r| &r["index"]).collect::<Vec<_>>(),
        [0, 2, 5]
    );
    let mut last = None;
    for (r, title) in accepted.iter().zip(["first", "second", "third"]) {
        assert_eq!(r["kind"], "post.created");
        let rec = app.record_at(r["position"].as_str().unwrap()).await;
        assert_eq!(rec.envelope.id.to_string(), r["id"].as_str().unwrap());
        assert_eq!(rec.envelope.actor_id, s.user_id);
        assert_eq!(action_json(&rec.envelope)["title"], title);
        if let Some(prev) = last.replace(rec.position) {
            assert!(rec.position > prev, "positions increase in input order");
        }
    }
    assert_eq!(
        titles_of(&app, s.user_id).await,
        ["first", "second", "third"]
    );
    assert!(app.records_of_kind("user.registered").await.len() == 1);
}

#[tokio::test]
async fn all_valid_is_202_and_all_invalid_is_422() {
    let app = TestApp::new().await;
    let s = app.register("allornothing").await;
    let body = app
        .post_json(
            "/v1/actions/batch",
            Some(&s.access),
            &json!([post("a"), post("b")]),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "accepted"
                && r["position"].as_str().is_some_and(|p| p.contains(':')))
    );

    let body = app
        .post_json(
            "/v1/actions/batch",
            Some(&s.access),
            &json!([{"type": "post.created"}, {"type": "bogus"}]),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(0), Some(2))
    );
    // Like every 4xx, an all-rejected batch carries a top-level code.
    assert_eq!(body["code"], "all_rejected");
    assert_eq!(body["results"][1]["code"], "unknown_kind");
    assert_eq!(titles_of(&app, s.user_id).await, ["a", "b"]);
}

#[tokio::test]
async fn the_largest_allowed_batch_is_accepted_and_one_more_is_413() {
    let app = TestApp::new().await;
    let s = app.register("bulk").await;
    let max = app.state.config.max_batch_actions;
    assert_eq!(max, 500);

    let too_many: Vec<Value> = (0..=max).map(|i| post(&format!("p{i}"))).collect();
    app.post_json("/v1/actions/batch", Some(&s.access), &Value::from(too_many))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large");
    assert!(titles_of(&app, s.user_id).await.is_empty());

    // The documented maximum passes with the default configuration.
    let all: Vec<Value> = (0..max).map(|i| post(&format!("p{i}"))).collect();
    let body = app
        .post_json("/v1/actions/batch", Some(&s.access), &Value::from(all))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(body["accepted"], max);
    let titles = titles_of(&app, s.user_id).await;
    let expected: Vec<String> = (0..max).map(|i| format!("p{i}")).collect();
    assert_eq!(titles, expected);
}

#[tokio::test]
async fn malformed_batches_are_refused_whole() {
    let app = TestApp::new().await;
    let s = app.register("shapes").await;
    let before = app.records().await.len();
    let send = |raw: &'static str| app.post_raw("/v1/actions/batch", Some(&s.access), &[], raw);

    send(r#"{"type": "post.created", "title": "t", "body": "b"}"#)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "expected_array");
    send(r#""[]""#)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "expected_array");
    send(r#"[{"type": "post.created""#)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "malformed_json");
    send("[]")
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "empty_batch");
    app.post_json("/v1/actions/batch", None, &json!([post("anon")]))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");

    // Over the byte limit (512 KiB).
    let huge: Vec<Value> = (0..40)
        .map(|_| json!({"type": "post.created", "title": "t", "body": "x".repeat(15_000)}))
        .collect();
    app.post_json("/v1/actions/batch", Some(&s.access), &Value::from(huge))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(app.records().await.len(), before);
}
