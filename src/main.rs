//! `philo`: the one binary. `philo up` runs everything embedded in one process; the other
//! subcommands run one role each, or operate on a data directory.

mod app;
mod bench;
mod config;
mod lake_cmd;
mod log_copy;
mod log_replay;
mod log_tail;
mod telemetry;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::config::{Overrides, PhiloConfig};

// glibc's allocator spent ~10% of the server's CPU under ingest load (malloc_consolidate and
// friends in `perf`); mimalloc is the usual cure for many small short-lived allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "philo",
    version,
    about = "Philo: the data core of a social knowledge platform"
)]
struct Cli {
    /// Configuration file (default: ./philo.toml when present).
    #[arg(long, global = true, env = "PHILO_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Default)]
pub(crate) struct Common {
    /// Data directory of the embedded backends.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the product API.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The log: `embedded`, or a Kafka cluster as `kafka://host:port[,host:port…]`.
    #[arg(long)]
    log: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every component in this process with embedded backends.
    Up(Common),
    /// Run the ingest API role alone (no read views: reads answer 503).
    IngestApi(Common),
    /// Run the stream jobs alone, or rebuild their views from the log.
    Streams {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: Option<StreamsCommand>,
    },
    /// Run the anonymizer alone (landing the lake), or maintain the lake.
    Lake {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: Option<lake_cmd::LakeCommand>,
    },
    /// Inspect the action log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Load benchmarks that report ratios against a reference measured in the same run.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum StreamsCommand {
    /// Rebuild views from the log into a scratch store, compare them with the live views, and
    /// replace the live ones. Run it with the streams role stopped.
    Rebuild {
        #[command(flatten)]
        common: Common,
        /// Only this view (graph, feed, content, notifications, failed); repeatable. Default: all.
        #[arg(long = "view")]
        views: Vec<String>,
        /// Compare only; leave the live views as they are.
        #[arg(long)]
        check: bool,
    },
    /// Print per-view digests of a state store (stopped), restricted to the per-user rows of
    /// the partitions it holds or of `--partitions`: equal digests mean equal views. Compares
    /// the instances of a consumer group with one process's views (ADR 009).
    Digest {
        #[command(flatten)]
        common: Common,
        /// The store's directory (default: the configured state directory).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Count only the per-user rows of these partitions, e.g. `0,2,5` (default: the
        /// partitions the store holds).
        #[arg(long, value_delimiter = ',')]
        partitions: Option<Vec<u32>>,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print log records as JSON lines.
    Tail(log_tail::TailArgs),
    /// Copy the log to another backend, keeping partitions and offsets (embedded → Kafka
    /// migration); resumable.
    Copy(log_copy::CopyArgs),
    /// Replay the log through the stream job into a scratch store and print what it did with
    /// each action of a time window (outcome, reason, views changed); live views untouched.
    Replay(log_replay::ReplayArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account (password read from stdin).
    CreateAdmin {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
    },
    /// Erase an account: credentials, sessions, views, and every lake row (prints the lake's
    /// receipt once the anonymizer has carried it out).
    EraseUser {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: lake_cmd::EraseArgs,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

fn load(cli_config: Option<&std::path::Path>, common: &Common) -> Result<PhiloConfig> {
    PhiloConfig::load(
        cli_config,
        &Overrides {
            data_dir: common.data_dir.clone(),
            listen: common.listen,
            log: common.log.clone(),
        },
    )
}

/// The configuration of a `philo log …` command: its data directory and log flags.
fn load_log(
    cli_config: Option<&std::path::Path>,
    data_dir: &Option<PathBuf>,
    log: &Option<String>,
) -> Result<PhiloConfig> {
    load(
        cli_config,
        &Common {
            data_dir: data_dir.clone(),
            listen: None,
            log: log.clone(),
        },
    )
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(common) => {
            let config = load(cli.config.as_deref(), &common)?;
            telemetry::init_logging(&config.telemetry)?;
            let metrics = telemetry::init_metrics()?;
            tracing::info!(data_dir = %config.data_dir.display(), "starting");
            let log = app::open_log(&config).await?;
            let state = app::ingest_state(&config, log.clone(), Some(metrics)).await?;
            // One process with the API: it holds every view the API reads.
            let streams = app::start_streams(&config, log.clone(), false).await?;
            let lake = if config.lake.enabled {
                Some(app::start_lake_beside_api(&config, log).await?)
            } else {
                None
            };
            let mut state = state.with_reads(philo_ingest_api::ReadSide {
                views: streams.views(),
                progress: streams.progress(),
            });
            if config.lake.enabled {
                let receipts =
                    app::LakeReceipts(philo_lake::job::Receipts::new(&config.lake_location()?)?);
                state = state.with_erasures(std::sync::Arc::new(receipts));
            }
            let shutdown = CancellationToken::new();
            app::cancel_on_signals(shutdown.clone());
            let served = app::serve_ingest(&config, state, shutdown).await;
            tokio::task::spawn_blocking(move || streams.stop()).await?;
            if let Some(lake) = lake {
                lake.stop().await?;
            }
            served
        }
        Command::IngestApi(common) => {
            let config = load(cli.config.as_deref(), &common)?;
            telemetry::init_logging(&config.telemetry)?;
            let metrics = telemetry::init_metrics()?;
            tracing::info!(data_dir = %config.data_dir.display(), "starting");
            let log = app::open_log(&config).await?;
            let state = app::ingest_state(&config, log, Some(metrics)).await?;
            let shutdown = CancellationToken::new();
            app::cancel_on_signals(shutdown.clone());
            app::serve_ingest(&config, state, shutdown).await
        }
        Command::Streams {
            common,
            command: None,
        } => {
            let config = load(cli.config.as_deref(), &common)?;
            telemetry::init_logging(&config.telemetry)?;
            let metrics = telemetry::init_metrics()?;
            let log = app::open_log(&config).await?;
            // The streams role shares the work with the other `philo streams` of its consumer
            // group (on Kafka; the embedded log has one consumer process).
            let streams = app::start_streams(&config, log, true).await?;
            let shutdown = CancellationToken::new();
            app::cancel_on_signals(shutdown.clone());
            let served = app::serve_ops(config.streams.listen, metrics, shutdown).await;
            tokio::task::spawn_blocking(move || streams.stop()).await?;
            served
        }
        Command::Streams {
            command:
                Some(StreamsCommand::Rebuild {
                    common,
                    views,
                    check,
                }),
            ..
        } => {
            let config = load(cli.config.as_deref(), &common)?;
            telemetry::init_logging(&config.telemetry)?;
            app::rebuild_streams(&config, &views, check).await
        }
        Command::Streams {
            command:
                Some(StreamsCommand::Digest {
                    common,
                    store,
                    partitions,
                }),
            ..
        } => {
            let config = load(cli.config.as_deref(), &common)?;
            telemetry::init_logging(&config.telemetry)?;
            app::digest_streams(&config, store, partitions).await
        }
        Command::Lake {
            common,
            command: None,
        } => {
            let config = load(cli.config.as_deref(), &common)?;
            telemetry::init_logging(&config.telemetry)?;
            let metrics = telemetry::init_metrics()?;
            let log = app::open_log(&config).await?;
            let lake = app::start_lake(&config, log).await?;
            let shutdown = CancellationToken::new();
            app::cancel_on_signals(shutdown.clone());
            let served = app::serve_ops(config.lake.listen, metrics, shutdown).await;
            lake.stop().await?;
            served
        }
        Command::Lake {
            command: Some(command),
            ..
        } => {
            let config = load(cli.config.as_deref(), command.common())?;
            telemetry::init_logging(&config.telemetry)?;
            lake_cmd::run(&config, command).await
        }
        Command::Log {
            command: LogCommand::Tail(args),
        } => {
            let config = load_log(cli.config.as_deref(), &args.data_dir, &args.log)?;
            log_tail::tail(&config, &args).await
        }
        Command::Log {
            command: LogCommand::Copy(args),
        } => {
            let config = load_log(cli.config.as_deref(), &args.data_dir, &None)?;
            telemetry::init_logging(&config.telemetry)?;
            log_copy::copy(&config, &args).await
        }
        Command::Log {
            command: LogCommand::Replay(args),
        } => {
            let config = load_log(cli.config.as_deref(), &args.data_dir, &args.log)?;
            telemetry::init_logging(&config.telemetry)?;
            log_replay::run(&config, &args).await
        }
        Command::Admin {
            command:
                AdminCommand::CreateAdmin {
                    common,
                    username,
                    email,
                },
        } => {
            let config = load(cli.config.as_deref(), &common)?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let accounts =
                app::open_accounts(&config, std::sync::Arc::new(philo_accounts::SystemClock))
                    .await?;
            let user = accounts
                .create_admin(philo_accounts::NewUser {
                    username,
                    email,
                    password: SecretString::from(
                        password.trim_end_matches(['\n', '\r']).to_owned(),
                    ),
                    role: philo_accounts::Role::Admin,
                })
                .await?;
            println!(
                "{}",
                serde_json::json!({"user_id": user.id, "username": user.username, "role": "admin"})
            );
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::EraseUser { common, args },
        } => {
            let config = load(cli.config.as_deref(), &common)?;
            telemetry::init_logging(&config.telemetry)?;
            lake_cmd::erase_user(&config, &args).await
        }
        Command::Bench { command } => bench::run(command).await,
    }
}
