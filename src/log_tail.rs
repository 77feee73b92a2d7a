//! `philo log tail`: log records as JSON lines, optionally following new ones.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use philo_events::log::{ACTIONS_TOPIC, Position};
use philo_ingest_api::routes::admin::LogRecord;

use crate::app::open_log;
use crate::config::PhiloConfig;

#[derive(Args)]
pub struct TailArgs {
    /// Data directory of the embedded log.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The log to read: `embedded` (under the data directory) or `kafka://host:port`.
    #[arg(long)]
    pub log: Option<String>,
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
    /// Topic to read (direct mode).
    #[arg(long, default_value = ACTIONS_TOPIC)]
    pub topic: String,
    /// Read through a running server's admin API instead of opening the data directory
    /// (which a running embedded server holds locked), e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "PHILO_URL")]
    pub url: Option<String>,
    /// Admin access token for `--url`.
    #[arg(long, env = "PHILO_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where records come from: the log itself, or a server's `/v1/admin/log`.
enum Source {
    Direct(std::sync::Arc<dyn philo_events::log::Log>, String),
    Http {
        client: reqwest::Client,
        url: String,
        token: String,
    },
}

struct Page {
    lines: Vec<serde_json::Value>,
    next: u64,
}

impl Source {
    async fn partitions(&self) -> Result<Vec<(u32, u64)>> {
        match self {
            Source::Direct(log, topic) => {
                let mut out = Vec::new();
                for p in 0..log.partitions(topic).await? {
                    out.push((p, log.watermarks(topic, p).await?.low));
                }
                Ok(out)
            }
            Source::Http { client, url, token } => {
                let info: serde_json::Value = check(
                    client
                        .get(format!("{url}/v1/admin/log"))
                        .bearer_auth(token)
                        .send()
                        .await?,
                )
                .await?;
                let parts = info["partitions"].as_array().context("partitions")?;
                Ok(parts
                    .iter()
                    .filter_map(|p| Some((p["partition"].as_u64()? as u32, p["low"].as_u64()?)))
                    .collect())
            }
        }
    }

    async fn read(&self, partition: u32, offset: u64) -> Result<Page> {
        match self {
            Source::Direct(log, topic) => {
                let records = log.read(topic, partition, offset, 1000).await?;
                let next = records.last().map_or(offset, |r| r.offset + 1);
                let lines = records
                    .iter()
                    .map(|r| serde_json::to_value(LogRecord::from(r)).expect("plain JSON"))
                    .collect();
                Ok(Page { lines, next })
            }
            Source::Http { client, url, token } => {
                let page: serde_json::Value = check(
                    client
                        .get(format!(
                            "{url}/v1/admin/log/{partition}?from={offset}&limit=1000"
                        ))
                        .bearer_auth(token)
                        .send()
                        .await?,
                )
                .await?;
                Ok(Page {
                    lines: page["records"].as_array().cloned().unwrap_or_default(),
                    next: page["next"].as_u64().unwrap_or(offset),
                })
            }
        }
    }
}

async fn check(response: reqwest::Response) -> Result<serde_json::Value> {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "server answered {status}: {body}");
    Ok(body)
}

pub async fn tail(config: &PhiloConfig, args: &TailArgs) -> Result<()> {
    let source = match &args.url {
        Some(url) => Source::Http {
            client: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            token: args
                .token
                .clone()
                .context("--url needs an admin token (--token or PHILO_ADMIN_TOKEN)")?,
        },
        None => {
            let log = open_log(config).await.context(
                "opening the log (a running `philo up` holds it: use --url with an admin token instead)",
            )?;
            Source::Direct(log, args.topic.clone())
        }
    };
    let mut next: Vec<(u32, u64)> = source
        .partitions()
        .await?
        .into_iter()
        .filter(|(p, _)| args.partition.is_none_or(|only| only == *p))
        .filter(|(p, _)| args.partition.is_some() || args.from.is_none_or(|f| f.partition == *p))
        .map(|(p, low)| match args.from {
            Some(from) if from.partition == p => (p, from.offset.max(low)),
            _ => (p, low),
        })
        .collect();
    let stdout = std::io::stdout();
    loop {
        let mut printed = 0;
        for (p, offset) in &mut next {
            loop {
                let page = source
                    .read(*p, *offset)
                    .await
                    .with_context(|| format!("reading partition {p}"))?;
                if page.lines.is_empty() {
                    break;
                }
                let mut out = stdout.lock();
                for line in &page.lines {
                    writeln!(out, "{line}")?;
                }
                printed += page.lines.len();
                *offset = page.next;
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
