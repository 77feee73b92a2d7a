//! The consumer-group commit runs beside the steps, and ends where the store's positions do.

use philo_events::log::ACTIONS_TOPIC;
use philo_streams::social::JOB;
use serde_json::json;

use crate::world::World;

async fn committed(world: &World) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for p in 0..world.job.positions().len() as u32 {
        out.push(world.log.committed(JOB, ACTIONS_TOPIC, p).await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_group_commit_catches_up_with_the_store_positions() {
    let mut world = World::new().await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(world.user(&format!("user_{i}")).await);
    }
    for (i, &u) in users.iter().enumerate() {
        world
            .act(
                u,
                json!({"type": "post.created", "title": format!("post {i}"), "body": "b", "tags": []}),
            )
            .await;
        // One step per action: commits start while earlier ones may still be in flight.
        world.job.step().await.unwrap();
    }
    world.sync().await;
    world.job.finish_commits().await;
    let positions: Vec<Option<u64>> = world.job.positions().iter().map(|&o| Some(o)).collect();
    assert!(positions.iter().any(|o| o.unwrap() > 0));
    assert_eq!(committed(&world).await, positions);

    // An idle step leaves the committed positions; new records move them.
    world.job.step().await.unwrap();
    world.job.finish_commits().await;
    assert_eq!(committed(&world).await, positions);
    world
        .act(
            users[0],
            json!({"type": "profile.updated", "description": "later"}),
        )
        .await;
    world.sync().await;
    world.job.finish_commits().await;
    let later: Vec<Option<u64>> = world.job.positions().iter().map(|&o| Some(o)).collect();
    assert_ne!(later, positions);
    assert_eq!(committed(&world).await, later);
}

#[tokio::test]
async fn a_reopened_job_reports_to_the_readers_of_the_first() {
    // The runtime reopens a job that failed; readers keep the first job's progress.
    let mut world = World::new().await;
    let ann = world.user("ann").await;
    world.sync().await;
    let readers = world.job.progress();
    let mut reopened = philo_streams::job::Job::open(
        philo_streams::social::SocialProcessor::new(Default::default()),
        world.log.clone(),
        world.store.clone(),
        Default::default(),
    )
    .await
    .unwrap();
    reopened.adopt_progress(readers.clone());
    let (_, position) = world
        .act_at(
            ann,
            json!({"type": "post.created", "title": "after the restart", "body": "b", "tags": []}),
        )
        .await;
    assert!(!readers.covers(position));
    reopened.catch_up().await.unwrap();
    assert!(
        readers.covers(position),
        "the first job's readers never learn of the reopened job's steps"
    );
}
