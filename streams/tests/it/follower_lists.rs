//! Fan-out reads a well-followed author's follower list from the job's cache (`FollowerLists`):
//! follows and unfollows in the same step as the author's posts, and in later steps, must
//! change who receives the next post exactly as the follower rows do.

use std::collections::HashSet;

use serde_json::json;
use uuid::Uuid;

use crate::world::{World, post};

#[tokio::test]
async fn cached_follower_lists_follow_every_edge_change() {
    let mut w = World::new().await;
    let author = w.user("author").await;
    // Above the cache's 256-follower floor, below the pull threshold.
    let mut followers = Vec::new();
    for i in 0..300 {
        let f = w.user(&format!("follower{i}")).await;
        w.act(f, json!({"type": "follow.created", "user_id": author}))
            .await;
        followers.push(f);
    }
    let late = [w.user("late0").await, w.user("late1").await];
    w.sync().await;
    // One step: a post (the list is read and cached), a follow, a post, an unfollow, a post.
    let p1 = w.act(author, post("one")).await;
    w.act(
        late[0],
        json!({"type": "follow.created", "user_id": author}),
    )
    .await;
    let p2 = w.act(author, post("two")).await;
    w.act(
        followers[7],
        json!({"type": "follow.removed", "user_id": author}),
    )
    .await;
    let p3 = w.act(author, post("three")).await;
    let stats = w.sync().await;
    assert_eq!(stats.applied, 5, "{stats:?}");
    let set = |v: Vec<Uuid>| v.into_iter().collect::<HashSet<_>>();
    assert_eq!(set(w.feed(followers[0])), set(vec![p1, p2, p3]));
    // The late follower got the first post by backfill and the next two by fan-out.
    assert_eq!(set(w.feed(late[0])), set(vec![p1, p2, p3]));
    // The unfollower lost the author's items and did not get the third.
    assert!(
        w.feed(followers[7]).is_empty(),
        "{:?}",
        w.feed(followers[7])
    );
    // Later steps: the list cached after the third post changes with the edges too.
    w.act(
        late[1],
        json!({"type": "follow.created", "user_id": author}),
    )
    .await;
    w.act(
        followers[8],
        json!({"type": "block.created", "user_id": author}),
    )
    .await;
    w.sync().await;
    let p4 = w.act(author, post("four")).await;
    w.sync().await;
    assert!(w.feed(late[1]).contains(&p4));
    assert!(
        !w.feed(followers[8]).contains(&p4),
        "a blocker gets nothing"
    );
    assert!(w.feed(followers[9]).contains(&p4));
    assert!(!w.feed(followers[7]).contains(&p4));
    let reached = followers
        .iter()
        .chain(&late)
        .filter(|f| w.feed(**f).contains(&p4))
        .count();
    assert_eq!(reached, 300 - 2 + 2);
}
