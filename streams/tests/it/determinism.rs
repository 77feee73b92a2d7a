//! Effectively-once: however the log is cut into steps, delivered twice, or appended in another
//! interleaving across partitions, the views end up the same.

use std::collections::HashMap;

use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, partition_for_key};
use philo_streams::job::JobConfig;
use philo_streams::social::SocialConfig;
use philo_streams::workload::{Workload, WorkloadConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::world::{World, record};

fn workload(seed: u64, actions: usize) -> Vec<Envelope> {
    let mut c = WorkloadConfig::small(seed);
    c.actions = actions;
    Workload::new(c).collect()
}

fn small_config() -> SocialConfig {
    // Small thresholds so that pull mode, trimming and backfill all happen.
    SocialConfig {
        feed_cap: 60,
        pull_threshold: 150,
        backfill: 5,
        author_items_cap: 60,
        ..SocialConfig::default()
    }
}

async fn run(envs: &[Envelope], batch: usize, chunk: usize) -> (String, u64, u64) {
    let job = JobConfig {
        max_batch_records: batch,
        ..JobConfig::default()
    };
    let mut w = World::with(small_config(), job, 4).await;
    let mut failed = 0;
    let mut applied = 0;
    for part in envs.chunks(chunk) {
        w.log
            .append(ACTIONS_TOPIC, part.iter().map(record).collect())
            .await
            .unwrap();
        let s = w.sync().await;
        failed += s.failed as u64;
        applied += s.applied as u64;
    }
    (w.job.digest().unwrap(), applied, failed)
}

#[tokio::test]
async fn step_size_and_append_chunking_do_not_change_views() {
    let envs = workload(7, 3_000);
    let (reference, applied, failed) = run(&envs, 4_096, envs.len()).await;
    assert_eq!(applied + failed, envs.len() as u64);
    // The generator only emits references that resolve.
    assert_eq!(failed, 0, "the workload's references must all resolve");
    for (batch, chunk) in [(1, envs.len()), (13, 997), (4_096, 50)] {
        let (d, _, _) = run(&envs, batch, chunk).await;
        assert_eq!(d, reference, "batch {batch}, chunk {chunk}");
    }
}

#[tokio::test]
async fn duplicate_deliveries_change_nothing() {
    let envs = workload(11, 2_000);
    let (reference, _, _) = run(&envs, 256, envs.len()).await;
    // Every record delivered twice: again right away, and the first half once more at the end
    // (a producer retry, a replay after a crash).
    let mut doubled = Vec::new();
    for e in &envs {
        doubled.push(e.clone());
        doubled.push(e.clone());
    }
    doubled.extend(envs[..envs.len() / 2].iter().cloned());
    let job = JobConfig {
        max_batch_records: 256,
        ..JobConfig::default()
    };
    let mut w = World::with(small_config(), job, 4).await;
    w.log
        .append(ACTIONS_TOPIC, doubled.iter().map(record).collect())
        .await
        .unwrap();
    let s = w.sync().await;
    assert_eq!(s.duplicates, envs.len() + envs.len() / 2);
    assert_eq!(w.job.digest().unwrap(), reference);
}

#[tokio::test]
async fn other_interleavings_across_partitions_give_the_same_views() {
    let envs = workload(23, 2_000);
    let (reference, _, _) = run(&envs, 512, envs.len()).await;
    // Keep each actor's order (one partition keeps it), shuffle how partitions interleave.
    let mut by_partition: HashMap<u32, Vec<Envelope>> = HashMap::new();
    for e in &envs {
        by_partition
            .entry(partition_for_key(e.actor_id.as_bytes(), 4))
            .or_default()
            .push(e.clone());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut order: Vec<u32> = by_partition
        .iter()
        .flat_map(|(p, v)| std::iter::repeat_n(*p, v.len()))
        .collect();
    order.shuffle(&mut rng);
    let mut cursors: HashMap<u32, usize> = HashMap::new();
    let shuffled: Vec<Envelope> = order
        .into_iter()
        .map(|p| {
            let i = cursors.entry(p).or_default();
            *i += 1;
            by_partition[&p][*i - 1].clone()
        })
        .collect();
    let job = JobConfig {
        max_batch_records: 512,
        ..JobConfig::default()
    };
    let mut w = World::with(small_config(), job, 4).await;
    w.log
        .append(ACTIONS_TOPIC, shuffled.iter().map(record).collect())
        .await
        .unwrap();
    w.sync().await;
    assert_eq!(w.job.digest().unwrap(), reference);
}

#[tokio::test]
async fn restart_resumes_from_the_durable_position() {
    let envs = workload(5, 2_000);
    let (reference, _, _) = run(&envs, 300, envs.len()).await;
    let job = JobConfig {
        max_batch_records: 300,
        ..JobConfig::default()
    };
    let mut w = World::with(small_config(), job.clone(), 4).await;
    w.log
        .append(ACTIONS_TOPIC, envs.iter().map(record).collect())
        .await
        .unwrap();
    // Apply a few steps, then drop the job (as a crash would) and open a new one.
    for _ in 0..3 {
        w.job.step().await.unwrap();
    }
    let resumed_from: u64 = w.job.positions().iter().sum();
    assert!(resumed_from > 0 && resumed_from < envs.len() as u64);
    w.job = philo_streams::job::Job::open(
        philo_streams::social::SocialProcessor::new(small_config()),
        w.log.clone(),
        w.store.clone(),
        job,
    )
    .await
    .unwrap();
    assert_eq!(w.job.positions().iter().sum::<u64>(), resumed_from);
    let s = w.sync().await;
    assert_eq!(s.duplicates, 0, "positions were durable with the outputs");
    assert_eq!(w.job.digest().unwrap(), reference);
}
