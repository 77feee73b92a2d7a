//! Composition: builds the backends named by the configuration and runs the roles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use philo_accounts::{Accounts, AccountsConfig, Clock, SystemClock};
use philo_events::log::{
    ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, FAILED_TOPIC, KafkaLog, KafkaLogConfig, Log,
};
use philo_ingest_api::idempotency::FjallIdempotencyStore;
use philo_ingest_api::{AppState, outbox};
use philo_lake::job::LakeJob;
use philo_streams::runtime::{Streams, open_store};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::config::PhiloConfig;

/// Opens the log named by `config.log`, creating the `actions` topic if needed.
pub async fn open_log(config: &PhiloConfig) -> Result<Arc<dyn Log>> {
    let backend = config.log.backend.as_str();
    let log: Arc<dyn Log> = match backend {
        "embedded" => {
            let mut c = EmbeddedLogConfig::new(config.data_dir.join("log"));
            c.durability = config.log.durability;
            c.shards = config.log.shards;
            c.max_age = (config.log.retention_hours > 0)
                .then(|| Duration::from_secs(config.log.retention_hours * 3600));
            c.max_bytes_per_partition = (config.log.retention_bytes_per_partition > 0)
                .then_some(config.log.retention_bytes_per_partition);
            let log = tokio::task::spawn_blocking(move || EmbeddedLog::open(c)).await??;
            Arc::new(log)
        }
        url if url.starts_with("kafka://") => {
            let mut c = KafkaLogConfig::from_url(url)?;
            if !url.contains("replication_factor=") {
                c.replication_factor = config.log.replication_factor.clamp(1, 1000) as i32;
            }
            let log = KafkaLog::connect(c)?;
            log.wait_ready(Duration::from_secs(30))
                .await
                .with_context(|| {
                    format!("reaching the Kafka cluster at {}", log.bootstrap_servers())
                })?;
            tracing::info!(brokers = log.bootstrap_servers(), "log on Kafka");
            Arc::new(log)
        }
        other => bail!(
            "log.backend `{other}` is not available (supported: embedded, kafka://host:port[,host:port…])"
        ),
    };
    for topic in [ACTIONS_TOPIC, FAILED_TOPIC] {
        log.create_topic(topic, config.log.partitions)
            .await
            .with_context(|| format!("creating the `{topic}` topic"))?;
    }
    Ok(log)
}

/// The HS256 key: configured, or generated once into the data directory (embedded use).
fn jwt_secret(config: &PhiloConfig) -> Result<SecretString> {
    generated_secret(config, "jwt.key", config.accounts.jwt_secret.as_ref())
}

/// The lake's pseudonym key: configured, or generated once into the data directory.
pub fn lake_key(config: &PhiloConfig) -> Result<SecretString> {
    generated_secret(config, "lake.key", config.lake.pseudonym_key.as_ref())
}

/// `configured`, or a random key generated once into `<data_dir>/secrets/<file>` (mode 0600).
fn generated_secret(
    config: &PhiloConfig,
    file: &str,
    configured: Option<&SecretString>,
) -> Result<SecretString> {
    if let Some(s) = configured {
        return Ok(s.clone());
    }
    let path = config.data_dir.join("secrets").join(file);
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(s.trim().to_owned()));
    }
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    let mut key = [0u8; 48];
    rand::fill(&mut key);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    match write_private(&path, &encoded) {
        Ok(()) => {}
        // Another process generated it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let s = std::fs::read_to_string(&path)?;
            return Ok(SecretString::from(s.trim().to_owned()));
        }
        Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
    }
    tracing::info!(path = %path.display(), "generated a secret key");
    Ok(SecretString::from(encoded))
}

/// A fresh anonymizer under the configured pseudonym key.
pub fn anonymizer(config: &PhiloConfig) -> Result<philo_lake::anonymize::Anonymizer> {
    let key = lake_key(config)?;
    let pseudo = philo_lake::pseudonym::Pseudonymizer::new(
        &config.lake.pseudonym_key_id,
        key.expose_secret().as_bytes(),
    )?;
    Ok(philo_lake::anonymize::Anonymizer::new(pseudo))
}

/// The lake's erasure receipts for the admin API (reading them opens no table).
#[derive(Debug)]
pub struct LakeReceipts(pub philo_lake::job::Receipts);

impl philo_ingest_api::ErasureReceipts for LakeReceipts {
    fn receipt(
        &self,
        action_id: uuid::Uuid,
    ) -> futures::future::BoxFuture<'_, Result<Option<serde_json::Value>>> {
        Box::pin(async move {
            let receipt = self.0.get(action_id).await?;
            Ok(receipt.map(|r| serde_json::to_value(r).expect("a receipt serializes")))
        })
    }
}

/// Opens the lake (creating missing tables) for maintenance.
pub async fn open_lake(config: &PhiloConfig) -> Result<philo_lake::job::Lake> {
    let location = config.lake_location()?;
    philo_lake::job::Lake::open(&location, &config.lake_job_config().settings)
        .await
        .with_context(|| format!("opening the lake at {}", location.url))
}

/// The anonymizer job, running as a supervised task.
#[derive(Debug)]
pub struct LakeRole {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// The lake's own runtime, when it has one ([`start_lake_beside_api`]).
    runtime: Option<tokio::runtime::Runtime>,
}

impl LakeRole {
    /// Finishes the batch in hand, writes the `users` dimension, and stops.
    pub async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.task.await?;
        if let Some(rt) = self.runtime {
            // Its job has ended; what remains are idle threads (dropping a runtime inside
            // another one's task must not block).
            rt.shutdown_background();
        }
        Ok(())
    }
}

/// Starts the anonymizer in a process that also serves the API (`philo up`): with
/// `lake.nice` > 0 on a runtime of its own — one worker thread and its blocking threads, all at
/// that nice value — so that landing a batch (anonymizing, Parquet encoding, compression: tens
/// of milliseconds of CPU every batch) never holds an API worker and yields the cores to the
/// API's and the social job's threads when both want them. Measured with `philo bench feed`
/// (README, *Feeds*).
pub async fn start_lake_beside_api(config: &PhiloConfig, log: Arc<dyn Log>) -> Result<LakeRole> {
    let nice = config.lake.nice;
    if nice == 0 {
        return start_lake(config, log).await;
    }
    // The blocking pool keeps tokio's default bound: the Delta kernel waits on a blocking
    // thread for listings that object_store runs on another one, so a small pool deadlocks
    // (four threads did, at shutdown, all waiting for listings none was left to run).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("philo-lake")
        .on_thread_start(move || lower_thread_priority(nice))
        .enable_all()
        .build()
        .context("building the lake's runtime")?;
    let config = config.clone();
    let role = runtime
        .spawn(async move { start_lake(&config, log).await })
        .await
        .context("starting the lake")??;
    Ok(LakeRole {
        runtime: Some(runtime),
        ..role
    })
}

/// Raises the calling thread's nice value to `nice` (Linux keeps one per thread). Failing to
/// is harmless (the thread keeps its priority), so it is only logged.
fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(error = %e, nice, "could not lower a lake thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Starts the anonymizer job on `log`, landing the configured lake. The first start must
/// succeed (a wrong URL or key fails here); afterwards a failed job (the store unreachable, a
/// commit refused) is logged and restarted from what the tables record, every 5 s.
pub async fn start_lake(config: &PhiloConfig, log: Arc<dyn Log>) -> Result<LakeRole> {
    let location = config.lake_location()?;
    let job_config = config.lake_job_config();
    let anon = anonymizer(config)?;
    let job = LakeJob::start(log.clone(), &location, anon.fresh(), job_config.clone())
        .await
        .with_context(|| format!("opening the lake at {}", location.url))?;
    tracing::info!(lake = %location.url, "anonymizer started");
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let mut job = Some(job);
        loop {
            let running = match job.take() {
                Some(job) => Ok(job),
                None => {
                    LakeJob::start(log.clone(), &location, anon.fresh(), job_config.clone()).await
                }
            };
            let outcome = match running {
                Ok(job) => job.run(token.clone()).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => return,
                Err(e) => {
                    metrics::counter!("philo_lake_restarts_total").increment(1);
                    tracing::error!(error = %e, "anonymizer failed; restarting in 5 s");
                }
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
    Ok(LakeRole {
        stop,
        task,
        runtime: None,
    })
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

pub async fn open_accounts(config: &PhiloConfig, clock: Arc<dyn Clock>) -> Result<Accounts> {
    std::fs::create_dir_all(&config.data_dir)?;
    let mut c = AccountsConfig::new(config.accounts_url(), jwt_secret(config)?);
    c.access_ttl = Duration::from_secs(config.accounts.access_ttl_secs);
    c.refresh_ttl = Duration::from_secs(config.accounts.refresh_ttl_secs);
    c.max_connections = config.accounts.max_connections;
    Accounts::connect(c, clock)
        .await
        .context("opening the accounts database")
}

fn open_images(config: &PhiloConfig) -> Result<Arc<dyn ObjectStore>> {
    if config.images.store_url.is_empty() {
        let dir = config.data_dir.join("objects");
        std::fs::create_dir_all(&dir)?;
        return Ok(Arc::new(LocalFileSystem::new_with_prefix(dir)?));
    }
    let url = url::Url::parse(&config.images.store_url).context("images.store_url")?;
    let options = config
        .images
        .store_options
        .iter()
        .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()));
    let (store, prefix) = object_store::parse_url_opts(&url, options)
        .with_context(|| format!("opening the image store {url}"))?;
    let store: Arc<dyn ObjectStore> = Arc::from(store);
    if prefix.as_ref().is_empty() {
        Ok(store)
    } else {
        Ok(Arc::new(object_store::prefix::PrefixStore::new(
            store, prefix,
        )))
    }
}

/// Builds the ingest API's state from the configuration.
pub async fn ingest_state(
    config: &PhiloConfig,
    log: Arc<dyn Log>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<AppState> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let accounts = open_accounts(config, clock.clone()).await?;
    let idem_dir = config.data_dir.join("idempotency");
    let ttl = config.ingest.idempotency_ttl();
    let idempotency =
        tokio::task::spawn_blocking(move || FjallIdempotencyStore::open(&idem_dir, ttl)).await??;
    Ok(AppState::new(
        log,
        accounts,
        clock,
        Arc::new(idempotency),
        open_images(config)?,
        config.ingest.clone(),
        metrics,
    ))
}

/// Starts the stream jobs on `log` with the embedded state store under the configured directory.
pub async fn start_streams(
    config: &PhiloConfig,
    log: Arc<dyn Log>,
    join_group: bool,
) -> Result<Streams> {
    let mut sc = config.streams_config();
    sc.join_group = join_group;
    let dir = sc.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || open_store(&dir))
        .await?
        .with_context(|| format!("opening the state store in {}", sc.state_dir.display()))?;
    Ok(Streams::start(log, store, sc).await?)
}

/// Serves the ingest API until `shutdown` fires, then drains in-flight requests.
pub async fn serve_ingest(
    config: &PhiloConfig,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts that listen on port 0 learn the real address here.
    let run_dir = config.data_dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    // Written whole then renamed: a reader never sees an empty or partial address.
    let tmp = run_dir.join("ingest-api.addr.tmp");
    std::fs::write(&tmp, addr.to_string())?;
    std::fs::rename(&tmp, run_dir.join("ingest-api.addr"))?;
    tracing::info!(%addr, "ingest API listening");
    // Open notification streams end on shutdown instead of holding it up.
    let state = state.with_shutdown(shutdown.clone());
    outbox::drain(&state).await;
    let maintenance = tokio::spawn(outbox::run_maintenance(state.clone(), shutdown.clone()));
    let app = philo_ingest_api::router(state)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    shutdown.cancel();
    let _ = maintenance.await;
    tracing::info!("ingest API stopped");
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

/// Serves `/metrics` and `/healthz` for a role without the product API (`philo streams`).
pub async fn serve_ops(
    listen: std::net::SocketAddr,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "ops endpoints listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// `philo streams rebuild`: replays the log into a scratch store next to the live one, compares
/// per-view digests with the live views (brought to the same log positions first), prints a
/// JSON report, and unless `check` replaces the selected live views with the rebuilt ones.
/// `philo streams digest`: per-view digests of a stopped store, over the rows it holds or that
/// `partitions` would hold. Prints `{"partitions": [...], "views": {view: digest}}`.
pub async fn digest_streams(
    config: &PhiloConfig,
    store: Option<PathBuf>,
    partitions: Option<Vec<u32>>,
) -> Result<()> {
    let dir = store.unwrap_or_else(|| config.streams_config().state_dir);
    anyhow::ensure!(
        dir.is_dir(),
        "{} is not a state store directory",
        dir.display()
    );
    let count = config.log.partitions;
    let out = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
        let store = open_store(&dir)?;
        let shards = match partitions {
            Some(p) => philo_streams::shards::Shards::of(count, &p.into_iter().collect()),
            None => philo_streams::job::held_shards(&*store, philo_streams::social::JOB, count)?,
        };
        let views = philo_streams::runtime::view_digests_held(&*store, &[], &shards)?;
        let tables = philo_streams::runtime::table_digests_held(&*store, &shards)?;
        Ok(serde_json::json!({
            "partitions": shards.set(),
            "tables": tables
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<serde_json::Map<_, _>>(),
            "views": views
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<serde_json::Map<_, _>>(),
        }))
    })
    .await??;
    println!("{out}");
    Ok(())
}

pub async fn rebuild_streams(config: &PhiloConfig, views: &[String], check: bool) -> Result<()> {
    let log = open_log(config).await?;
    let sc = config.streams_config();
    let live_dir = sc.state_dir.clone();
    let scratch_dir = sc.state_dir.with_extension("rebuild");
    if scratch_dir.exists() {
        std::fs::remove_dir_all(&scratch_dir)
            .with_context(|| format!("removing {}", scratch_dir.display()))?;
    }
    let (live, scratch) = {
        let scratch_dir = scratch_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            Ok((open_store(&live_dir)?, open_store(&scratch_dir)?))
        })
        .await??
    };
    let report =
        philo_streams::runtime::rebuild(log, live.clone(), scratch.clone(), &sc, views).await?;
    let equal = report.equal();
    let mut replaced_rows = None;
    if !check {
        let views = views.to_vec();
        let (live, scratch) = (live.clone(), scratch.clone());
        replaced_rows = Some(
            tokio::task::spawn_blocking(move || {
                philo_streams::runtime::replace_views(&*live, &*scratch, &views)
            })
            .await??,
        );
    }
    let as_map = |v: &[(String, String)]| {
        v.iter()
            .map(|(k, d)| (k.clone(), serde_json::Value::String(d.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    println!(
        "{}",
        serde_json::json!({
            "equal": equal,
            "live": as_map(&report.live),
            "rebuilt": as_map(&report.rebuilt),
            "records": report.stats.records,
            "applied": report.stats.applied,
            "failed": report.stats.failed,
            "seconds": report.took.as_secs_f64(),
            "replaced_rows": replaced_rows,
        })
    );
    drop((live, scratch));
    let _ = std::fs::remove_dir_all(&scratch_dir);
    if !equal {
        tracing::warn!("rebuilt views differ from the live ones");
    }
    Ok(())
}
