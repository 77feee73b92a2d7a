//! Trims start at a remembered floor (`feed::Floors`) instead of walking earlier trims'
//! tombstones. A job that forgets its caches before every action, so that every trim scans its
//! list from the end as before, must end with exactly the same feeds and recent-item lists.

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
        w.sync().await;
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
}
