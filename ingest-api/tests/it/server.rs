//! One round trip through a real listener: register, post an action, find it in the log.

use std::net::SocketAddr;

use philo_events::log::Position;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{PASSWORD, TestApp, action_json, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_post_and_read_back_over_tcp() {
    let app = TestApp::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let service = app
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");

    let res = http
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"username": "wire", "email": "wire@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let tokens: Value = res.json().await.unwrap();
    let user_id = tokens["user_id"].as_str().unwrap().to_owned();

    let action = post("over the wire");
    let res = http
        .post(format!("{base}/v1/actions"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .json(&action)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.unwrap();

    // Durable when acknowledged: readable right away, at the position handed out.
    let pos: Position = accepted["position"].as_str().unwrap().parse().unwrap();
    let rec = app.record_at(&pos.to_string()).await;
    assert_eq!(
        rec.envelope.id.to_string(),
        accepted["id"].as_str().unwrap()
    );
    assert_eq!(rec.envelope.actor_id.to_string(), user_id);
    assert_eq!(action_json(&rec.envelope), action);

    let res = http
        .get(format!("{base}/v1/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
