//! `philo log replay`: replays the log through the stream job into a scratch state store and
//! prints, for every action received in a time window, what the job made of it — applied,
//! failed (with its reason) or duplicate — and which views it changed. The live views are left
//! alone; `--into DIR` keeps the replayed store, which then holds the views as they were at
//! `--to`. Works on both backends.
//!
//! Operators use it to answer "why is X (not) in this feed?"; ML engineers to get views as of
//! a cutoff time without later actions leaking in.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, Log};
use philo_streams::job::Observed;
use philo_streams::runtime::{VIEWS, open_store, replay, view_of};
use philo_streams::store::StateStore;

use crate::app::open_log;
use crate::config::PhiloConfig;

#[derive(Args)]
pub struct ReplayArgs {
    /// Data directory (embedded log; configuration of the job).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The log: `embedded` or `kafka://host:port[,…]`.
    #[arg(long)]
    pub log: Option<String>,
    /// Print actions received at or after this time (RFC 3339). Default: the log's start.
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// Replay only actions received before this time (RFC 3339). Default: the log's end.
    #[arg(long)]
    pub to: Option<DateTime<Utc>>,
    /// Print only actions that changed this view (graph, feed, content, notifications,
    /// engagement, failed); repeatable.
    #[arg(long = "view")]
    pub views: Vec<String>,
    /// Keep the replayed state store in this (new or empty) directory.
    #[arg(long)]
    pub into: Option<PathBuf>,
}

pub async fn run(config: &PhiloConfig, args: &ReplayArgs) -> Result<()> {
    for v in &args.views {
        if !VIEWS.iter().any(|(n, _)| n == v) {
            bail!(
                "unknown view `{v}` (known: {})",
                VIEWS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            );
        }
    }
    if let (Some(from), Some(to)) = (args.from, args.to) {
        anyhow::ensure!(from < to, "--from must be before --to");
    }
    let log = open_log(config).await?;
    let target = targets(&*log, args.to).await?;

    let (dir, _temp) = match &args.into {
        Some(d) => {
            anyhow::ensure!(
                !d.exists() || std::fs::read_dir(d)?.next().is_none(),
                "--into {} must be a new or empty directory",
                d.display()
            );
            (d.clone(), None)
        }
        None => {
            let t = tempfile::tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let store = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || open_store(&dir)).await??
    };

    let printed = Arc::new(Mutex::new(0u64));
    let observer = {
        let (from, views, printed) = (args.from, args.views.clone(), printed.clone());
        Box::new(move |o: Observed<'_>| {
            if from.is_some_and(|f| o.envelope.received_at < f) {
                return;
            }
            let mut changed: Vec<&str> = o.tables.iter().filter_map(|t| view_of(t)).collect();
            changed.dedup();
            if !views.is_empty() && !changed.iter().any(|c| views.iter().any(|v| v == c)) {
                return;
            }
            let line = serde_json::json!({
                "position": o.position.to_string(),
                "id": o.envelope.id,
                "kind": o.envelope.action.kind().as_str(),
                "actor_id": o.envelope.actor_id,
                "received_at": o.envelope.received_at,
                "outcome": o.outcome,
                "reason": o.reason,
                "views": changed,
            });
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) ends the output, not the replay.
            let _ = writeln!(out, "{line}");
            *printed.lock().expect("counter") += 1;
        })
    };
    let stats = replay(
        log,
        store.clone(),
        &config.streams_config(),
        &target,
        observer,
    )
    .await?;
    store.sync()?;
    eprintln!(
        "{}",
        serde_json::json!({
            "replayed": stats.records, "applied": stats.applied, "failed": stats.failed,
            "duplicates": stats.duplicates, "undecodable": stats.undecodable,
            "printed": *printed.lock().expect("counter"),
            "positions": target,
            "into": args.into.as_ref().map(|d| d.display().to_string()),
        })
    );
    Ok(())
}

/// Per partition, the first offset whose action was received at or after `to` (the high
/// watermark when `to` is unset or later than everything). Replays need the log from offset 0.
async fn targets(log: &dyn Log, to: Option<DateTime<Utc>>) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for p in 0..log.partitions(ACTIONS_TOPIC).await? {
        let wm = log.watermarks(ACTIONS_TOPIC, p).await?;
        if wm.low > 0 {
            bail!(
                "partition {p} starts at offset {} (retention): a replay needs the whole log",
                wm.low
            );
        }
        let Some(to) = to else {
            out.push(wm.high);
            continue;
        };
        // Receive times grow along a partition (one server clock per partition's appends;
        // a late record only makes the cut conservative), so the first one at or after `to`
        // ends the replay of this partition.
        let mut offset = 0;
        let end = 'scan: loop {
            if offset >= wm.high {
                break wm.high;
            }
            let records = log.read(ACTIONS_TOPIC, p, offset, 1000).await?;
            if records.is_empty() {
                break wm.high;
            }
            for r in &records {
                let env = Envelope::from_json(&r.value)
                    .with_context(|| format!("record {}:{} is not an action", p, r.offset))?;
                if env.received_at >= to {
                    break 'scan r.offset;
                }
            }
            offset = records.last().map_or(wm.high, |r| r.offset + 1);
        };
        out.push(end);
    }
    Ok(out)
}
