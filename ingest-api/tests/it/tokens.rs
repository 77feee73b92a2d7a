//! Access-token checks at the HTTP edge: every forged, tampered or stale bearer is a 401 with
//! its code, and nothing reaches the log.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use philo_accounts::{Accounts, AccountsConfig, Clock, ManualClock, NewUser, Role};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{PASSWORD, SECRET, TestApp, post, sqlite_url};

/// Claims that look like ours: right issuer, live `exp`, a real user's `sub` and `sid`.
fn claims_like(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

async fn refused(app: &TestApp, authorization: Option<&str>, code: &str) {
    let mut extra = Vec::new();
    if let Some(a) = authorization {
        extra.push(("authorization", a));
    }
    let res = app
        .post_raw(
            "/v1/actions",
            None,
            &extra,
            serde_json::to_vec(&post("forged")).unwrap(),
        )
        .await;
    res.expect_error(StatusCode::UNAUTHORIZED, code);
}

#[tokio::test]
async fn missing_malformed_and_forged_tokens_are_401() {
    let app = TestApp::new().await;
    let s = app.register("victim").await;
    let claims = claims_like(&s.access);
    assert_eq!(claims["sub"], s.user_id.to_string());
    let baseline = app.records().await.len();

    refused(&app, None, "missing_token").await;
    refused(&app, Some("Bearer"), "invalid_token").await;
    refused(&app, Some("Bearer "), "invalid_token").await;
    refused(&app, Some(&format!("Basic {}", s.access)), "invalid_token").await;
    refused(&app, Some("Bearer garbage"), "invalid_token").await;
    refused(&app, Some("Bearer a.b.c"), "invalid_token").await;
    let long = format!("Bearer {}", "x".repeat(9000));
    refused(&app, Some(&long), "invalid_token").await;

    // alg: none, hand-built, with valid-looking claims and an empty signature.
    let none = b64(&json!({"alg": "none", "typ": "JWT"}));
    let forged = format!("Bearer {none}.{}.", b64(&claims));
    refused(&app, Some(&forged), "invalid_token").await;

    // HS256 under another key.
    let other_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough-0000"),
    )
    .unwrap();
    refused(&app, Some(&format!("Bearer {other_key}")), "invalid_token").await;

    // The right key but another algorithm.
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    refused(&app, Some(&format!("Bearer {hs512}")), "invalid_token").await;

    // The right key and algorithm, a foreign issuer.
    let mut foreign = claims.clone();
    foreign["iss"] = "not-philo".into();
    let foreign = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &foreign,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    refused(&app, Some(&format!("Bearer {foreign}")), "invalid_token").await;

    // Someone else's `sub` spliced into the payload, signature kept.
    let parts: Vec<&str> = s.access.split('.').collect();
    let mut tampered = claims.clone();
    tampered["sub"] = Uuid::now_v7().to_string().into();
    let tampered = format!("Bearer {}.{}.{}", parts[0], b64(&tampered), parts[2]);
    refused(&app, Some(&tampered), "invalid_token").await;
    // A single flipped signature character.
    let mut sig = parts[2].to_owned().into_bytes();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    let flipped = format!(
        "Bearer {}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(sig).unwrap()
    );
    refused(&app, Some(&flipped), "invalid_token").await;

    assert_eq!(app.records().await.len(), baseline, "nothing appended");
    // The genuine token still works, in either bearer spelling.
    let lower = format!("bearer {}", s.access);
    let res = app
        .post_raw(
            "/v1/actions",
            None,
            &[("authorization", &lower)],
            serde_json::to_vec(&post("genuine")).unwrap(),
        )
        .await;
    let body = res.expect(StatusCode::ACCEPTED);
    assert_eq!(
        app.record_at(body["position"].as_str().unwrap())
            .await
            .envelope
            .actor_id,
        s.user_id
    );
}

#[tokio::test]
async fn an_expired_token_is_401_token_expired() {
    let app = TestApp::new().await;
    // Same secret, a clock two hours behind: its 15-minute tokens are long dead now.
    let past = Arc::new(ManualClock::new(Utc::now() - TimeDelta::hours(2)));
    let clock: Arc<dyn Clock> = past.clone();
    let old = Accounts::connect(
        AccountsConfig::new(
            sqlite_url(app.dir.path(), "past.db"),
            SecretString::from(SECRET),
        ),
        clock,
    )
    .await
    .unwrap();
    let (user, pair) = old
        .register(NewUser {
            username: "timetraveller".into(),
            email: "tt@example.org".into(),
            password: SecretString::from(PASSWORD),
            role: Role::User,
        })
        .await
        .unwrap();
    let claims = claims_like(&pair.access_token);
    assert_eq!(claims["sub"], user.id.to_string());
    assert!(claims["exp"].as_i64().unwrap() < Utc::now().timestamp());
    // It was valid when (and where) it was issued.
    assert_eq!(old.verify_access(&pair.access_token).unwrap().sub, user.id);

    refused(
        &app,
        Some(&format!("Bearer {}", pair.access_token)),
        "token_expired",
    )
    .await;
    let res = app
        .call(
            Method::POST,
            "/v1/auth/logout",
            Some(&pair.access_token),
            None,
            &[],
            "",
        )
        .await;
    res.expect_error(StatusCode::UNAUTHORIZED, "token_expired");
    assert!(app.records().await.is_empty());
}
