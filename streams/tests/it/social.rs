//! The social views' semantics: graph, hybrid fan-out feeds, content, failed actions.

use philo_streams::job::JobConfig;
use philo_streams::read::OfferBox;
use philo_streams::social::SocialConfig;
use philo_streams::social::docs::ItemState;
use serde_json::json;
use uuid::Uuid;

use crate::world::{World, post};

#[tokio::test]
async fn follow_push_backfill_unfollow_and_own_items() {
    let mut w = World::new().await;
    let (a, b, c) = (
        w.user("ann").await,
        w.user("bob").await,
        w.user("cyd").await,
    );
    let b1 = w.act(b, post("b one")).await;
    let b2 = w.act(b, post("b two")).await;
    w.act(a, json!({"type": "follow.created", "user_id": b}))
        .await;
    w.act(c, json!({"type": "follow.created", "user_id": b}))
        .await;
    let b3 = w.act(b, post("b three")).await;
    let a1 = w.act(a, post("a one")).await;
    let s = w.sync().await;
    assert_eq!(s.failed, 0, "{:?}", w.failed());

    // Backfill brought b1 and b2, push brought b3; own posts are in one's own feed.
    assert_eq!(w.feed(a), vec![a1, b3, b2, b1]);
    assert_eq!(w.feed(c), vec![b3, b2, b1]);
    assert_eq!(w.feed(b), vec![b3, b2, b1]);

    let profile = w.views.profile(&b).unwrap();
    assert_eq!((profile.followers, profile.following), (2, 0));
    let followers: Vec<_> = w
        .views
        .followers(&b, None, 10)
        .unwrap()
        .items
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    assert_eq!(followers, vec![c, a], "newest follow first");

    w.act(a, json!({"type": "follow.removed", "user_id": b}))
        .await;
    w.sync().await;
    assert_eq!(w.feed(a), vec![a1], "unfollow removes the followee's items");
    assert_eq!(w.views.profile(&b).unwrap().followers, 1);

    // Unfollowing again refers to an edge that does not exist.
    let again = w
        .act(a, json!({"type": "follow.removed", "user_id": b}))
        .await;
    w.sync().await;
    assert_eq!(w.reason_of(again).as_deref(), Some("not_following"));
}

#[tokio::test]
async fn blocks_cut_both_ways_and_refuse_follows() {
    let mut w = World::new().await;
    let (a, b) = (w.user("ann").await, w.user("bob").await);
    w.act(a, json!({"type": "follow.created", "user_id": b}))
        .await;
    w.act(b, json!({"type": "follow.created", "user_id": a}))
        .await;
    let pa = w.act(a, post("from a")).await;
    let pb = w.act(b, post("from b")).await;
    w.sync().await;
    assert_eq!(w.feed(a), vec![pb, pa]);

    w.act(a, json!({"type": "block.created", "user_id": b}))
        .await;
    let refollow = w
        .act(b, json!({"type": "follow.created", "user_id": a}))
        .await;
    w.sync().await;
    assert_eq!(w.feed(a), vec![pa]);
    assert_eq!(w.feed(b), vec![pb]);
    assert_eq!(w.reason_of(refollow).as_deref(), Some("blocked"));
    let p = w.views.profile(&a).unwrap();
    assert_eq!((p.followers, p.following), (0, 0));

    w.act(a, json!({"type": "block.removed", "user_id": b}))
        .await;
    let ok = w
        .act(b, json!({"type": "follow.created", "user_id": a}))
        .await;
    w.sync().await;
    assert_eq!(w.reason_of(ok), None);
    assert_eq!(w.feed(b), vec![pb, pa], "refollow backfills");
}

#[tokio::test]
async fn edits_and_deletes_reach_every_feed() {
    let mut w = World::new().await;
    let author = w.user("author").await;
    let mut fans = Vec::new();
    for i in 0..5 {
        let f = w.user(&format!("fan{i}")).await;
        w.act(f, json!({"type": "follow.created", "user_id": author}))
            .await;
        fans.push(f);
    }
    let p = w.act(author, post("original")).await;
    w.act(
        author,
        json!({"type": "post.edited", "post_id": p, "title": "edited title"}),
    )
    .await;
    w.sync().await;
    for f in &fans {
        let page = w.views.feed(f, None, 10).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].fields()["title"], "edited title");
        assert!(page.items[0].edited_at.is_some());
    }
    // Only the author may delete.
    let stranger = fans[0];
    let bad = w
        .act(stranger, json!({"type": "post.deleted", "post_id": p}))
        .await;
    w.act(author, json!({"type": "post.deleted", "post_id": p}))
        .await;
    let late = w
        .act(
            stranger,
            json!({"type": "comment.created", "target_id": p, "body": "too late"}),
        )
        .await;
    w.sync().await;
    assert_eq!(w.reason_of(bad).as_deref(), Some("not_author"));
    assert_eq!(w.reason_of(late).as_deref(), Some("target_deleted"));
    for f in fans.iter().chain([&author]) {
        assert!(w.feed(*f).is_empty(), "deleted post still in a feed");
    }
    assert!(w.views.post(&p, None, None, 10).is_err());
}

#[tokio::test]
async fn feed_reads_see_edits_and_counters_after_the_items_were_cached() {
    let mut w = World::new().await;
    let author = w.user("author").await;
    let fan = w.user("fan").await;
    w.act(fan, json!({"type": "follow.created", "user_id": author}))
        .await;
    let p = w.act(author, post("original")).await;
    w.sync().await;
    let page = w.views.feed(&fan, None, 10).unwrap();
    assert_eq!(page.items[0].fields()["title"], "original");
    assert_eq!(page.items[0].stats.reactions, 0);
    assert!(
        !w.views.item_cache().is_empty(),
        "the read cached the item (else this test proves nothing)"
    );
    w.act(
        fan,
        json!({"type": "reaction.added", "target_id": p, "kind": "insightful"}),
    )
    .await;
    w.act(
        fan,
        json!({"type": "comment.created", "target_id": p, "body": "Tried it: works."}),
    )
    .await;
    w.act(
        author,
        json!({"type": "post.edited", "post_id": p, "title": "edited title"}),
    )
    .await;
    w.sync().await;
    let page = w.views.feed(&fan, None, 10).unwrap();
    assert_eq!(page.items[0].fields()["title"], "edited title");
    assert_eq!(
        (page.items[0].stats.reactions, page.items[0].stats.comments),
        (1, 1)
    );
    // The same through the post's own read, which does not go through the cache.
    let thread = w.views.post(&p, None, None, 10).unwrap();
    assert_eq!(thread.item, page.items[0]);
}

#[tokio::test]
async fn threads_counters_and_failed_references() {
    let mut w = World::new().await;
    let (a, b) = (w.user("ann").await, w.user("bob").await);
    let p = w.act(a, post("question")).await;
    let ap = w
        .act(
            b,
            json!({"type": "approach.created", "post_id": p, "title": "an approach", "body": "do this"}),
        )
        .await;
    let c1 = w
        .act(
            b,
            json!({"type": "comment.created", "target_id": p, "body": "first"}),
        )
        .await;
    let c2 = w
        .act(
            a,
            json!({"type": "comment.created", "target_id": p, "body": "reply", "parent_id": c1}),
        )
        .await;
    w.act(
        b,
        json!({"type": "reaction.added", "target_id": p, "kind": "like"}),
    )
    .await;
    w.act(
        b,
        json!({"type": "reaction.added", "target_id": p, "kind": "like"}),
    )
    .await; // the same reaction twice counts once
    w.act(
        a,
        json!({"type": "reaction.added", "target_id": p, "kind": "insightful"}),
    )
    .await;
    let missing = uuid::Uuid::now_v7();
    let orphan = w
        .act(
            b,
            json!({"type": "approach.created", "post_id": missing, "title": "t", "body": "b"}),
        )
        .await;
    let wrong_parent = w
        .act(
            b,
            json!({"type": "comment.created", "target_id": ap, "body": "x", "parent_id": c1}),
        )
        .await;
    w.sync().await;

    let t = w.views.post(&p, None, None, 10).unwrap();
    assert_eq!(
        t.approaches.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![ap]
    );
    assert_eq!(
        t.comments.items.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![c1, c2]
    );
    assert_eq!(t.comments.items[1].parent_id, Some(p));
    assert_eq!(t.item.stats.reactions, 2);
    assert_eq!(t.item.stats.comments, 2);
    assert_eq!(t.item.stats.approaches, 1);
    assert_eq!(w.reason_of(orphan).as_deref(), Some("target_not_found"));
    assert_eq!(
        w.reason_of(wrong_parent).as_deref(),
        Some("parent_mismatch")
    );

    // Comments page with a cursor.
    let first = w.views.post(&p, None, None, 1).unwrap();
    let cursor = first.comments.next_cursor.clone().expect("a second page");
    let second = w.views.post(&p, None, Some(&cursor), 1).unwrap();
    assert_eq!(second.comments.items[0].id, c2);
    assert!(second.comments.next_cursor.is_none());
}

#[tokio::test]
async fn campaigns_sum_exactly_and_close() {
    let mut w = World::new().await;
    let (a, b, c) = (
        w.user("ann").await,
        w.user("bob").await,
        w.user("cyd").await,
    );
    let p = w.act(a, post("fund me")).await;
    let ends = (w.now + chrono::Duration::days(30)).to_rfc3339();
    let camp = w
        .act(
            a,
            json!({"type": "campaign.created", "target_id": p, "goal_minor": 1000, "currency": "EUR", "ends_at": ends}),
        )
        .await;
    for (who, amount) in [(b, 333), (c, 333), (b, 334)] {
        w.act(
            who,
            json!({"type": "donation.made", "target_id": camp, "amount_minor": amount, "currency": "EUR", "payment_ref": format!("pay-{amount}-{who}")}),
        )
        .await;
    }
    let wrong_currency = w
        .act(
            c,
            json!({"type": "donation.made", "target_id": camp, "amount_minor": 5, "currency": "USD", "payment_ref": "usd-1"}),
        )
        .await;
    let not_creator = w
        .act(b, json!({"type": "campaign.closed", "campaign_id": camp}))
        .await;
    w.act(a, json!({"type": "campaign.closed", "campaign_id": camp}))
        .await;
    let after_close = w
        .act(
            c,
            json!({"type": "donation.made", "target_id": camp, "amount_minor": 1, "currency": "EUR", "payment_ref": "late-1"}),
        )
        .await;
    w.sync().await;
    let v = w.views.campaign(&camp).unwrap();
    assert_eq!((v.raised_minor, v.goal_minor), (1000, 1000));
    assert!(v.goal_reached);
    assert_eq!(v.item.state, ItemState::Closed);
    assert_eq!(v.item.stats.donations, 3);
    assert_eq!(
        w.reason_of(wrong_currency).as_deref(),
        Some("currency_mismatch")
    );
    assert_eq!(w.reason_of(not_creator).as_deref(), Some("not_author"));
    assert_eq!(w.reason_of(after_close).as_deref(), Some("campaign_closed"));
}

#[tokio::test]
async fn job_offers_events_and_profiles() {
    let mut w = World::new().await;
    let (a, b, c) = (
        w.user("ann").await,
        w.user("bob").await,
        w.user("cyd").await,
    );
    let offer = w
        .act(
            a,
            json!({"type": "job_offer.created", "to_user_id": b, "title": "Rust engineer", "description": "build Philo", "skills": ["rust"]}),
        )
        .await;
    let not_mine = w
        .act(
            c,
            json!({"type": "job_offer.answered", "offer_id": offer, "answer": "accepted"}),
        )
        .await;
    w.act(
        b,
        json!({"type": "job_offer.answered", "offer_id": offer, "answer": "declined"}),
    )
    .await;
    let twice = w
        .act(
            b,
            json!({"type": "job_offer.answered", "offer_id": offer, "answer": "accepted"}),
        )
        .await;
    let starts = (w.now + chrono::Duration::days(3)).to_rfc3339();
    let ends = (w.now + chrono::Duration::days(3) + chrono::Duration::hours(2)).to_rfc3339();
    let ev = w
        .act(
            a,
            json!({"type": "event.created", "title": "Meetup", "description": "talks", "starts_at": starts, "ends_at": ends, "location": "Berlin", "capacity": 50}),
        )
        .await;
    w.act(
        b,
        json!({"type": "event.rsvp", "event_id": ev, "status": "going"}),
    )
    .await;
    w.act(
        c,
        json!({"type": "event.rsvp", "event_id": ev, "status": "interested"}),
    )
    .await;
    w.act(
        c,
        json!({"type": "event.rsvp", "event_id": ev, "status": "going"}),
    )
    .await;
    w.act(
        b,
        json!({"type": "profile.updated", "display_name": "Bob B.", "description": "builder"}),
    )
    .await;
    w.act(
        b,
        json!({"type": "resume.updated", "text": "ten years of rust", "skills": ["rust", "sql"]}),
    )
    .await;
    w.sync().await;

    assert_eq!(w.reason_of(not_mine).as_deref(), Some("not_recipient"));
    assert_eq!(w.reason_of(twice).as_deref(), Some("already_closed"));
    let received = w
        .views
        .job_offers(&b, OfferBox::Received, None, 10)
        .unwrap();
    assert_eq!(received.items.len(), 1);
    assert_eq!(received.items[0].state, ItemState::Declined);
    let sent = w.views.job_offers(&a, OfferBox::Sent, None, 10).unwrap();
    assert_eq!(sent.items[0].id, offer);
    assert!(
        w.views
            .job_offers(&a, OfferBox::Received, None, 10)
            .unwrap()
            .items
            .is_empty()
    );

    let e = w.views.event(&ev, &c, None, 10).unwrap();
    assert_eq!((e.going, e.interested, e.not_going), (2, 0, 0));
    assert_eq!(e.my_rsvp.as_deref(), Some("going"));

    let p = w.views.profile(&b).unwrap();
    assert_eq!(p.display_name.as_deref(), Some("Bob B."));
    assert_eq!(p.skills, vec!["rust".to_string(), "sql".to_string()]);
}

#[tokio::test]
async fn popular_authors_are_pulled_at_read_time() {
    let config = SocialConfig {
        pull_threshold: 3,
        ..SocialConfig::default()
    };
    let mut w = World::with(config, JobConfig::default(), 4).await;
    let star = w.user("star").await;
    let early = w.act(star, post("before fame")).await;
    let mut fans = Vec::new();
    for i in 0..4 {
        let f = w.user(&format!("fan{i}")).await;
        w.act(f, json!({"type": "follow.created", "user_id": star}))
            .await;
        fans.push(f);
    }
    let famous = w.act(star, post("after fame")).await;
    w.sync().await;
    let deliveries_before = w.job.processor().deliveries();
    // Every fan sees both posts; the second one was not pushed to anyone but the author.
    for f in &fans {
        assert_eq!(w.feed(*f), vec![famous, early], "fan {f}");
    }
    let more = w.act(star, post("still famous")).await;
    w.sync().await;
    assert_eq!(
        w.job.processor().deliveries() - deliveries_before,
        1,
        "only the author's own feed is written"
    );
    assert_eq!(w.feed(fans[0])[0], more);
    // Deletion reaches every copy: `early` was backfilled into the first fans' feeds before the
    // author was pulled; `famous` was only ever in the author's own feed.
    let stored = |w: &World, user: Uuid| -> Vec<Vec<u8>> {
        w.feed_rows(user)
            .into_iter()
            .map(|r| r.ck.to_vec())
            .collect()
    };
    let row = |id: Uuid| philo_streams::social::keys::desc(&id).to_vec();
    assert!(stored(&w, fans[1]).contains(&row(early)));
    assert!(stored(&w, star).contains(&row(famous)));
    w.act(star, json!({"type": "post.deleted", "post_id": early}))
        .await;
    w.act(star, json!({"type": "post.deleted", "post_id": famous}))
        .await;
    w.sync().await;
    for f in fans.iter().chain([&star]) {
        assert_eq!(w.feed(*f), vec![more], "feed of {f}");
        let rows = stored(&w, *f);
        assert!(!rows.contains(&row(early)) && !rows.contains(&row(famous)));
    }
    // Unfollowing a pulled author stops the pull.
    w.act(fans[0], json!({"type": "follow.removed", "user_id": star}))
        .await;
    w.sync().await;
    assert!(w.feed(fans[0]).is_empty());
}

#[tokio::test]
async fn feeds_are_capped_and_paginate_without_gaps() {
    let config = SocialConfig {
        feed_cap: 40,
        author_items_cap: 40,
        ..SocialConfig::default()
    };
    let mut w = World::with(config, JobConfig::default(), 4).await;
    let reader = w.user("reader").await;
    let mut authors = Vec::new();
    for i in 0..3 {
        let a = w.user(&format!("writer{i}")).await;
        w.act(reader, json!({"type": "follow.created", "user_id": a}))
            .await;
        authors.push(a);
    }
    let mut posts = Vec::new();
    for i in 0..90 {
        posts.push(w.act(authors[i % 3], post(&format!("p{i}"))).await);
    }
    w.sync().await;
    let feed = w.feed(reader);
    let newest: Vec<_> = posts.iter().rev().take(40).copied().collect();
    assert_eq!(feed, newest, "the 40 newest, newest first, no gaps");
    // Stored rows stay within cap + slack.
    let rows = w.feed_rows(reader);
    assert!(rows.len() <= 45, "{} rows stored", rows.len());
    // Pages of 7 cover the same items.
    let pages = w.feed_pages(reader, 7);
    assert!(pages.iter().all(|p| p.len() <= 7));
    assert_eq!(pages.concat(), newest);
    assert!(matches!(
        w.views.feed(&reader, Some("not-a-cursor!"), 7),
        Err(philo_streams::read::ReadError::InvalidCursor)
    ));
}

#[tokio::test]
async fn pages_merge_pulled_authors_and_skip_runs_of_deleted_items() {
    // A feed read takes rows in rounds of a little more than a page from the pushed feed and
    // from each pulled author; a run of deleted items longer than a round, and a pulled author
    // whose items interleave with the pushed ones, must still give full pages without gaps.
    let config = SocialConfig {
        pull_threshold: 3,
        ..SocialConfig::default()
    };
    let mut w = World::with(config, JobConfig::default(), 4).await;
    let star = w.user("star").await;
    let plain = w.user("plain").await;
    let mut fans = Vec::new();
    for i in 0..4 {
        let f = w.user(&format!("fan{i}")).await;
        w.act(f, json!({"type": "follow.created", "user_id": star}))
            .await;
        fans.push(f);
    }
    let reader = fans[0];
    w.act(reader, json!({"type": "follow.created", "user_id": plain}))
        .await;
    let (mut stars, mut plains) = (Vec::new(), Vec::new());
    for i in 0..30 {
        stars.push(w.act(star, post(&format!("s{i}"))).await);
        plains.push(w.act(plain, post(&format!("p{i}"))).await);
        plains.push(w.act(plain, post(&format!("q{i}"))).await);
    }
    // 25 of the plain author's posts in a row go: more than one round of a page of 5.
    for id in &plains[20..45] {
        w.act(plain, json!({"type": "post.deleted", "post_id": id}))
            .await;
    }
    let s = w.sync().await;
    assert_eq!(s.failed, 0, "{:?}", w.failed());
    let deleted: std::collections::HashSet<_> = plains[20..45].iter().collect();
    let mut expected: Vec<Uuid> = stars
        .iter()
        .chain(&plains)
        .filter(|id| !deleted.contains(id))
        .copied()
        .collect();
    expected.sort_unstable_by(|a, b| b.cmp(a)); // UUIDv7: newest first
    assert_eq!(w.feed(reader), expected);
    let pages = w.feed_pages(reader, 5);
    for page in &pages[..pages.len() - 1] {
        assert_eq!(page.len(), 5, "a page before the last is full");
    }
    assert_eq!(
        pages.concat(),
        expected,
        "pages of 5 cover the feed without gaps or repeats"
    );
}

#[tokio::test]
async fn engagement_is_summed_per_hour_by_the_timely_stage() {
    let mut w = World::new().await;
    let author = w.user("author").await;
    let p = w.act(author, post("hot")).await;
    let mut fans = Vec::new();
    for i in 0..6 {
        fans.push(w.user(&format!("fan{i}")).await);
    }
    // First hour: 6 reactions, 2 comments; one reaction removed again (counter, not window).
    for f in &fans {
        w.act(
            *f,
            json!({"type": "reaction.added", "target_id": p, "kind": "like"}),
        )
        .await;
    }
    for f in &fans[..2] {
        w.act(
            *f,
            json!({"type": "comment.created", "target_id": p, "body": "+1"}),
        )
        .await;
    }
    w.act(
        fans[0],
        json!({"type": "reaction.removed", "target_id": p, "kind": "like"}),
    )
    .await;
    // Two hours later: 3 more comments.
    w.now += chrono::Duration::hours(2);
    for f in &fans[..3] {
        w.act(
            *f,
            json!({"type": "comment.created", "target_id": p, "body": "later"}),
        )
        .await;
    }
    w.sync().await;
    let hours = w.views.engagement(&p, 10).unwrap();
    assert_eq!(hours.len(), 2, "{hours:?}");
    assert_eq!((hours[0].comments, hours[0].reactions), (3, 0));
    assert_eq!((hours[1].comments, hours[1].reactions), (2, 6));
    assert!(hours[0].hour > hours[1].hour);
    let t = w.views.post(&p, None, None, 10).unwrap();
    assert_eq!((t.item.stats.reactions, t.item.stats.comments), (5, 5));
    assert_eq!(w.views.engagement(&p, 1).unwrap().len(), 1);
}

#[tokio::test]
async fn an_erased_account_leaves_graph_feeds_and_notifications() {
    let mut w = World::new().await;
    let (ann, bob, cyd) = (
        w.user("ann").await,
        w.user("bob").await,
        w.user("cyd").await,
    );
    w.act(bob, json!({"type": "follow.created", "user_id": ann}))
        .await;
    w.act(ann, json!({"type": "follow.created", "user_id": cyd}))
        .await;
    let pa = w.act(ann, post("by ann")).await;
    let pc = w.act(cyd, post("by cyd")).await;
    w.act(
        bob,
        json!({"type": "reaction.added", "target_id": pa, "kind": "like"}),
    )
    .await;
    w.sync().await;
    assert_eq!(w.feed(bob), vec![pa]);
    assert_eq!(w.feed(ann), vec![pc, pa]);

    w.act(ann, json!({"type": "account.erased"})).await;
    let after = w.act(ann, post("after erasure")).await;
    w.sync().await;
    assert!(w.feed(bob).is_empty(), "ann's items left bob's feed");
    assert!(w.feed(ann).is_empty());
    assert!(w.views.profile(&ann).is_err(), "profile gone");
    assert_eq!(w.views.profile(&bob).unwrap().following, 0);
    assert_eq!(w.views.profile(&cyd).unwrap().followers, 0);
    assert!(
        w.views
            .notifications(&ann, None, 10)
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        w.views.post(&pa, None, None, 10).is_err(),
        "ann's post is gone"
    );
    assert_eq!(w.reason_of(after).as_deref(), Some("account_erased"));
    // The username is free again.
    let again = w.user("ann").await;
    w.sync().await;
    assert_eq!(w.views.profile(&again).unwrap().username, "ann");
}
