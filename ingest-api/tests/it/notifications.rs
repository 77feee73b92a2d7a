//! The notification endpoints over a real read side: actions go in through HTTP, the social job
//! derives notifications from the log, reads with `after=<position>` see them, and the live
//! stream (SSE, through a real listener) delivers them and resumes after `Last-Event-ID`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Session, TestApp, post};

/// Ingests one action and returns `(id, position)`.
async fn act(app: &TestApp, who: &Session, action: Value) -> (String, String) {
    let res = app
        .post_action(&who.access, &action)
        .await
        .expect(StatusCode::ACCEPTED);
    (
        res["id"].as_str().unwrap().to_owned(),
        res["position"].as_str().unwrap().to_owned(),
    )
}

async fn follow(app: &TestApp, who: &Session, whom: &Session) -> String {
    act(
        app,
        who,
        json!({"type": "follow.created", "user_id": whom.user_id}),
    )
    .await
    .1
}

/// GETs `path` as `who` and expects 200.
async fn read(app: &TestApp, who: &Session, path: &str) -> Value {
    app.get(path, Some(&who.access))
        .await
        .expect(StatusCode::OK)
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().unwrap()
}

fn note_ids(page: &Value) -> Vec<String> {
    items(page)
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

/// PUTs a JSON body as `who`.
async fn put(app: &TestApp, who: &Session, path: &str, body: &str) -> crate::harness::Resp {
    app.call(
        Method::PUT,
        path,
        Some(&who.access),
        Some("application/json"),
        &[],
        body.to_owned(),
    )
    .await
}

#[tokio::test]
async fn a_follow_notifies_the_followee() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    let pos = follow(&app, &a, &b).await;

    let page = read(&app, &b, &format!("/v1/notifications?after={pos}")).await;
    let notes = items(&page);
    assert_eq!(notes.len(), 1, "{page}");
    let n = &notes[0];
    assert_eq!(n["kind"], "new_follower");
    assert_eq!(n["actor_count"], 1);
    assert_eq!(
        n["actors"],
        json!([{"user_id": a.user_id, "username": "alice"}])
    );
    assert_eq!(n["read"], false);
    assert!(page.get("next_cursor").is_none(), "{page}");

    let count = read(&app, &b, "/v1/notifications/unread-count").await;
    assert_eq!(count, json!({"unread": 1, "capped": false}));
    // The follower hears nothing about their own action.
    let own = read(&app, &a, &format!("/v1/notifications?after={pos}")).await;
    assert_eq!(note_ids(&own), Vec::<String>::new());
}

#[tokio::test]
async fn reactions_by_three_users_group_into_one_notification() {
    let app = TestApp::with_reads().await;
    let owner = app.register("owner").await;
    let (post_id, _) = act(&app, &owner, post("Solar dryers")).await;
    let mut last = String::new();
    for name in ["alice", "carol", "dave"] {
        let who = app.register(name).await;
        last = act(
            &app,
            &who,
            json!({"type": "reaction.added", "target_id": post_id, "kind": "like"}),
        )
        .await
        .1;
    }

    let page = read(&app, &owner, &format!("/v1/notifications?after={last}")).await;
    let notes = items(&page);
    assert_eq!(notes.len(), 1, "{page}");
    let n = &notes[0];
    assert_eq!(n["kind"], "reaction");
    assert_eq!(n["actor_count"], 3);
    assert_eq!(n["target_id"], post_id);
    let names: Vec<&str> = n["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dave", "carol", "alice"], "most recent first");
    let count = read(&app, &owner, "/v1/notifications/unread-count").await;
    assert_eq!(count["unread"], 1);
}

#[tokio::test]
async fn marking_read_moves_the_marker_and_reads_see_it_after_its_position() {
    let app = TestApp::with_reads().await;
    let b = app.register("bob").await;
    let mut pos = String::new();
    for name in ["alice", "carol", "dave"] {
        let who = app.register(name).await;
        pos = follow(&app, &who, &b).await;
    }
    let page = read(&app, &b, &format!("/v1/notifications?after={pos}")).await;
    let ids = note_ids(&page);
    assert_eq!(ids.len(), 3, "{page}");

    // Up to the middle one: it and the older one are read.
    let res = app
        .post_json(
            "/v1/notifications/read",
            Some(&b.access),
            &json!({"up_to": ids[1]}),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(res["kind"], "notifications.read");
    let pos = res["position"].as_str().unwrap();
    let logged = app.record_at(pos).await;
    assert_eq!(logged.envelope.actor_id, b.user_id);
    assert_eq!(logged.envelope.id.to_string(), res["id"].as_str().unwrap());
    assert_eq!(
        serde_json::to_value(&logged.envelope.action).unwrap(),
        json!({"type": "notifications.read", "up_to": ids[1]})
    );
    let count = read(
        &app,
        &b,
        &format!("/v1/notifications/unread-count?after={pos}"),
    )
    .await;
    assert_eq!(count, json!({"unread": 1, "capped": false}));
    let page = read(&app, &b, &format!("/v1/notifications?after={pos}")).await;
    let flags: Vec<&Value> = items(&page).iter().map(|n| &n["read"]).collect();
    assert_eq!(flags, [&json!(false), &json!(true), &json!(true)]);

    // Without `up_to` (`{}` or no body at all): up to the newest.
    let res = app
        .post_raw("/v1/notifications/read", Some(&b.access), &[], "{}")
        .await
        .expect(StatusCode::ACCEPTED);
    let pos = res["position"].as_str().unwrap();
    let logged = app.record_at(pos).await;
    assert_eq!(
        serde_json::to_value(&logged.envelope.action).unwrap()["up_to"],
        ids[0]
    );
    let count = read(
        &app,
        &b,
        &format!("/v1/notifications/unread-count?after={pos}"),
    )
    .await;
    assert_eq!(count, json!({"unread": 0, "capped": false}));
    let page = read(&app, &b, &format!("/v1/notifications?after={pos}")).await;
    assert!(items(&page).iter().all(|n| n["read"] == true), "{page}");
    app.call(
        Method::POST,
        "/v1/notifications/read",
        Some(&b.access),
        None,
        &[],
        Body::empty(),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    app.post_raw("/v1/notifications/read", Some(&b.access), &[], "null")
        .await
        .expect(StatusCode::ACCEPTED);

    // Nothing to mark: 204, nothing appended.
    let loner = app.register("loner").await;
    let before = app.records_of_kind("notifications.read").await.len();
    let res = app
        .post_raw("/v1/notifications/read", Some(&loner.access), &[], "{}")
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.body.is_empty());
    assert_eq!(
        app.records_of_kind("notifications.read").await.len(),
        before
    );
}

#[tokio::test]
async fn preferences_are_changed_by_an_action_and_read_back() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    let defaults = read(&app, &b, "/v1/notifications/preferences").await;
    let defaults = defaults.as_object().unwrap();
    assert_eq!(defaults.len(), 10, "{defaults:?}");
    for (name, on) in defaults {
        assert_eq!(on, &json!(name != "post_by_followed"), "{name}");
    }

    let res = put(
        &app,
        &b,
        "/v1/notifications/preferences",
        r#"{"reaction": false, "post_by_followed": true}"#,
    )
    .await
    .expect(StatusCode::ACCEPTED);
    assert_eq!(res["kind"], "notifications.preferences_updated");
    let pos = res["position"].as_str().unwrap();
    let logged = app.record_at(pos).await;
    assert_eq!(logged.envelope.actor_id, b.user_id);
    let prefs = read(
        &app,
        &b,
        &format!("/v1/notifications/preferences?after={pos}"),
    )
    .await;
    for (name, on) in prefs.as_object().unwrap() {
        let want = name != "reaction";
        assert_eq!(on, &json!(want), "{name}: {prefs}");
    }

    // The view applies them: a reaction no longer notifies bob, a post by alice does.
    follow(&app, &b, &a).await;
    let (post_id, _) = act(&app, &b, post("mine")).await;
    act(
        &app,
        &a,
        json!({"type": "reaction.added", "target_id": post_id, "kind": "love"}),
    )
    .await;
    let (_, pos) = act(&app, &a, post("by alice")).await;
    let page = read(&app, &b, &format!("/v1/notifications?after={pos}")).await;
    let kinds: Vec<&str> = items(&page)
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["post_by_followed"], "{page}");
}

#[tokio::test]
async fn bad_requests_get_their_documented_codes_and_append_nothing() {
    let app = TestApp::with_reads().await;
    let b = app.register("bob").await;
    let prefs = "/v1/notifications/preferences";
    let cases: Vec<(&str, StatusCode, &str, Option<&str>)> = vec![
        ("{}", StatusCode::UNPROCESSABLE_ENTITY, "no_changes", None),
        (
            r#"{"colour": true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            Some("colour"),
        ),
        (
            r#"{"reaction": "yes"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("reaction"),
        ),
        (
            r#"{"type": "post.created", "reaction": true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            Some("type"),
        ),
        ("[]", StatusCode::BAD_REQUEST, "not_an_object", None),
        ("{", StatusCode::BAD_REQUEST, "malformed_json", None),
        (
            r#"{"reaction": true, "reaction": false}"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let res = put(&app, &b, prefs, body).await;
        let err = res.expect_error(status, code);
        assert_eq!(err["field"].as_str(), field, "{body}: {err}");
    }
    let read_cases: Vec<(&str, StatusCode, &str, Option<&str>)> = vec![
        (
            r#"{"up_to": "nope"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("up_to"),
        ),
        (
            r#"{"up_to": "00000000-0000-0000-0000-000000000000"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("up_to"),
        ),
        (
            r#"{"up_to": null}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("up_to"),
        ),
        (
            r#"{"everything": true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            Some("everything"),
        ),
        ("3", StatusCode::BAD_REQUEST, "not_an_object", None),
    ];
    for (body, status, code, field) in read_cases {
        let res = app
            .post_raw("/v1/notifications/read", Some(&b.access), &[], body)
            .await;
        let err = res.expect_error(status, code);
        assert_eq!(err["field"].as_str(), field, "{body}: {err}");
    }
    // A body must be JSON; only an empty one may do without the content type.
    let res = app
        .call(
            Method::PUT,
            prefs,
            Some(&b.access),
            Some("text/plain"),
            &[],
            r#"{"reaction": true}"#,
        )
        .await;
    res.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let res = app
        .call(
            Method::POST,
            "/v1/notifications/read",
            Some(&b.access),
            Some("text/plain"),
            &[],
            "{}",
        )
        .await;
    res.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert!(app.records_of_kind("notifications.read").await.is_empty());
    assert!(
        app.records_of_kind("notifications.preferences_updated")
            .await
            .is_empty()
    );

    // The reads' parameters, as for every read.
    for (path, status, code, field) in [
        (
            "/v1/notifications?limit=0",
            400,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "/v1/notifications?cursor=%21%21",
            400,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            "/v1/notifications?after=nope",
            400,
            "invalid_position",
            Some("after"),
        ),
        (
            "/v1/notifications?colour=red",
            400,
            "invalid_query",
            Some("colour"),
        ),
        (
            "/v1/notifications/unread-count?limit=5",
            400,
            "invalid_query",
            Some("limit"),
        ),
        (
            "/v1/notifications/preferences?after=1",
            400,
            "invalid_position",
            Some("after"),
        ),
        (
            "/v1/notifications/stream?after=0:0",
            400,
            "invalid_query",
            Some("after"),
        ),
    ] {
        let res = app.get(path, Some(&b.access)).await;
        let err = res.expect_error(StatusCode::from_u16(status).unwrap(), code);
        assert_eq!(err["field"].as_str(), field, "{path}: {err}");
    }
    let res = app
        .call(
            Method::GET,
            "/v1/notifications/stream",
            Some(&b.access),
            None,
            &[("last-event-id", "42")],
            Body::empty(),
        )
        .await;
    let err = res.expect_error(StatusCode::BAD_REQUEST, "invalid_last_event_id");
    assert_eq!(err["field"], "Last-Event-ID");
    for path in [
        "/v1/notifications",
        "/v1/notifications/unread-count",
        "/v1/notifications/preferences",
        "/v1/notifications/stream",
    ] {
        app.get(path, None)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    }
    app.post_raw("/v1/notifications/read", None, &[], "{}")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
}

#[tokio::test]
async fn without_a_read_side_reads_are_unavailable_and_explicit_writes_still_go_in() {
    let app = TestApp::new().await;
    let b = app.register("bob").await;
    for path in [
        "/v1/notifications",
        "/v1/notifications/unread-count",
        "/v1/notifications/preferences",
        "/v1/notifications/stream",
    ] {
        let res = app.get(path, Some(&b.access)).await;
        res.expect_error(StatusCode::SERVICE_UNAVAILABLE, "views_unavailable");
        assert_eq!(res.header("retry-after"), Some("1"), "{path}");
    }
    // "Everything" needs the view to know what the newest is.
    app.post_raw("/v1/notifications/read", Some(&b.access), &[], "{}")
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "views_unavailable");
    let up_to = Uuid::now_v7();
    app.post_json(
        "/v1/notifications/read",
        Some(&b.access),
        &json!({"up_to": up_to}),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    put(
        &app,
        &b,
        "/v1/notifications/preferences",
        r#"{"mention": false}"#,
    )
    .await
    .expect(StatusCode::ACCEPTED);
    assert_eq!(app.records_of_kind("notifications.read").await.len(), 1);
    let logged = app
        .records_of_kind("notifications.preferences_updated")
        .await;
    assert_eq!(
        serde_json::to_value(&logged[0].envelope.action).unwrap(),
        json!({"type": "notifications.preferences_updated", "mention": false})
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_a_mark_read() {
    let app = TestApp::new().await;
    let b = app.register("bob").await;
    let body = json!({"up_to": Uuid::now_v7()}).to_string();
    let key = [("idempotency-key", "mark-1")];
    let first = app
        .post_raw(
            "/v1/notifications/read",
            Some(&b.access),
            &key,
            body.clone(),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    let again = app
        .post_raw("/v1/notifications/read", Some(&b.access), &key, body)
        .await;
    assert_eq!(again.expect(StatusCode::ACCEPTED), first);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.records_of_kind("notifications.read").await.len(), 1);
}

/// One server-sent event.
#[derive(Debug, Default)]
struct SseEvent {
    id: String,
    event: String,
    data: String,
}

/// Reads events off a streaming response, skipping keep-alive comments.
struct SseReader {
    res: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(base: &str, who: &Session, last_event_id: Option<&str>) -> Self {
        let mut req = reqwest::Client::new()
            .get(format!("{base}/v1/notifications/stream"))
            .bearer_auth(&who.access);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            res,
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                for line in block.lines().filter(|l| !l.starts_with(':')) {
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "id" => ev.id = value.to_owned(),
                        "event" => ev.event = value.to_owned(),
                        "data" => ev.data.push_str(value),
                        _ => {}
                    }
                }
                if !ev.event.is_empty() {
                    return Some(ev);
                }
                continue;
            }
            match self.res.chunk().await {
                Ok(Some(bytes)) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                _ => return None,
            }
        }
    }

    /// The next notification event (within 10 s): its id and its JSON.
    async fn notification(&mut self) -> (String, Value) {
        let ev = tokio::time::timeout(Duration::from_secs(10), self.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open");
        assert_eq!(ev.event, "notification");
        let data: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(
            data["id"],
            ev.id.as_str(),
            "the event id is the notification id"
        );
        (ev.id, data)
    }
}

fn follower_name(data: &Value) -> &str {
    assert_eq!(data["kind"], "new_follower");
    data["actors"][0]["username"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_new_notifications_and_resumes_after_last_event_id() {
    let app = TestApp::with_reads().await;
    let (base, server) = app.serve().await;
    let b = app.register("bob").await;
    let users = [
        app.register("alice").await,
        app.register("carol").await,
        app.register("dave").await,
        app.register("erin").await,
    ];
    // An old notification, in the view before the stream opens: not sent.
    let eve = app.register("eve").await;
    let pos = follow(&app, &eve, &b).await;
    read(&app, &b, &format!("/v1/notifications?after={pos}")).await;

    let mut live = SseReader::open(&base, &b, None).await;
    let mut sent = Vec::new();
    for (who, name) in users.iter().zip(["alice", "carol", "dave"]) {
        follow(&app, who, &b).await;
        let (id, data) = live.notification().await;
        assert_eq!(follower_name(&data), name);
        sent.push(id);
    }

    // Resuming after the first: exactly the later ones, in order, then the live ones.
    let mut resumed = SseReader::open(&base, &b, Some(&sent[0])).await;
    for (id, who) in sent[1..].iter().zip(["carol", "dave"]) {
        let (got, data) = resumed.notification().await;
        assert_eq!((&got, follower_name(&data)), (id, who));
    }
    follow(&app, &users[3], &b).await;
    let (on_resumed, data) = resumed.notification().await;
    assert_eq!(follower_name(&data), "erin");
    let (on_live, _) = live.notification().await;
    assert_eq!(on_resumed, on_live);

    // Shutting down ends open streams instead of waiting for them.
    app.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("graceful shutdown with open streams")
        .unwrap()
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), live.next()).await;
    assert!(ended.expect("the stream ends").is_none());
}

#[tokio::test]
async fn the_openapi_document_describes_the_notification_endpoints() {
    let app = TestApp::new().await;
    let doc = app.get("/openapi.json", None).await.expect(StatusCode::OK);
    for (path, method, statuses) in [
        (
            "/v1/notifications",
            "get",
            &["200", "400", "401", "503"][..],
        ),
        (
            "/v1/notifications/unread-count",
            "get",
            &["200", "400", "401", "503"],
        ),
        (
            "/v1/notifications/read",
            "post",
            &[
                "202", "204", "400", "401", "409", "413", "415", "422", "429", "503",
            ],
        ),
        (
            "/v1/notifications/preferences",
            "get",
            &["200", "400", "401", "503"],
        ),
        (
            "/v1/notifications/preferences",
            "put",
            &[
                "202", "400", "401", "409", "413", "415", "422", "429", "503",
            ],
        ),
        (
            "/v1/notifications/stream",
            "get",
            &["200", "400", "401", "503"],
        ),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["tags"], json!(["notifications"]), "{method} {path}");
        assert!(op["security"].is_array(), "{method} {path} needs a token");
        for status in statuses {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    let stream = &doc["paths"]["/v1/notifications/stream"]["get"];
    assert!(stream["responses"]["200"]["content"]["text/event-stream"].is_object());
    assert!(
        stream["description"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID")
    );
    let read = &doc["paths"]["/v1/notifications/read"]["post"];
    assert_ne!(
        read["requestBody"]["required"], true,
        "the body is optional"
    );
}
