//! `philo log tail`: log records as JSON lines, optionally following new ones.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use philo_events::log::{ACTIONS_TOPIC, Position};

use crate::app::open_log;
use crate::config::PhiloConfig;

#[derive(Args)]
pub struct TailArgs {
    /// Data directory of the embedded log.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Start at this position (`<partition>:<offset>`); other partitions start at their
    /// beginning. Default: every partition from its first retained record.
    #[arg(long)]
    pub from: Option<Position>,
    /// Only this partition.
    #[arg(long)]
    pub partition: Option<u32>,
    /// Keep printing new records as they arrive.
    #[arg(long)]
    pub follow: bool,
    /// Topic to read.
    #[arg(long, default_value = ACTIONS_TOPIC)]
    pub topic: String,
}

pub async fn tail(config: &PhiloConfig, args: &TailArgs) -> Result<()> {
    let log = open_log(config).await?;
    let partitions = log.partitions(&args.topic).await?;
    let selected: Vec<u32> = match (args.partition, args.from) {
        (Some(p), _) => vec![p],
        (None, Some(from)) => vec![from.partition],
        (None, None) => (0..partitions).collect(),
    };
    let mut next = Vec::with_capacity(selected.len());
    for &p in &selected {
        let wm = log.watermarks(&args.topic, p).await.with_context(|| format!("partition {p}"))?;
        let start = match args.from {
            Some(from) if from.partition == p => from.offset.max(wm.low),
            _ => wm.low,
        };
        next.push((p, start));
    }
    let stdout = std::io::stdout();
    loop {
        let mut printed = 0;
        for (p, offset) in &mut next {
            loop {
                let records = log.read(&args.topic, *p, *offset, 1000).await?;
                if records.is_empty() {
                    break;
                }
                let mut out = stdout.lock();
                for r in &records {
                    let value: serde_json::Value = serde_json::from_slice(&r.value)
                        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&r.value).into_owned()));
                    let line = serde_json::json!({
                        "position": r.position().to_string(),
                        "timestamp_ms": r.timestamp_ms,
                        "record": value,
                    });
                    writeln!(out, "{line}")?;
                }
                *offset = records.last().map_or(*offset, |r| r.offset + 1);
                printed += records.len();
            }
        }
        if !args.follow {
            return Ok(());
        }
        if printed == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
