//! Trims start at a remembered floor (`feed::Floors`) instead of walking earlier trims'
//! tombstones, and a feed trim in a step that only added newer items to the feed reads the
//! committed store instead of the step's staged view (`feed::Feeds`). A job that forgets its
//! caches before every action, so that every trim scans its list from the end through the
//! staged view, must end with exactly the same feeds and recent-item lists — whether the job
//! under test applies one action per step or dozens (backfills of older items, unfollows and
//! deletions in the same steps as the trims).

use std::sync::Arc;

use philo_streams::job::{Job, JobConfig};
use philo_streams::social::{SocialConfig, SocialProcessor, tables};
use philo_streams::store::contract::all_rows;
use philo_streams::store::{EmbeddedStore, EmbeddedStoreConfig, StateStore};
use serde_json::json;
use uuid::Uuid;

use crate::world::{World, post};

#[tokio::test]
async fn trims_from_remembered_floors_equal_trims_from_the_end() {
    let committed = trims_equal_trims_from_the_end(1).await;
    // One action per step: the step never wrote the feed before its trim.
    assert!(committed > 0, "no trim read the committed store");
}

#[tokio::test]
async fn trims_in_steps_of_many_actions_equal_trims_from_the_end() {
    for every in [5, 17] {
        let committed = trims_equal_trims_from_the_end(every).await;
        assert!(
            committed > 0,
            "steps of {every}: no trim read the committed store"
        );
    }
    // About the whole script in one step: every feed is new to the job in it, so every trim
    // reads through the staged view.
    assert_eq!(trims_equal_trims_from_the_end(60).await, 0);
}

/// Runs the script with the job under test catching up after every `sync_every` actions;
/// answers how many of its trims read the committed store.
async fn trims_equal_trims_from_the_end(sync_every: usize) -> u64 {
    let config = SocialConfig {
        feed_cap: 8,
        author_items_cap: 6,
        backfill: 5,
        ..SocialConfig::default()
    };
    let mut w = World::with(config.clone(), JobConfig::default(), 4).await;
    let dir = tempfile::tempdir().unwrap();
    let reference: Arc<dyn StateStore> =
        Arc::new(EmbeddedStore::open(EmbeddedStoreConfig::new(dir.path())).unwrap());

    let old = w.user("old_author").await;
    let readers = [w.user("reader0").await, w.user("reader1").await];
    let authors: Vec<Uuid> = [
        w.user("author0").await,
        w.user("author1").await,
        w.user("author2").await,
    ]
    .into();
    let mut script: Vec<(Uuid, serde_json::Value)> = Vec::new();
    // Items older than anything the readers will keep, backfilled into their feeds later,
    // above the floors their trims learned.
    for i in 0..4 {
        script.push((old, post(&format!("old {i}"))));
    }
    for &r in &readers {
        for &a in &authors {
            script.push((r, json!({"type": "follow.created", "user_id": a})));
        }
    }
    let mut posts = Vec::new();
    for round in 0..12 {
        for (k, &a) in authors.iter().enumerate() {
            let n = posts.len();
            script.push((a, post(&format!("p{round}/{k}"))));
            posts.push((a, n));
        }
        match round {
            // A full feed: the backfill is trimmed at once.
            3 => script.push((
                readers[1],
                json!({"type": "follow.created", "user_id": old}),
            )),
            // A feed shrunk by an unfollow takes the old items in, above its floor; later
            // trims must find them.
            6 => {
                for a in &authors[1..] {
                    script.push((readers[0], json!({"type": "follow.removed", "user_id": a})));
                }
                script.push((
                    readers[0],
                    json!({"type": "follow.created", "user_id": old}),
                ));
            }
            9 => {
                for a in &authors[1..] {
                    script.push((readers[0], json!({"type": "follow.created", "user_id": a})));
                }
            }
            _ => {}
        }
    }
    let mut ids = Vec::new();
    for (i, (actor, action)) in script.into_iter().enumerate() {
        ids.push(w.act(actor, action).await);
        // Deleting a recent post of a1 now and then.
        if i % 11 == 10 {
            let target = ids[i - 3];
            w.act(
                authors[1],
                json!({"type": "post.deleted", "post_id": target}),
            )
            .await;
        }
        // The job under test keeps its caches across steps.
        if (i + 1) % sync_every == 0 {
            w.sync().await;
        }
        // The reference forgets them: a fresh processor for every action.
        let mut fresh = Job::open(
            SocialProcessor::new(config.clone()),
            w.log.clone(),
            reference.clone(),
            JobConfig::default(),
        )
        .await
        .unwrap();
        fresh.catch_up().await.unwrap();
    }
    w.sync().await;
    for table in [tables::FEED, tables::AUTHOR_ITEMS] {
        let (got, want) = (all_rows(&*w.store, table), all_rows(&*reference, table));
        assert!(!want.is_empty());
        assert_eq!(got, want, "table {table}");
    }
    // The backfilled old items were trimmed away again by newer ones.
    for &r in &readers {
        let feed = w.feed(r);
        assert_eq!(feed.len(), 8, "{feed:?}");
    }
    w.job.processor().trims_read_committed()
}

/// A feed that lost rows in a step (an unfollow) and is trimmed later in the same step: the
/// trim must see the loss, so it cannot read the committed store.
#[tokio::test]
async fn a_trim_after_an_unfollow_in_the_same_step_sees_the_unfollow() {
    let config = SocialConfig {
        feed_cap: 8,
        ..SocialConfig::default()
    };
    let mut w = World::with(config, JobConfig::default(), 4).await;
    let (reader, a, b) = (
        w.user("reader").await,
        w.user("author_a").await,
        w.user("author_b").await,
    );
    for author in [a, b] {
        w.act(reader, json!({"type": "follow.created", "user_id": author}))
            .await;
    }
    w.sync().await;
    for i in 0..5 {
        w.act(a, post(&format!("a{i}"))).await;
    }
    w.sync().await;
    let mut b_posts = Vec::new();
    for i in 0..4 {
        b_posts.push(w.act(b, post(&format!("b{i}"))).await);
    }
    w.sync().await;
    // cap + slack rows are stored (reads show the newest `feed_cap`).
    assert_eq!(w.feed_rows(reader).len(), 9);
    // One step: A's five rows leave, then six posts of B bring the feed past cap + slack.
    w.act(reader, json!({"type": "follow.removed", "user_id": a}))
        .await;
    for i in 4..10 {
        b_posts.push(w.act(b, post(&format!("b{i}"))).await);
    }
    w.sync().await;
    let newest: Vec<Uuid> = b_posts.iter().rev().take(8).copied().collect();
    assert_eq!(w.feed(reader), newest);
    assert_eq!(w.feed_rows(reader).len(), 8, "trimmed to the cap");
}
