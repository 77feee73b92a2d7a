//! Health, readiness, the OpenAPI document, `/v1/schema`, JSON 404/405, and the admin guard.

use axum::http::{Method, StatusCode};
use philo_events::ActionKind;

use crate::harness::{TestApp, post};

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::new().await;
    let body = app.get("/healthz", None).await.expect(StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let body = app.get("/readyz", None).await.expect(StatusCode::OK);
    assert_eq!(body["status"], "ready");
    // No recorder installed in tests: a JSON 404 with its own code, not a panic.
    app.get("/metrics", None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "metrics_disabled");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::new().await;
    let res = app.get("/openapi.json", None).await;
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let doc = res.expect(StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/actions", "post"),
        ("/v1/actions/batch", "post"),
        ("/v1/auth/register", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/images", "post"),
        ("/v1/schema", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/admin/log", "get"),
        ("/v1/admin/log/{partition}", "get"),
        ("/v1/admin/users/{id}", "delete"),
        ("/v1/admin/erasures/{action_id}", "get"),
    ] {
        assert!(
            paths.get(path).is_some_and(|p| p.get(method).is_some()),
            "{method} {path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn the_schema_lists_every_kind() {
    let app = TestApp::new().await;
    let doc = app.get("/v1/schema", None).await.expect(StatusCode::OK);
    let kinds = doc["kinds"].as_object().unwrap();
    assert_eq!(kinds.len(), ActionKind::ALL.len());
    for kind in ActionKind::ALL {
        let entry = &kinds[kind.as_str()];
        assert_eq!(
            entry["client_submittable"],
            kind.client_submittable(),
            "{kind}"
        );
        assert_eq!(entry["schema_version"], kind.schema_version());
        assert_eq!(
            entry["schema"]["properties"]["type"]["const"],
            kind.as_str()
        );
    }
    assert!(doc["envelope"]["properties"]["actor_id"].is_object());
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = TestApp::new().await;
    app.get("/v1/nothing-here", None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/", None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/v1/actions", None)
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.call(Method::DELETE, "/v1/auth/login", None, None, &[], "")
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.post_raw("/healthz", None, &[], "{}")
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_role() {
    let app = TestApp::new().await;
    let user = app.register("plain").await;
    app.post_action(&user.access, &post("for the admin to see"))
        .await
        .expect(StatusCode::ACCEPTED);
    app.get("/v1/admin/log", Some(&user.access))
        .await
        .expect_error(StatusCode::FORBIDDEN, "admin_only");
    app.get("/v1/admin/log", None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");

    let admin = app.admin("root").await;
    let info = app
        .get("/v1/admin/log", Some(&admin.access))
        .await
        .expect(StatusCode::OK);
    let parts = info["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), crate::harness::PARTITIONS as usize);
    let held: u64 = parts
        .iter()
        .map(|p| p["high"].as_u64().unwrap() - p["low"].as_u64().unwrap())
        .sum();
    assert_eq!(held as usize, app.records().await.len());

    let mine = app.records_of_kind("post.created").await;
    let pos = mine[0].position;
    let page = app
        .get(
            &format!(
                "/v1/admin/log/{}?from={}&limit=1",
                pos.partition, pos.offset
            ),
            Some(&admin.access),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["records"][0]["position"], pos.to_string());
    assert_eq!(
        page["records"][0]["record"]["id"],
        mine[0].envelope.id.to_string()
    );
    app.get("/v1/admin/log/99", Some(&admin.access))
        .await
        .expect_error(StatusCode::NOT_FOUND, "no_such_partition");
    app.get("/v1/admin/log/0?limit=0", Some(&admin.access))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_limit");
}

#[tokio::test]
async fn erasing_a_user_logs_account_erased_and_refuses_bad_calls() {
    let app = TestApp::new().await;
    let user = app.register("leaving").await;
    let admin = app.admin("root").await;
    let path = format!("/v1/admin/users/{}", user.user_id);
    app.delete(&path, Some(&user.access))
        .await
        .expect_error(StatusCode::FORBIDDEN, "admin_only");
    app.delete("/v1/admin/users/nope", Some(&admin.access))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_path");
    let unknown = format!("/v1/admin/users/{}", uuid::Uuid::now_v7());
    app.delete(&unknown, Some(&admin.access))
        .await
        .expect_error(StatusCode::NOT_FOUND, "unknown_user");

    let accepted = app
        .delete(&path, Some(&admin.access))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(accepted["status"], "accepted");
    // The action is in the log when the call answers, keyed by the erased user.
    let erased = app.records_of_kind("account.erased").await;
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0].envelope.actor_id, user.user_id);
    assert_eq!(accepted["action_id"], erased[0].envelope.id.to_string());
    // Their token no longer works.
    app.post_action(&user.access, &post("after erasure"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    let again = app
        .delete(&path, Some(&admin.access))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(again["status"], "already_erased");
    // This process runs no lake: receipts are someone else's to give.
    app.get(
        &format!("/v1/admin/erasures/{}", erased[0].envelope.id),
        Some(&admin.access),
    )
    .await
    .expect_error(StatusCode::SERVICE_UNAVAILABLE, "lake_unavailable");
}
