//! Shared work (ADR 009): instances of the job that each hold the per-user views of a share of
//! the partitions together hold exactly the views of one process, and an instance that takes
//! over partitions (a peer died) or gives them up ends with exactly the views of its new share.

use std::collections::BTreeSet;
use std::sync::Arc;

use philo_events::log::{ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, Log};
use philo_events::{Action, Envelope};
use philo_streams::job::{FAILED_TABLE, Job, JobConfig};
use philo_streams::runtime::{store_config, view_digests, view_digests_held};
use philo_streams::shards::Shards;
use philo_streams::social::{SocialConfig, SocialProcessor, tables};
use philo_streams::store::{EmbeddedStore, StateStore};
use philo_streams::workload::{Workload, WorkloadConfig};
use serde_json::json;
use uuid::Uuid;

use crate::world::record;

const PARTITIONS: u32 = 4;

fn config() -> SocialConfig {
    // Small thresholds so that pull mode, trimming and backfill all happen.
    SocialConfig {
        feed_cap: 60,
        pull_threshold: 150,
        backfill: 5,
        author_items_cap: 60,
        ..SocialConfig::default()
    }
}

fn store(dir: &std::path::Path, name: &str) -> Arc<dyn StateStore> {
    Arc::new(EmbeddedStore::open(store_config(&dir.join(name))).unwrap())
}

async fn job(log: &Arc<dyn Log>, store: &Arc<dyn StateStore>) -> Job<SocialProcessor> {
    let job = JobConfig {
        max_batch_records: 300,
        ..JobConfig::default()
    };
    Job::open(
        SocialProcessor::new(config()),
        log.clone(),
        store.clone(),
        job,
    )
    .await
    .unwrap()
}

fn set(p: &[u32]) -> BTreeSet<u32> {
    p.iter().copied().collect()
}

fn rows(store: &dyn StateStore, table: &str) -> usize {
    let mut n = 0;
    store
        .for_each(table, &mut |_, _, _| {
            n += 1;
            true
        })
        .unwrap();
    n
}

/// The workload in two parts (the second is content only), plus actions that fail (a follow
/// of nobody) by actors of every partition at the end of the first, so failed actions are split
/// too.
fn workload() -> (Vec<Envelope>, Vec<Envelope>) {
    let mut c = WorkloadConfig::small(21);
    c.actions = 2_500;
    let mut first: Vec<Envelope> = Workload::new(c).collect();
    let second = first.split_off(first.len() - 800);
    let last = first.last().unwrap().received_at;
    let actors: Vec<Uuid> = first.iter().map(|e| e.actor_id).take(400).collect();
    for (i, actor) in actors.iter().enumerate().step_by(10) {
        let action: Action =
            serde_json::from_value(json!({"type": "follow.created", "user_id": Uuid::now_v7()}))
                .unwrap();
        // Between the two parts (the workload's actions are a second apart).
        first.push(Envelope::new(
            *actor,
            action,
            last + chrono::Duration::milliseconds(i as i64 + 1),
        ));
    }
    (first, second)
}

async fn append(log: &Arc<dyn Log>, envs: &[Envelope]) {
    for chunk in envs.chunks(500) {
        log.append(ACTIONS_TOPIC, chunk.iter().map(record).collect())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_together_hold_one_process_views_and_take_over_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> =
        Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    log.create_topic(ACTIONS_TOPIC, PARTITIONS).await.unwrap();
    let (first, second) = workload();

    let reference_store = store(dir.path(), "reference");
    let mut reference = job(&log, &reference_store).await;
    let (a_store, b_store) = (store(dir.path(), "a"), store(dir.path(), "b"));
    let mut a = job(&log, &a_store).await;
    let mut b = job(&log, &b_store).await;
    // Fresh stores: taking a share moves nothing.
    let fresh = a
        .reshard(
            &set(&[0, 1]),
            store(dir.path(), "scratch-a0"),
            SocialProcessor::new(config()),
        )
        .await
        .unwrap();
    assert_eq!((fresh.adopted_rows, fresh.dropped_rows), (0, 0));
    b.reshard(
        &set(&[2, 3]),
        store(dir.path(), "scratch-b0"),
        SocialProcessor::new(config()),
    )
    .await
    .unwrap();

    append(&log, &first).await;
    for j in [&mut reference, &mut a, &mut b] {
        j.catch_up().await.unwrap();
    }
    let all = Shards::all(PARTITIONS);
    let expected = view_digests(&*reference_store, &[]).unwrap();
    assert_eq!(
        view_digests_held(&*reference_store, &[], &all).unwrap(),
        expected
    );
    for (store, share) in [(&a_store, [0, 1]), (&b_store, [2, 3])] {
        let shards = Shards::of(PARTITIONS, &set(&share));
        // Every view an instance holds equals one process's, restricted to its users...
        assert_eq!(
            view_digests_held(&**store, &[], &shards).unwrap(),
            view_digests_held(&*reference_store, &[], &shards).unwrap(),
            "share {share:?}"
        );
        // ...and it holds nothing of the other users.
        assert_eq!(
            view_digests(&**store, &[]).unwrap(),
            view_digests_held(&**store, &[], &shards).unwrap()
        );
    }
    // The split is real: feeds and failed actions are divided, the graph is everyone's.
    for table in [tables::FEED, FAILED_TABLE] {
        let (r, a_rows, b_rows) = (
            rows(&*reference_store, table),
            rows(&*a_store, table),
            rows(&*b_store, table),
        );
        assert!(a_rows > 0 && b_rows > 0, "{table}: {a_rows} + {b_rows}");
        assert_eq!(a_rows + b_rows, r, "{table}");
    }
    assert_eq!(
        rows(&*a_store, tables::FOLLOWERS),
        rows(&*reference_store, tables::FOLLOWERS)
    );

    // B dies: A takes over its partitions, rebuilding their users' views from the log.
    let took = a
        .reshard(
            &set(&[0, 1, 2, 3]),
            store(dir.path(), "scratch-a1"),
            SocialProcessor::new(config()),
        )
        .await
        .unwrap();
    assert_eq!(took.gained, vec![2, 3]);
    assert_eq!(took.replayed, first.len());
    assert!(took.adopted_rows > 0);
    assert_eq!(view_digests(&*a_store, &[]).unwrap(), expected);

    // A carries on live; then gives partitions 1 and 3 up (a new peer joined).
    append(&log, &second).await;
    reference.catch_up().await.unwrap();
    a.catch_up().await.unwrap();
    assert_eq!(
        view_digests(&*a_store, &[]).unwrap(),
        view_digests(&*reference_store, &[]).unwrap()
    );
    let gave = a
        .reshard(
            &set(&[0, 2]),
            store(dir.path(), "scratch-a2"),
            SocialProcessor::new(config()),
        )
        .await
        .unwrap();
    assert_eq!((gave.lost.clone(), gave.replayed), (vec![1, 3], 0));
    assert!(gave.dropped_rows > 0);
    let shards = Shards::of(PARTITIONS, &set(&[0, 2]));
    assert_eq!(
        view_digests(&*a_store, &[]).unwrap(),
        view_digests_held(&*reference_store, &[], &shards).unwrap()
    );

    // The share survives a restart: the reopened job holds the same partitions.
    drop(a);
    let a = job(&log, &a_store).await;
    assert_eq!(a.shards().set(), set(&[0, 2]));
}
