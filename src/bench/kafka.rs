//! `philo bench kafka`: the Kafka backend against the embedded log, in one run and on one
//! machine: single-action and batch ingest through `philo ingest-api` on each log, then
//! post-to-feed freshness through `philo up --log kafka://…` under an open-loop load.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};

use super::feed::{self, FeedArgs};
use super::ingest::{self, IngestArgs};

#[derive(Args)]
pub struct KafkaArgs {
    /// The cluster, `kafka://host:port[,…][?…]`, with an empty (or no) `actions` topic. Works
    /// against tansu 0.6 with normal batching: the freshness phase ends its seeding with
    /// one-record batches and keeps the load on while probing, so tansu's high-watermark bug
    /// (docs/kafka.md) can only delay what it measures. `batch_max_records=1` caps tansu at
    /// about a thousand actions/s with the job reading. Add `fetch_wait_ms=5` against tansu:
    /// it polls during a fetch's wait, so the default 50 ms delays every read of new records.
    #[arg(long)]
    pub broker: String,
    /// Seconds per ingest phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Connections of the single-action phases.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Actions per second of the freshness phase.
    #[arg(long, default_value_t = 5_000.0)]
    pub ingest_rate: f64,
    /// Feed reads per second alongside the freshness phase (open loop).
    #[arg(long, default_value_t = 2_000.0)]
    pub read_rate: f64,
    /// Seconds of the freshness phase.
    #[arg(long, default_value_t = 15)]
    pub freshness_seconds: u64,
    /// Run the freshness phase's server without the lake's anonymizer (see `bench feed`).
    #[arg(long)]
    pub without_lake: bool,
    /// Also print the results as one JSON line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: KafkaArgs) -> Result<()> {
    let ingest_args = |log: &str| IngestArgs {
        connections: args.connections,
        seconds: args.seconds,
        batch_size: 500,
        batch_connections: 4,
        data_dir: None,
        json: false,
        role: "ingest-api".into(),
        log: log.to_owned(),
    };
    // Freshness first: its job must start on an empty `actions` topic, not behind the
    // ingest phases' records.
    eprintln!("== freshness, Kafka");
    let fresh = feed::run(FeedArgs {
        skip_fanout: true,
        seconds: args.freshness_seconds,
        ingest_rate: args.ingest_rate,
        ingest_workers: 64,
        read_rate: args.read_rate,
        log: args.broker.clone(),
        without_lake: args.without_lake,
        ..FeedArgs::defaults()
    })
    .await?;
    eprintln!("== ingest, embedded log");
    let embedded = ingest::run(ingest_args("embedded")).await?;
    eprintln!("== ingest, Kafka");
    let kafka = ingest::run(ingest_args(&args.broker)).await?;

    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!();
    println!("philo bench kafka: Kafka vs embedded log, one run, `philo ingest-api` on each");
    println!("                               embedded        Kafka   Kafka/embedded");
    for (label, key) in [
        ("single POST /v1/actions (req/s)", "single_rps"),
        ("  p99 at full load (ms)", "single_p99_ms"),
        ("  p99 at half rate (ms)", "half_rate_p99_ms"),
        ("batch (actions/s)", "batch_actions_per_s"),
        ("server peak RSS (MB)", "peak_rss_mb"),
    ] {
        let (e, k) = (f(&embedded, key), f(&kafka, key));
        println!("  {label:<31} {e:>10.1} {k:>12.1} {:>12.2}", k / e);
    }
    println!(
        "  post-to-feed freshness on Kafka at {:.0} actions/s offered ({:.0} achieved, lake {}): p50 {:.1} ms, p99 {:.1} ms (target p99 <= 500){}",
        args.ingest_rate,
        f(&fresh, "ingest_actions_per_s"),
        if args.without_lake { "off" } else { "on" },
        f(&fresh, "freshness_p50_ms"),
        f(&fresh, "freshness_p99_ms"),
        if f(&fresh, "freshness_p99_ms") <= 500.0 {
            ""
        } else {
            "  NOT MET"
        }
    );
    if args.json {
        println!(
            "{}",
            json!({"embedded": embedded, "kafka": kafka, "freshness_on_kafka": fresh})
        );
    }
    let failed = f(&kafka, "failed") + f(&embedded, "failed");
    (failed == 0.0)
        .then_some(())
        .with_context(|| format!("{failed} requests failed"))
}
