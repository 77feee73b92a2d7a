//! `philo lake …` (run the anonymizer, compact, vacuum, inspect) and `philo admin erase-user`.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;
use uuid::Uuid;

use crate::Common;
use crate::app::{self, open_lake};
use crate::config::PhiloConfig;

#[derive(Subcommand)]
pub enum LakeCommand {
    /// Compact every table's small files now.
    Optimize {
        #[command(flatten)]
        common: Common,
    },
    /// Delete files no recent version refers to.
    Vacuum {
        #[command(flatten)]
        common: Common,
        /// Keep files unreferenced for less than this (default: `[lake] vacuum_retention_hours`).
        #[arg(long)]
        retention_hours: Option<u64>,
    },
    /// Print every table's version, files and log positions as JSON.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Land everything in the log now (the anonymizer until caught up, then the `users`
    /// dimension), print what it did, and exit: for backfills and scheduled runs.
    CatchUp {
        #[command(flatten)]
        common: Common,
    },
}

impl LakeCommand {
    /// The data directory and log flags of the command.
    pub fn common(&self) -> &Common {
        match self {
            LakeCommand::Optimize { common }
            | LakeCommand::Vacuum { common, .. }
            | LakeCommand::Status { common }
            | LakeCommand::CatchUp { common } => common,
        }
    }
}

#[derive(Args)]
pub struct EraseArgs {
    /// The account to erase.
    pub user_id: Uuid,
    /// Seconds to wait for the lake's erasure receipt (0: do not wait).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

/// Runs one `philo lake` maintenance command.
pub async fn run(config: &PhiloConfig, command: LakeCommand) -> Result<()> {
    if let LakeCommand::CatchUp { .. } = command {
        return catch_up(config).await;
    }
    let mut lake = open_lake(config).await?;
    let key_id = config.lake.pseudonym_key_id.clone();
    match command {
        LakeCommand::Optimize { .. } => {
            let started = Instant::now();
            let done = lake
                .optimize(config.lake_job_config().target_file_bytes, &key_id)
                .await?;
            let tables: Vec<_> = done
                .into_iter()
                .map(|(t, removed, added)| json!({"table": t, "files_removed": removed, "files_added": added}))
                .collect();
            println!(
                "{}",
                json!({"optimized": tables, "seconds": started.elapsed().as_secs_f64()})
            );
        }
        LakeCommand::Vacuum {
            retention_hours, ..
        } => {
            let hours = retention_hours.unwrap_or(config.lake.vacuum_retention_hours);
            let done = lake.vacuum(Duration::from_secs(hours * 3600)).await?;
            let tables: Vec<_> = done
                .into_iter()
                .map(|(t, files)| json!({"table": t, "files_deleted": files}))
                .collect();
            println!("{}", json!({"vacuumed": tables, "retention_hours": hours}));
        }
        LakeCommand::CatchUp { .. } => unreachable!("handled above"),
        LakeCommand::Status { .. } => {
            let partitions = config.log.partitions;
            let mut tables = Vec::new();
            for table in lake.all_mut() {
                let files = table
                    .delta()
                    .get_file_uris()
                    .map(|f| f.count())
                    .unwrap_or(0);
                tables.push(json!({
                    "table": table.name(),
                    "version": table.version(),
                    "files": files,
                    "positions": table.positions(partitions).await?,
                }));
            }
            println!(
                "{}",
                json!({"lake": lake.location.url.as_str(), "tables": tables})
            );
        }
    }
    Ok(())
}

async fn catch_up(config: &PhiloConfig) -> Result<()> {
    let started = Instant::now();
    let log = app::open_log(config).await?;
    let location = config.lake_location()?;
    let mut job = philo_lake::job::LakeJob::start(
        log,
        &location,
        app::anonymizer(config)?,
        config.lake_job_config(),
    )
    .await?;
    let (mut actions, mut rows, mut commits, mut erasures) = (0usize, 0usize, 0usize, 0usize);
    loop {
        let r = job.step().await?;
        if r.actions == 0 {
            break;
        }
        actions += r.actions;
        rows += r.rows;
        commits += r.commits;
        erasures += r.erasures.len();
    }
    let users = job.write_users().await?;
    let daily = job.write_daily().await?;
    println!(
        "{}",
        json!({"actions": actions, "rows": rows, "table_commits": commits, "erasures": erasures,
               "users_version": users, "daily_rows": daily, "positions": job.positions(),
               "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// `philo admin erase-user ID`: erases the account (the outbox carries `account.erased` to the
/// log, relayed by the running ingest API), then waits for the anonymizer's receipt.
pub async fn erase_user(config: &PhiloConfig, args: &EraseArgs) -> Result<()> {
    let accounts =
        app::open_accounts(config, std::sync::Arc::new(philo_accounts::SystemClock)).await?;
    let erasure = accounts.erase(args.user_id).await?;
    let Some(action_id) = erasure.action_id else {
        println!(
            "{}",
            json!({"user_id": args.user_id, "status": "already_erased"})
        );
        return Ok(());
    };
    let receipts = philo_lake::job::Receipts::new(&config.lake_location()?)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    loop {
        if let Some(receipt) = receipts.get(action_id).await? {
            println!(
                "{}",
                json!({"user_id": args.user_id, "action_id": action_id, "status": "erased", "receipt": receipt})
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            println!(
                "{}",
                json!({"user_id": args.user_id, "action_id": action_id, "status": "pending",
                       "note": "the account is erased; the lake erases the user when the platform relays the action (receipt under _philo/erasures/)"})
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
