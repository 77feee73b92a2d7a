//! Notifications: who hears about what, grouping, preferences, read markers, blocks.

use serde_json::json;
use uuid::Uuid;

use crate::world::World;

fn kinds(w: &World, user: Uuid) -> Vec<String> {
    w.views
        .notifications(&user, None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.kind)
        .collect()
}

#[tokio::test]
async fn each_action_notifies_the_right_people_once() {
    let mut w = World::new().await;
    let (ann, bob, cyd) = (
        w.user("ann").await,
        w.user("bob").await,
        w.user("cyd").await,
    );
    w.act(bob, json!({"type": "follow.created", "user_id": ann}))
        .await;
    let post = w
        .act(
            ann,
            json!({"type": "post.created", "title": "Cold chains", "body": "ideas? cc @cyd", "tags": []}),
        )
        .await;
    let approach = w
        .act(
            bob,
            json!({"type": "approach.created", "post_id": post, "title": "Solar fridges", "body": "see @ann"}),
        )
        .await;
    let c1 = w
        .act(
            cyd,
            json!({"type": "comment.created", "target_id": approach, "body": "nice"}),
        )
        .await;
    w.act(
        ann,
        json!({"type": "comment.created", "target_id": approach, "body": "agreed", "parent_id": c1}),
    )
    .await;
    // Own actions notify nobody: ann comments on her own post.
    w.act(
        ann,
        json!({"type": "comment.created", "target_id": post, "body": "self"}),
    )
    .await;
    w.sync().await;

    assert_eq!(kinds(&w, ann), vec!["approach_on_post", "new_follower"]);
    assert_eq!(
        kinds(&w, bob),
        vec!["comment_on_approach", "comment_on_approach"]
    );
    assert_eq!(kinds(&w, cyd), vec!["reply", "mention"]);
    let mention = &w.views.notifications(&cyd, None, 10).unwrap().items[1];
    assert_eq!(mention.target_id, Some(post));
    assert_eq!(mention.actors[0].username, "ann");
}

#[tokio::test]
async fn reactions_group_until_read_and_blocked_users_are_silent() {
    let mut w = World::new().await;
    let owner = w.user("owner").await;
    let post = w
        .act(
            owner,
            json!({"type": "post.created", "title": "t", "body": "b", "tags": []}),
        )
        .await;
    let mut fans = Vec::new();
    for i in 0..5 {
        let f = w.user(&format!("fan{i}")).await;
        w.act(
            f,
            json!({"type": "reaction.added", "target_id": post, "kind": "like"}),
        )
        .await;
        fans.push(f);
    }
    // The same fan with another kind does not count twice.
    w.act(
        fans[4],
        json!({"type": "reaction.added", "target_id": post, "kind": "love"}),
    )
    .await;
    w.sync().await;
    let page = w.views.notifications(&owner, None, 10).unwrap();
    assert_eq!(page.items.len(), 1, "{page:?}");
    let n = &page.items[0];
    assert_eq!((n.kind.as_str(), n.actor_count), ("reaction", 5));
    assert_eq!(n.actors.len(), 3);
    assert_eq!(n.actors[0].user_id, fans[4], "most recent first");
    assert_eq!(w.views.unread_count(&owner).unwrap(), 1);

    // Read it: the next reaction starts a new group.
    w.act(owner, json!({"type": "notifications.read", "up_to": n.id}))
        .await;
    let late = w.user("late").await;
    w.act(
        late,
        json!({"type": "reaction.added", "target_id": post, "kind": "like"}),
    )
    .await;
    // A blocked user's reaction notifies nobody.
    let troll = w.user("troll").await;
    w.act(owner, json!({"type": "block.created", "user_id": troll}))
        .await;
    w.act(
        troll,
        json!({"type": "reaction.added", "target_id": post, "kind": "like"}),
    )
    .await;
    w.sync().await;
    let page = w.views.notifications(&owner, None, 10).unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].actor_count, 1);
    assert_eq!(page.items[0].actors[0].user_id, late);
    assert!(!page.items[0].read && page.items[1].read);
    assert_eq!(w.views.unread_count(&owner).unwrap(), 1);
}

#[tokio::test]
async fn preferences_opt_in_and_out() {
    let mut w = World::new().await;
    let (ann, bob) = (w.user("ann").await, w.user("bob").await);
    w.act(bob, json!({"type": "follow.created", "user_id": ann}))
        .await;
    let p1 = w
        .act(
            ann,
            json!({"type": "post.created", "title": "one", "body": "b", "tags": []}),
        )
        .await;
    w.act(
        bob,
        json!({"type": "notifications.preferences_updated", "post_by_followed": true}),
    )
    .await;
    let p2 = w
        .act(
            ann,
            json!({"type": "post.created", "title": "two", "body": "b", "tags": []}),
        )
        .await;
    w.act(
        ann,
        json!({"type": "notifications.preferences_updated", "reaction": false}),
    )
    .await;
    w.act(
        bob,
        json!({"type": "reaction.added", "target_id": p1, "kind": "like"}),
    )
    .await;
    w.sync().await;
    let bobs = w.views.notifications(&bob, None, 10).unwrap().items;
    assert_eq!(bobs.len(), 1, "opt-in applies from then on");
    assert_eq!(bobs[0].subject_id, Some(p2));
    assert_eq!(kinds(&w, ann), vec!["new_follower"], "reactions turned off");
    let prefs = w.views.notification_preferences(&ann).unwrap();
    assert_eq!(prefs["reaction"], json!(false));
    assert_eq!(prefs["mention"], json!(true));
}

#[tokio::test]
async fn money_offers_and_events_notify() {
    let mut w = World::new().await;
    let (ann, bob, cyd) = (
        w.user("ann").await,
        w.user("bob").await,
        w.user("cyd").await,
    );
    let post = w
        .act(
            ann,
            json!({"type": "post.created", "title": "t", "body": "b", "tags": []}),
        )
        .await;
    let ends = (w.now + chrono::Duration::days(10)).to_rfc3339();
    let camp = w
        .act(
            ann,
            json!({"type": "campaign.created", "target_id": post, "goal_minor": 100, "currency": "EUR", "ends_at": ends}),
        )
        .await;
    for (who, amount, r) in [(bob, 60, "r1"), (cyd, 50, "r2"), (bob, 10, "r3")] {
        w.act(
            who,
            json!({"type": "donation.made", "target_id": camp, "amount_minor": amount, "currency": "EUR", "payment_ref": r}),
        )
        .await;
    }
    let offer = w
        .act(
            bob,
            json!({"type": "job_offer.created", "to_user_id": cyd, "title": "Role", "description": "d", "skills": []}),
        )
        .await;
    w.act(
        cyd,
        json!({"type": "job_offer.answered", "offer_id": offer, "answer": "accepted"}),
    )
    .await;
    let starts = (w.now + chrono::Duration::days(2)).to_rfc3339();
    let ends = (w.now + chrono::Duration::days(2) + chrono::Duration::hours(1)).to_rfc3339();
    let ev = w
        .act(
            ann,
            json!({"type": "event.created", "title": "Meetup", "description": "d", "starts_at": starts, "ends_at": ends, "online_url": "https://meet.example.org/x"}),
        )
        .await;
    w.act(
        bob,
        json!({"type": "event.rsvp", "event_id": ev, "status": "going"}),
    )
    .await;
    w.act(
        cyd,
        json!({"type": "event.rsvp", "event_id": ev, "status": "not_going"}),
    )
    .await;
    w.act(
        ann,
        json!({"type": "event.updated", "event_id": ev, "title": "Meetup v2"}),
    )
    .await;
    w.act(ann, json!({"type": "event.cancelled", "event_id": ev}))
        .await;
    w.sync().await;

    let mut anns = kinds(&w, ann);
    anns.sort();
    assert_eq!(
        anns,
        vec!["campaign_goal_reached", "donation", "donation", "donation"]
    );
    let items = w.views.notifications(&ann, None, 10).unwrap().items;
    let goal = items
        .iter()
        .find(|n| n.kind == "campaign_goal_reached")
        .unwrap();
    assert_eq!(goal.data["raised_minor"], json!(110));
    assert_eq!(
        goal.actors[0].user_id, cyd,
        "the donation that crossed the goal"
    );
    assert_eq!(
        kinds(&w, bob),
        vec!["event_cancelled", "event_updated", "job_offer_accepted"]
    );
    assert_eq!(kinds(&w, cyd), vec!["job_offer_received"]);
}
