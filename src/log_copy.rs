//! `philo log copy`: moves a log between backends, e.g. the embedded log of a one-machine
//! deployment onto a Kafka cluster (the migration path). Records keep their key, value,
//! timestamp and headers, and land in the same partition at the same offset (both backends
//! place a key with Kafka's murmur2), so the stream jobs' stored positions stay valid and
//! `philo up --log kafka://…` continues where the embedded log ended.
//!
//! Resumable: a destination partition that already holds `n` records is taken to hold the
//! source's first `n` (checked by comparing the last one), so a copy interrupted by a crash
//! or stopped on purpose is finished by running it again. Nothing else may write to the
//! destination topics while the copy runs.

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use philo_events::log::{ACTIONS_TOPIC, FAILED_TOPIC, Log, Record};

use crate::app::open_log;
use crate::config::PhiloConfig;

#[derive(Args)]
pub struct CopyArgs {
    /// Data directory of the embedded log (source or destination).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Source log: `embedded` or `kafka://host:port[,…]`.
    #[arg(long)]
    pub from: String,
    /// Destination log: `embedded` or `kafka://host:port[,…]`.
    #[arg(long)]
    pub to: String,
    /// Topics to copy (repeatable). Default: `actions` and `actions.failed`.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Records per append.
    #[arg(long, default_value_t = 1000)]
    pub chunk: usize,
}

pub async fn copy(config: &PhiloConfig, args: &CopyArgs) -> Result<()> {
    ensure!(args.from != args.to, "--from and --to name the same log");
    ensure!(args.chunk > 0, "--chunk must be positive");
    let started = Instant::now();
    let mut source_config = config.clone();
    source_config.log.backend = args.from.clone();
    let source = open_log(&source_config)
        .await
        .with_context(|| format!("opening the source log {}", args.from))?;
    let partitions = source.partitions(ACTIONS_TOPIC).await?;
    let mut dest_config = config.clone();
    dest_config.log.backend = args.to.clone();
    dest_config.log.partitions = partitions;
    let dest = open_log(&dest_config)
        .await
        .with_context(|| format!("opening the destination log {}", args.to))?;

    let topics: Vec<String> = if args.topics.is_empty() {
        vec![ACTIONS_TOPIC.to_owned(), FAILED_TOPIC.to_owned()]
    } else {
        args.topics.clone()
    };
    let mut report = serde_json::Map::new();
    for topic in &topics {
        let (copied, skipped) = copy_topic(&*source, &*dest, topic, args.chunk).await?;
        report.insert(
            topic.clone(),
            serde_json::json!({"copied": copied, "already_there": skipped}),
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "from": args.from, "to": args.to, "topics": report,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// Copies one topic partition by partition; returns (records copied, records already there).
async fn copy_topic(
    source: &dyn Log,
    dest: &dyn Log,
    topic: &str,
    chunk: usize,
) -> Result<(u64, u64)> {
    let partitions = source.partitions(topic).await?;
    dest.create_topic(topic, partitions)
        .await
        .with_context(|| {
            format!("the destination's `{topic}` must have {partitions} partitions")
        })?;
    let (mut copied, mut skipped) = (0, 0);
    for p in 0..partitions {
        let src = source.watermarks(topic, p).await?;
        let dst = dest.watermarks(topic, p).await?;
        // Offsets are kept: the destination's partition `p` mirrors the source's from the
        // source's low watermark on (retention may have dropped older records).
        let mut next = src.low.max(dst.high);
        if dst.high > src.high {
            bail!(
                "{topic}/{p}: the destination holds {} records, more than the source's {}",
                dst.high,
                src.high
            );
        }
        if dst.high > 0 && dst.high > src.low {
            // Resuming: the last record there must be the source's record at that offset.
            let at = dst.high - 1;
            let theirs = dest.read(topic, p, at, 1).await?;
            let ours = source.read(topic, p, at, 1).await?;
            ensure!(
                theirs.first().map(|r| (&r.key, &r.value))
                    == ours.first().map(|r| (&r.key, &r.value)),
                "{topic}/{p}: the destination's record at offset {at} differs from the source's; it is not a copy of this log"
            );
            skipped += dst.high - src.low;
        } else if dst.high < src.low {
            bail!(
                "{topic}/{p}: the source starts at offset {} (retention) but the destination is at {}; offsets could not be kept",
                src.low,
                dst.high
            );
        }
        while next < src.high {
            let records = source.read(topic, p, next, chunk).await?;
            if records.is_empty() {
                break;
            }
            let first = records[0].offset;
            ensure!(
                first == next,
                "{topic}/{p}: expected offset {next}, read {first}"
            );
            let batch: Vec<Record> = records
                .into_iter()
                .map(|r| Record {
                    key: r.key,
                    value: r.value,
                    timestamp_ms: r.timestamp_ms,
                    headers: r.headers,
                })
                .collect();
            let n = batch.len() as u64;
            let positions = dest.append(topic, batch).await?;
            for (i, pos) in positions.iter().enumerate() {
                if pos.partition != p || pos.offset != next + i as u64 {
                    bail!(
                        "{topic}/{p}: record {} landed at {pos}, not {p}:{} (was something else writing to the destination?)",
                        next + i as u64,
                        next + i as u64
                    );
                }
            }
            next += n;
            copied += n;
        }
    }
    Ok((copied, skipped))
}
