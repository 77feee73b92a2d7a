//! `philo bench …`: end-to-end load over loopback, reported as ratios against a reference
//! measured in the same run (never as absolute pass/fail timings).

mod feed;
mod ingest;
mod kafka;
mod lake;
mod load;
mod scrape;
mod server;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Single-action and batch ingest against a fresh `philo up` child process.
    Ingest(ingest::IngestArgs),
    /// Feed fan-out throughput and footprint of the social job (in process, against the raw
    /// store), then freshness and feed-read latency against a `philo up` child under load.
    Feed(feed::FeedArgs),
    /// For tests and benchmarks: append a deterministic workload to a data directory's log
    /// while the social job applies it, resuming after an earlier (killed) run; print the
    /// views' digests as one JSON line.
    Load(load::LoadArgs),
    /// In one run against a Kafka-protocol broker: single and batch ingest with Kafka vs the
    /// embedded log, and post-to-feed freshness with the log on Kafka.
    Kafka(kafka::KafkaArgs),
    /// The anonymizer in one run: throughput into Delta tables on local disk (against reading
    /// and decoding the same log), files per table per day before and after compaction, lake
    /// lag under paced arrivals, and the throughput against a local S3 server (moto).
    Lake(lake::LakeArgs),
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args).await.map(drop),
        BenchCommand::Feed(args) => feed::run(args).await.map(drop),
        BenchCommand::Kafka(args) => kafka::run(args).await,
        BenchCommand::Load(args) => load::run(args).await,
        BenchCommand::Lake(args) => lake::run(args).await,
    }
}
