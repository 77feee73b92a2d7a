//! `philo bench …`: end-to-end load over loopback, reported as ratios against a reference
//! measured in the same run (never as absolute pass/fail timings).

mod ingest;
mod server;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Single-action and batch ingest against a fresh `philo up` child process.
    Ingest(ingest::IngestArgs),
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args).await,
    }
}
