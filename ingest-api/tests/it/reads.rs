//! The read endpoints over a real read side: actions go in through HTTP, the social job applies
//! them from the log, and reads with `after=<position>` see them (read-your-writes).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use philo_ingest_api::IngestConfig;
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

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_followed_authors_post_is_in_the_feed_as_soon_as_its_position_is_reached() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    follow(&app, &a, &b).await;
    let (post_id, pos) = act(&app, &b, post("Cold chain for small farms")).await;

    let feed = read(&app, &a, &format!("/v1/feed?after={pos}")).await;
    assert_eq!(ids(&feed), [post_id.as_str()], "{feed}");
    let item = &feed["items"][0];
    assert_eq!(item["kind"], "post");
    assert_eq!(item["state"], "open");
    assert_eq!(item["author_id"], b.user_id.to_string());
    assert_eq!(item["data"]["title"], "Cold chain for small farms");
    assert_eq!(item["stats"]["comments"], 0);
    assert!(feed.get("next_cursor").is_none(), "{feed}");

    // The author's own feed holds their post too; a user who follows nobody sees only theirs.
    let own = read(&app, &b, &format!("/v1/feed?after={pos}")).await;
    assert_eq!(ids(&own), [post_id]);
    let c = app.register("carol").await;
    let none = read(&app, &c, &format!("/v1/feed?after={pos}")).await;
    assert_eq!(ids(&none), Vec::<String>::new());
}

#[tokio::test]
async fn followers_following_and_profile_counts() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    let c = app.register("carol").await;
    follow(&app, &a, &b).await;
    let pos = follow(&app, &c, &b).await;
    let (_, pos2) = act(
        &app,
        &b,
        json!({"type": "profile.updated", "display_name": "Bob B.", "description": "Builds things"}),
    )
    .await;

    let followers = read(
        &app,
        &a,
        &format!("/v1/users/{}/followers?after={pos}", b.user_id),
    )
    .await;
    let names: HashSet<&str> = followers["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["alice", "carol"]), "{followers}");
    let following = read(&app, &a, &format!("/v1/users/{}/following", a.user_id)).await;
    assert_eq!(following["items"][0]["user_id"], b.user_id.to_string());
    assert_eq!(following["items"][0]["username"], "bob");
    assert_eq!(following["items"].as_array().unwrap().len(), 1);

    let profile = read(&app, &a, &format!("/v1/users/{}?after={pos2}", b.user_id)).await;
    assert_eq!(profile["username"], "bob");
    assert_eq!(profile["display_name"], "Bob B.");
    assert_eq!(profile["description"], "Builds things");
    assert_eq!(
        (&profile["followers"], &profile["following"]),
        (&json!(2), &json!(0))
    );
    let alice = read(&app, &b, &format!("/v1/users/{}", a.user_id)).await;
    assert_eq!(
        (&alice["followers"], &alice["following"]),
        (&json!(0), &json!(1))
    );

    // One per page, through the cursor.
    let first = read(
        &app,
        &a,
        &format!("/v1/users/{}/followers?limit=1", b.user_id),
    )
    .await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = read(
        &app,
        &a,
        &format!("/v1/users/{}/followers?limit=1&cursor={cursor}", b.user_id),
    )
    .await;
    assert!(second.get("next_cursor").is_none(), "{second}");
    let mut both = [ids_of_users(&first), ids_of_users(&second)].concat();
    both.sort();
    let mut want = vec![a.user_id.to_string(), c.user_id.to_string()];
    want.sort();
    assert_eq!(both, want);
}

fn ids_of_users(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_feed_pages_newest_first_without_gaps_or_duplicates() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    follow(&app, &a, &b).await;
    let batch: Vec<Value> = (0..25).map(|i| post(&format!("post {i}"))).collect();
    let res = app
        .post_json("/v1/actions/batch", Some(&b.access), &json!(batch))
        .await
        .expect(StatusCode::ACCEPTED);
    let results = res["results"].as_array().unwrap();
    let posted: HashSet<String> = results
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let last = results.last().unwrap()["position"].as_str().unwrap();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/v1/feed?limit=10&after={last}"),
            Some(c) => format!("/v1/feed?limit=10&cursor={c}"),
        };
        let page = read(&app, &a, &path).await;
        sizes.push(page["items"].as_array().unwrap().len());
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), posted);
    // Newest first: item ids are UUIDv7, so their order is time order.
    let mut sorted: Vec<Uuid> = seen.iter().map(|s| s.parse().unwrap()).collect();
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    let sorted: Vec<String> = sorted.iter().map(Uuid::to_string).collect();
    assert_eq!(seen, sorted);
}

#[tokio::test]
async fn a_post_thread_with_an_approach_and_comments() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    let (post_id, _) = act(&app, &b, post("Water filters")).await;
    let (approach_id, _) = act(
        &app,
        &a,
        json!({"type": "approach.created", "post_id": post_id, "title": "Sand and charcoal", "body": "Layered filters."}),
    )
    .await;
    let (comment_id, _) = act(
        &app,
        &a,
        json!({"type": "comment.created", "target_id": post_id, "body": "Tried this in 2019."}),
    )
    .await;
    let (on_approach, pos) = act(
        &app,
        &b,
        json!({"type": "comment.created", "target_id": approach_id, "body": "How much does it cost?"}),
    )
    .await;

    let thread = read(&app, &a, &format!("/v1/posts/{post_id}?after={pos}")).await;
    assert_eq!(thread["item"]["id"], post_id);
    assert_eq!(thread["item"]["data"]["title"], "Water filters");
    assert_eq!(ids(&thread["approaches"]), [approach_id.as_str()]);
    assert_eq!(thread["approaches"]["items"][0]["parent_id"], post_id);
    assert_eq!(
        thread["approaches"]["items"][0]["author_id"],
        a.user_id.to_string()
    );
    assert_eq!(ids(&thread["comments"]), [comment_id]);
    assert_eq!(thread["item"]["stats"]["approaches"], 1, "{thread}");
    assert_eq!(thread["item"]["stats"]["comments"], 1, "{thread}");

    let approach = read(&app, &b, &format!("/v1/approaches/{approach_id}")).await;
    assert_eq!(approach["item"]["id"], approach_id);
    assert_eq!(ids(&approach["comments"]), [on_approach]);
    assert_eq!(ids(&approach["approaches"]), Vec::<String>::new());

    // The same id read as the wrong kind is not found.
    app.get(&format!("/v1/approaches/{post_id}"), Some(&a.access))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn edits_show_and_deleted_posts_leave_the_feed() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    follow(&app, &a, &b).await;
    let (kept, _) = act(&app, &b, post("First title")).await;
    let (gone, _) = act(&app, &b, post("Soon deleted")).await;
    let (_, pos) = act(
        &app,
        &b,
        json!({"type": "post.edited", "post_id": kept, "title": "Second title"}),
    )
    .await;
    let feed = read(&app, &a, &format!("/v1/feed?after={pos}")).await;
    // Both posts may share a millisecond, so their order is their ids' (see the paging test).
    let got: HashSet<String> = ids(&feed).into_iter().collect();
    assert_eq!(got, HashSet::from([gone.clone(), kept.clone()]));
    let edited = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == kept.as_str())
        .unwrap();
    assert_eq!(edited["data"]["title"], "Second title");
    assert_eq!(
        edited["data"]["body"], "some body text",
        "unedited fields stay"
    );
    assert!(edited["edited_at"].is_string(), "{feed}");

    let (_, pos) = act(&app, &b, json!({"type": "post.deleted", "post_id": gone})).await;
    let feed = read(&app, &a, &format!("/v1/feed?after={pos}")).await;
    assert_eq!(ids(&feed), [kept]);
    let res = app.get(&format!("/v1/posts/{gone}"), Some(&a.access)).await;
    let body = res.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert!(body["message"].as_str().unwrap().contains("post"), "{body}");
}

#[tokio::test]
async fn events_campaigns_and_job_offers() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let b = app.register("bob").await;
    let (event_id, _) = act(
        &app,
        &b,
        json!({"type": "event.created", "title": "Meetup", "description": "Filters, in person.",
            "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T20:00:00Z", "location": "Lyon"}),
    )
    .await;
    let (_, pos) = act(
        &app,
        &a,
        json!({"type": "event.rsvp", "event_id": event_id, "status": "going"}),
    )
    .await;
    let ev = read(&app, &a, &format!("/v1/events/{event_id}?after={pos}")).await;
    assert_eq!(ev["item"]["id"], event_id);
    assert_eq!(
        (&ev["going"], &ev["interested"], &ev["not_going"]),
        (&json!(1), &json!(0), &json!(0))
    );
    assert_eq!(ev["my_rsvp"], "going");
    let ev = read(&app, &b, &format!("/v1/events/{event_id}")).await;
    assert!(ev.get("my_rsvp").is_none(), "{ev}");

    let (campaign_id, _) = act(
        &app,
        &b,
        json!({"type": "campaign.created", "target_id": event_id, "goal_minor": 10_000,
            "currency": "EUR", "ends_at": "2030-01-01T00:00:00Z"}),
    )
    .await;
    let (_, pos) = act(
        &app,
        &a,
        json!({"type": "donation.made", "target_id": campaign_id, "amount_minor": 2_500,
            "currency": "EUR", "payment_ref": "psp-1"}),
    )
    .await;
    let c = read(
        &app,
        &a,
        &format!("/v1/campaigns/{campaign_id}?after={pos}"),
    )
    .await;
    assert_eq!(
        (
            &c["goal_minor"],
            &c["currency"],
            &c["raised_minor"],
            &c["goal_reached"]
        ),
        (&json!(10_000), &json!("EUR"), &json!(2_500), &json!(false)),
        "{c}"
    );

    let (offer_id, pos) = act(
        &app,
        &b,
        json!({"type": "job_offer.created", "to_user_id": a.user_id, "title": "Filter engineer",
            "description": "Build water filters."}),
    )
    .await;
    let received = read(&app, &a, &format!("/v1/job-offers?after={pos}")).await;
    assert_eq!(ids(&received), [offer_id.as_str()]);
    assert_eq!(received["items"][0]["kind"], "job_offer");
    let explicit = read(&app, &a, "/v1/job-offers?box=received").await;
    assert_eq!(ids(&explicit), [offer_id.as_str()]);
    let sent = read(&app, &b, "/v1/job-offers?box=sent").await;
    assert_eq!(ids(&sent), [offer_id]);
    let none = read(&app, &a, "/v1/job-offers?box=sent").await;
    assert_eq!(ids(&none), Vec::<String>::new());
}

#[tokio::test]
async fn bad_parameters_get_their_codes() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let uid = a.user_id;
    let (post_id, pos) = act(&app, &a, post("exists")).await;
    read(&app, &a, &format!("/v1/posts/{post_id}?after={pos}")).await;
    let long = "A".repeat(600);
    let cases: Vec<(String, StatusCode, &str, Option<&str>)> = vec![
        (
            "/v1/feed?limit=0".into(),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "/v1/feed?limit=101".into(),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "/v1/feed?limit=-1".into(),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "/v1/feed?limit=ten".into(),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "/v1/feed?limit=".into(),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            Some("limit"),
        ),
        (
            format!("/v1/users/{uid}/followers?limit=1000"),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            Some("limit"),
        ),
        (
            "/v1/feed?cursor=%21%21%21".into(),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            "/v1/feed?cursor=AAAA".into(),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            format!("/v1/feed?cursor={long}"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            format!("/v1/users/{uid}/following?cursor={long}"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            format!("/v1/posts/{post_id}?comments_cursor=%3F%3F"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("comments_cursor"),
        ),
        (
            format!("/v1/posts/{post_id}?approaches_cursor=%3F%3F"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("approaches_cursor"),
        ),
        (
            format!("/v1/posts/{post_id}?approaches_cursor=AA&comments_cursor=%3F%3F"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            None,
        ),
        (
            format!("/v1/posts/{post_id}?limit=0"),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            Some("limit"),
        ),
        (
            format!("/v1/approaches/{post_id}?comments_cursor={long}"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("comments_cursor"),
        ),
        (
            "/v1/job-offers?cursor=%21".into(),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            Some("cursor"),
        ),
        (
            format!("/v1/posts/{}?comments_cursor=%3F%3F", Uuid::now_v7()),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "/v1/feed?after=abc".into(),
            StatusCode::BAD_REQUEST,
            "invalid_position",
            Some("after"),
        ),
        (
            "/v1/feed?after=1:".into(),
            StatusCode::BAD_REQUEST,
            "invalid_position",
            Some("after"),
        ),
        (
            "/v1/feed?after=".into(),
            StatusCode::BAD_REQUEST,
            "invalid_position",
            Some("after"),
        ),
        (
            "/v1/feed?after=99:0".into(),
            StatusCode::BAD_REQUEST,
            "invalid_position",
            Some("after"),
        ),
        (
            "/v1/feed?colour=red".into(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some("colour"),
        ),
        (
            "/v1/feed?limit=1&limit=2".into(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some("limit"),
        ),
        (
            "/v1/job-offers?box=inbox".into(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some("box"),
        ),
        (
            "/v1/users/not-a-uuid".into(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("id"),
        ),
        (
            "/v1/users/42/followers".into(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("id"),
        ),
        (
            "/v1/posts/xyz".into(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("id"),
        ),
        (
            "/v1/events/xyz".into(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("id"),
        ),
        (
            "/v1/campaigns/xyz".into(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("id"),
        ),
        (
            "/v1/approaches/xyz".into(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("id"),
        ),
        (
            format!("/v1/posts/{}", Uuid::now_v7()),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            format!("/v1/users/{}", Uuid::now_v7()),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            format!("/v1/users/{}/followers", Uuid::now_v7()),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            format!("/v1/events/{}", Uuid::nil()),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            format!("/v1/campaigns/{}", Uuid::now_v7()),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
    ];
    for (path, status, code, field) in cases {
        let res = app.get(&path, Some(&a.access)).await;
        let body = res.json();
        assert_eq!(
            (res.status, body["code"].as_str(), body["field"].as_str()),
            (status, Some(code), field),
            "{path}: {body}"
        );
    }
    app.get("/v1/feed", None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "missing_token");
    app.get(&format!("/v1/users/{uid}"), Some("not.a.token"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn without_a_read_side_every_read_is_unavailable() {
    let app = TestApp::new().await;
    let a = app.register("alice").await;
    let id = Uuid::now_v7();
    for path in [
        "/v1/feed".to_owned(),
        format!("/v1/users/{id}"),
        format!("/v1/users/{id}/followers"),
        format!("/v1/users/{id}/following"),
        format!("/v1/posts/{id}"),
        format!("/v1/approaches/{id}"),
        format!("/v1/events/{id}"),
        format!("/v1/campaigns/{id}"),
        "/v1/job-offers?box=sent".to_owned(),
    ] {
        let res = app.get(&path, Some(&a.access)).await;
        res.expect_error(StatusCode::SERVICE_UNAVAILABLE, "views_unavailable");
        assert_eq!(res.header("retry-after"), Some("1"), "{path}");
    }
    // Bad input is still bad input.
    app.get("/v1/feed?after=nope", Some(&a.access))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_position");
}

#[tokio::test]
async fn a_position_the_views_do_not_reach_in_time_is_not_caught_up() {
    let app = TestApp::with_stalled_reads(IngestConfig {
        read_wait_ms: 200,
        ..IngestConfig::default()
    })
    .await;
    let a = app.register("alice").await;
    let (_, pos) = act(&app, &a, post("hello")).await;
    let started = Instant::now();
    let res = app
        .get(&format!("/v1/feed?after={pos}"), Some(&a.access))
        .await;
    res.expect_error(StatusCode::SERVICE_UNAVAILABLE, "not_caught_up");
    assert_eq!(res.header("retry-after"), Some("1"));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Without `after` the (empty) views answer at once.
    let feed = read(&app, &a, "/v1/feed").await;
    assert_eq!(ids(&feed), Vec::<String>::new());
}

#[tokio::test]
async fn a_position_beyond_the_end_of_the_log_is_refused_at_once() {
    let app = TestApp::with_reads().await;
    let a = app.register("alice").await;
    let (_, pos) = act(&app, &a, post("hello")).await;
    let (partition, offset) = pos.split_once(':').unwrap();
    let offset: u64 = offset.parse().unwrap();
    let started = Instant::now();
    for after in [
        format!("{partition}:{}", offset + 1),
        format!("{partition}:1000000000"),
        format!("{partition}:{}", u64::MAX),
    ] {
        let res = app
            .get(&format!("/v1/feed?after={after}"), Some(&a.access))
            .await;
        let body = res.expect_error(StatusCode::BAD_REQUEST, "invalid_position");
        assert_eq!(body["field"], "after");
    }
    // Far less than the 5 s a read may wait: nothing waited.
    assert!(started.elapsed() < Duration::from_secs(2));
    read(&app, &a, &format!("/v1/feed?after={pos}")).await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_reads_and_every_ref_resolves() {
    let app = TestApp::new().await;
    let doc = app.get("/openapi.json", None).await.expect(StatusCode::OK);
    for path in [
        "/v1/feed",
        "/v1/users/{id}",
        "/v1/users/{id}/followers",
        "/v1/users/{id}/following",
        "/v1/posts/{id}",
        "/v1/approaches/{id}",
        "/v1/events/{id}",
        "/v1/campaigns/{id}",
        "/v1/job-offers",
    ] {
        let op = &doc["paths"][path]["get"];
        assert_eq!(op["tags"], json!(["reads"]), "{path}");
        assert!(op["security"].is_array(), "{path} needs a token");
        for status in ["200", "400", "401", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{path} documents {status}"
            );
        }
        if path.contains("{id}") {
            assert!(op["responses"]["404"].is_object(), "{path} documents 404");
        }
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
