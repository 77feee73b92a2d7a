//! `/v1/auth/*`: registration, login, refresh rotation, logout, and the outbox actions they
//! append to the log.

use axum::http::{Method, StatusCode};
use philo_ingest_api::IngestConfig;
use serde_json::json;

use crate::harness::{PASSWORD, TestApp, post};

#[tokio::test]
async fn register_answers_201_with_tokens_and_appends_user_registered() {
    let app = TestApp::new().await;
    let res = app
        .post_json(
            "/v1/auth/register",
            None,
            &json!({"username": "Ada_1", "email": "ada@example.org", "password": PASSWORD, "role": "procurer"}),
        )
        .await;
    let body = res.expect(StatusCode::CREATED);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    assert!(body["refresh_token"].as_str().unwrap().len() >= 40);
    let user_id: uuid::Uuid = body["user_id"].as_str().unwrap().parse().unwrap();

    // The outbox is drained before the answer: the action is already in the log.
    let recs = app.records().await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    let env = &recs[0].envelope;
    assert_eq!(env.action.kind().as_str(), "user.registered");
    assert_eq!(env.actor_id, user_id);
    assert_eq!(&recs[0].key[..], user_id.as_bytes(), "keyed by actor");
    assert_eq!(
        crate::harness::action_json(env),
        json!({"type": "user.registered", "username": "Ada_1", "role": "procurer"})
    );

    // The access token works at once.
    let access = body["access_token"].as_str().unwrap();
    app.post_action(access, &post("first"))
        .await
        .expect(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn duplicate_username_in_another_case_is_409() {
    let app = TestApp::new().await;
    app.register("grace").await;
    let before = app.records().await.len();
    let res = app
        .post_json(
            "/v1/auth/register",
            None,
            &json!({"username": "GRACE", "email": "other@example.org", "password": PASSWORD}),
        )
        .await;
    let body = res.expect_error(StatusCode::CONFLICT, "username_taken");
    assert_eq!(body["field"], "username");
    let res = app
        .post_json(
            "/v1/auth/register",
            None,
            &json!({"username": "grace2", "email": "Grace@Example.ORG", "password": PASSWORD}),
        )
        .await;
    let body = res.expect_error(StatusCode::CONFLICT, "email_taken");
    assert_eq!(body["field"], "email");
    assert_eq!(app.records().await.len(), before, "nothing appended");
}

#[tokio::test]
async fn registration_input_is_refused_with_codes() {
    let app = TestApp::new().await;
    let reg = |body: serde_json::Value| {
        let app = &app;
        async move { app.post_json("/v1/auth/register", None, &body).await }
    };

    reg(json!({"username": "boss", "email": "b@example.org", "password": PASSWORD, "role": "admin"}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "role_forbidden");

    let body = reg(json!({"username": "mail", "email": "not-an-email", "password": PASSWORD}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email");
    assert_eq!(body["field"], "email");

    let body = reg(json!({"username": "short", "email": "s@example.org", "password": "short"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "password_too_short");
    assert_eq!(body["field"], "password");

    let body = reg(json!({"username": "x", "email": "x@example.org", "password": PASSWORD}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_username");
    assert_eq!(body["field"], "username");

    let body = reg(json!({"username": "extra", "email": "e@example.org", "password": PASSWORD, "is_admin": true}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_field");
    assert_eq!(body["field"], "is_admin");

    let body = reg(json!({"username": "nomail", "password": PASSWORD}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "missing_field");
    assert_eq!(body["field"], "email");

    reg(
        json!({"username": "role", "email": "r@example.org", "password": PASSWORD, "role": "root"}),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value");

    app.post_raw("/v1/auth/register", None, &[], r#"{"username": "oops","#)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "malformed_json");

    let form = "username=ok&email=ok%40example.org&password=correcthorsebattery";
    app.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some("application/x-www-form-urlencoded"),
        &[],
        form,
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    app.call(Method::POST, "/v1/auth/register", None, None, &[], "{}")
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    assert!(app.records().await.is_empty(), "no account was created");
    // None of the refused names was taken.
    app.register("boss").await;
}

#[tokio::test]
async fn login_by_email_appends_user_logged_in_and_wrong_password_is_401() {
    let app = TestApp::new().await;
    let reg = app.register("linus").await;

    let session = app.login("LINUS@example.org").await;
    assert_eq!(session.user_id, reg.user_id);
    assert_ne!(session.access, reg.access, "a new session");
    let logged_in = app.records_of_kind("user.logged_in").await;
    assert_eq!(logged_in.len(), 1);
    assert_eq!(logged_in[0].envelope.actor_id, reg.user_id);

    for (login, password) in [
        ("linus", "wrong password!!"),
        ("nobody", PASSWORD),
        ("", PASSWORD),
    ] {
        let res = app
            .post_json(
                "/v1/auth/login",
                None,
                &json!({"login": login, "password": password}),
            )
            .await;
        let body = res.expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert!(body.get("field").is_none(), "says nothing about which part");
    }
    assert_eq!(app.records_of_kind("user.logged_in").await.len(), 1);
}

#[tokio::test]
async fn refresh_rotates_once_and_reuse_kills_the_session() {
    let app = TestApp::new().await;
    let s = app.register("rota").await;

    let res = app
        .post_json(
            "/v1/auth/refresh",
            None,
            &json!({"refresh_token": s.refresh}),
        )
        .await;
    let body = res.expect(StatusCode::OK);
    let refresh2 = body["refresh_token"].as_str().unwrap().to_owned();
    let access2 = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, s.refresh);
    assert_eq!(body["user_id"], s.user_id.to_string());
    app.post_action(&access2, &post("with the rotated token"))
        .await
        .expect(StatusCode::ACCEPTED);

    // The spent token again: reuse revokes the whole session.
    app.post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": s.refresh}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    app.post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": refresh2}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    app.post_action(&access2, &post("after the reuse"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");

    app.post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": "never-issued"}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(app.records_of_kind("post.created").await.len(), 1);
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_appends_user_logged_out() {
    let app = TestApp::new().await;
    let s = app.register("bye").await;
    let other = app.login("bye").await;

    let res = app
        .call(
            Method::POST,
            "/v1/auth/logout",
            Some(&s.access),
            None,
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.body.is_empty());

    app.post_action(&s.access, &post("after logout"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    app.post_json(
        "/v1/auth/refresh",
        None,
        &json!({"refresh_token": s.refresh}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    app.call(
        Method::POST,
        "/v1/auth/logout",
        Some(&s.access),
        None,
        &[],
        "",
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");

    let out = app.records_of_kind("user.logged_out").await;
    assert_eq!(out.len(), 1, "logged out once");
    assert_eq!(out[0].envelope.actor_id, s.user_id);
    assert!(app.records_of_kind("post.created").await.is_empty());

    // Another session of the same user is untouched.
    app.post_action(&other.access, &post("other session"))
        .await
        .expect(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn auth_attempts_are_rate_limited_per_address() {
    let app = TestApp::with_config(IngestConfig {
        auth_attempts_per_minute: 3,
        ..IngestConfig::default()
    })
    .await;
    app.register("limited").await;
    app.login("limited").await;
    app.login("limited@example.org").await;
    let res = app
        .post_json(
            "/v1/auth/login",
            None,
            &json!({"login": "limited", "password": PASSWORD}),
        )
        .await;
    res.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let secs: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    assert_eq!(app.records_of_kind("user.logged_in").await.len(), 2);
}
