//! `POST /v1/actions`: accepted actions are in the log under the token's subject; every refusal
//! has its code and appends nothing.

use axum::http::{Method, StatusCode};
use philo_events::log::Position;
use philo_ingest_api::IngestConfig;
use serde_json::{Value, json};

use crate::harness::{TestApp, action_json, post};

#[tokio::test]
async fn an_accepted_action_is_in_the_log_under_the_token_subject() {
    let app = TestApp::new().await;
    let s = app.register("author").await;
    let action = post("Cold chain for small farms");

    let body = app
        .post_action(&s.access, &action)
        .await
        .expect(StatusCode::ACCEPTED);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "kind", "position"]);
    assert_eq!(body["kind"], "post.created");
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");

    let token = body["position"].as_str().unwrap();
    let pos: Position = token.parse().unwrap();
    assert!(pos.partition < crate::harness::PARTITIONS);
    let rec = app.record_at(token).await;
    assert_eq!(rec.envelope.id, id);
    assert_eq!(rec.envelope.actor_id, s.user_id);
    assert_eq!(&rec.key[..], s.user_id.as_bytes());
    assert_eq!(rec.envelope.schema_version, 1);
    assert_eq!(action_json(&rec.envelope), action);
    let age = chrono::Utc::now() - rec.envelope.received_at;
    assert!(age.num_seconds().abs() < 60, "received_at is now-ish");

    let posts = app.records_of_kind("post.created").await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].position, pos);

    // A second action of the same actor lands after the first, in the same partition.
    let body2 = app
        .post_action(&s.access, &post("second"))
        .await
        .expect(StatusCode::ACCEPTED);
    let pos2: Position = body2["position"].as_str().unwrap().parse().unwrap();
    assert_eq!(pos2.partition, pos.partition);
    assert!(pos2.offset > pos.offset);
    assert_ne!(body2["id"], body["id"]);
}

#[tokio::test]
async fn acting_as_someone_else_is_refused() {
    let app = TestApp::new().await;
    let mallory = app.register("mallory").await;
    let alice = app.register("alice").await;
    let before = app.records().await.len();

    let mut action = post("impersonation");
    action["actor_id"] = alice.user_id.to_string().into();
    let body = app
        .post_action(&mallory.access, &action)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_field");
    assert_eq!(body["field"], "actor_id");
    assert_eq!(app.records().await.len(), before, "nothing appended");
}

#[tokio::test]
async fn refusals_carry_their_code_and_field_and_append_nothing() {
    let app = TestApp::new().await;
    let s = app.register("refused").await;
    let before = app.records().await.len();

    struct Case {
        body: Value,
        status: StatusCode,
        code: &'static str,
        field: Option<&'static str>,
    }
    let case = |body: Value, status: u16, code: &'static str, field: Option<&'static str>| Case {
        body,
        status: StatusCode::from_u16(status).unwrap(),
        code,
        field,
    };
    let cases = [
        case(
            json!({"type": "user.registered", "username": "fake", "role": "user"}),
            403,
            "server_only_kind",
            Some("type"),
        ),
        case(
            json!({"type": "image.uploaded"}),
            422,
            "missing_field",
            None,
        ),
        case(
            json!({"type": "user.logged_out"}),
            403,
            "server_only_kind",
            Some("type"),
        ),
        case(
            json!({"type": "post.teleported", "title": "x"}),
            422,
            "unknown_kind",
            Some("type"),
        ),
        case(
            json!({"title": "x", "body": "y"}),
            422,
            "missing_type",
            Some("type"),
        ),
        case(json!({"type": 7}), 422, "invalid_type", Some("type")),
        case(
            json!({"type": "post.created", "title": "only a title"}),
            422,
            "missing_field",
            Some("body"),
        ),
        case(
            json!({"type": "post.created", "title": 42, "body": "b"}),
            422,
            "invalid_type",
            Some("title"),
        ),
        case(
            json!({"type": "post.created", "title": "t", "body": "b", "tags": "one"}),
            422,
            "invalid_type",
            Some("tags"),
        ),
        case(
            json!({"type": "post.created", "title": "", "body": "b"}),
            422,
            "required",
            Some("title"),
        ),
        case(
            json!({"type": "post.created", "title": "   ", "body": "b"}),
            422,
            "required",
            Some("title"),
        ),
        case(
            json!({"type": "post.created", "title": "t".repeat(201), "body": "b"}),
            422,
            "too_long",
            Some("title"),
        ),
        case(
            json!({"type": "post.created", "title": "t", "body": "b", "tags": ["Not A Tag"]}),
            422,
            "invalid_value",
            Some("tags[0]"),
        ),
        case(
            json!({"type": "post.deleted", "post_id": "not-a-uuid"}),
            422,
            "invalid_value",
            Some("post_id"),
        ),
        case(json!([post("in an array")]), 400, "not_an_object", None),
        case(json!("post.created"), 400, "not_an_object", None),
    ];
    for c in cases {
        let res = app.post_action(&s.access, &c.body).await;
        let body = res.expect_error(c.status, c.code);
        if let Some(field) = c.field {
            assert_eq!(body["field"], field, "for {}: {body}", c.body);
        }
    }

    // Not JSON at all, or JSON with a trailing comma / duplicate key.
    for raw in [
        &b"{\"type\": \"post.created\","[..],
        b"{\"type\":\"post.created\",\"title\":\"a\",\"title\":\"b\",\"body\":\"c\"}",
        b"\xff\xfe",
        b"",
    ] {
        app.post_raw("/v1/actions", Some(&s.access), &[], raw.to_vec())
            .await
            .expect_error(StatusCode::BAD_REQUEST, "malformed_json");
    }
    // Not declared as JSON.
    app.call(
        Method::POST,
        "/v1/actions",
        Some(&s.access),
        Some("text/plain"),
        &[],
        serde_json::to_vec(&post("plain")).unwrap(),
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // `application/*+json` and parameters are fine.
    app.call(
        Method::POST,
        "/v1/actions",
        Some(&s.access),
        Some("application/vnd.philo+json; charset=utf-8"),
        &[],
        serde_json::to_vec(&post("vendor type")).unwrap(),
    )
    .await
    .expect(StatusCode::ACCEPTED);

    let after = app.records().await;
    assert_eq!(after.len(), before + 1, "only the last one was appended");
    assert_eq!(
        action_json(&after.last().unwrap().envelope)["title"],
        "vendor type"
    );
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::new().await;
    let s = app.register("verbose").await;
    // Over the 64 KiB body limit.
    let big = json!({"type": "post.created", "title": "t", "body": "x".repeat(65 * 1024)});
    app.post_action(&s.access, &big)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Just under it: the body limit passes, validation has the last word (20 000 chars).
    let long = json!({"type": "post.created", "title": "t", "body": "x".repeat(60 * 1024)});
    let body = app
        .post_action(&s.access, &long)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "too_long");
    assert_eq!(body["field"], "body");
    let ok = json!({"type": "post.created", "title": "t", "body": "x".repeat(20_000)});
    app.post_action(&s.access, &ok)
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(app.records_of_kind("post.created").await.len(), 1);
}

#[tokio::test]
async fn a_smaller_max_action_bytes_is_enforced() {
    let app = TestApp::with_config(IngestConfig {
        max_action_bytes: 200,
        ..IngestConfig::default()
    })
    .await;
    let s = app.register("terse").await;
    let big = json!({"type": "post.created", "title": "t", "body": "x".repeat(300)});
    app.post_action(&s.access, &big)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    app.post_action(&s.access, &post("fits"))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(app.records_of_kind("post.created").await.len(), 1);
}

#[tokio::test]
async fn the_third_quick_request_is_rate_limited() {
    let app = TestApp::with_config(IngestConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 2,
        ..IngestConfig::default()
    })
    .await;
    let s = app.register("hasty").await;
    let other = app.register("patient").await;
    for i in 0..2 {
        app.post_action(&s.access, &post(&format!("quick {i}")))
            .await
            .expect(StatusCode::ACCEPTED);
    }
    let res = app.post_action(&s.access, &post("one too many")).await;
    res.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let secs: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&secs), "Retry-After {secs}");

    // Per user: someone else is not affected.
    app.post_action(&other.access, &post("someone else"))
        .await
        .expect(StatusCode::ACCEPTED);
    // A batch larger than the burst can never pass.
    app.post_json(
        "/v1/actions/batch",
        Some(&other.access),
        &json!([post("a"), post("b"), post("c")]),
    )
    .await
    .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "batch_exceeds_rate_limit");

    let titles: Vec<Value> = app
        .records_of_kind("post.created")
        .await
        .iter()
        .map(|r| action_json(&r.envelope)["title"].clone())
        .collect();
    assert_eq!(titles.len(), 3, "{titles:?}");
    assert!(!titles.contains(&json!("one too many")));
}
