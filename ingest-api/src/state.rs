//! What every handler can reach: the log, accounts, stores, limits. Passed in explicitly.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;
use object_store::ObjectStore;
use philo_accounts::{Accounts, Clock};
use philo_events::log::Log;
use philo_streams::job::Progress;
use philo_streams::read::SocialViews;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::IngestConfig;
use crate::idempotency::IdempotencyStore;
use crate::ratelimit::RateLimits;

/// Shared application state: one `Arc`, so the per-request clones axum makes cost one atomic
/// increment instead of one per field (that showed up in profiles under load).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares. Cloning it clones handles (the log, pools, locks are shared).
#[derive(Clone)]
pub struct Shared {
    pub log: Arc<dyn Log>,
    pub accounts: Accounts,
    pub clock: Arc<dyn Clock>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub images: Arc<dyn ObjectStore>,
    pub limits: Arc<RateLimits>,
    pub config: Arc<IngestConfig>,
    /// Renders `/metrics`; `None` when no recorder is installed (some tests).
    pub metrics: Option<PrometheusHandle>,
    pub(crate) outbox_lock: Arc<tokio::sync::Mutex<()>>,
    /// The views the read endpoints answer from; `None` when this process runs no stream jobs
    /// (the `philo ingest-api` role alone), and every read answers 503 `views_unavailable`.
    pub reads: Option<ReadSide>,
    /// Cancelled when the server shuts down: long-lived responses (the notification stream)
    /// end on it, so a graceful shutdown does not wait for clients to hang up. Never cancelled
    /// unless attached with [`AppState::with_shutdown`].
    pub shutdown: CancellationToken,
    /// Changes whenever the read side's job has applied more of the log (its idle polls do not
    /// count); what open notification streams wait on. Started by the first stream.
    pub(crate) applied: OnceLock<watch::Receiver<()>>,
    /// Where erasure receipts are looked up (the lake); `None` when this process has no lake,
    /// and `GET /v1/admin/erasures/{id}` answers 503.
    pub erasures: Option<Arc<dyn ErasureReceipts>>,
}

/// The lake's erasure receipts, as the admin API reads them. Implemented by the binary over
/// `philo-lake`, so this crate stays free of the Delta stack.
pub trait ErasureReceipts: Send + Sync {
    /// The receipt of the erasure carried by action `action_id`, once the lake completed it.
    fn receipt(
        &self,
        action_id: uuid::Uuid,
    ) -> futures::future::BoxFuture<'_, anyhow::Result<Option<serde_json::Value>>>;
}

/// What the read endpoints need from the stream jobs: their views and how far they have applied
/// the log (for `after=<position>`).
#[derive(Clone)]
pub struct ReadSide {
    /// The social views (feed, graph, content) the reads answer from.
    pub views: SocialViews,
    /// How far the social job has applied the log; reads wait on it for `after=`.
    pub progress: Arc<Progress>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        log: Arc<dyn Log>,
        accounts: Accounts,
        clock: Arc<dyn Clock>,
        idempotency: Arc<dyn IdempotencyStore>,
        images: Arc<dyn ObjectStore>,
        config: IngestConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        Self(Arc::new(Shared {
            limits: Arc::new(RateLimits::new(&config)),
            log,
            accounts,
            clock,
            idempotency,
            images,
            config: Arc::new(config),
            metrics,
            outbox_lock: Arc::new(tokio::sync::Mutex::new(())),
            reads: None,
            shutdown: CancellationToken::new(),
            applied: OnceLock::new(),
            erasures: None,
        }))
    }

    /// Attaches the read side. Call it before the state is shared (before building the router):
    /// if it was cloned already, the shared parts are copied (the handles in them still point
    /// to the same log, pools and locks) and earlier clones keep no read side.
    pub fn with_reads(self, reads: ReadSide) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.reads = Some(reads);
        shared.applied = OnceLock::new();
        Self(Arc::new(shared))
    }

    /// Attaches the lake's erasure receipts. Call it before the state is shared, as
    /// [`AppState::with_reads`].
    pub fn with_erasures(self, erasures: Arc<dyn ErasureReceipts>) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.erasures = Some(erasures);
        Self(Arc::new(shared))
    }

    /// Attaches the server's shutdown token: open notification streams end when it is
    /// cancelled, so `axum::serve(..).with_graceful_shutdown(..)` on the same token finishes
    /// instead of waiting for every client to disconnect. Call it before the state is shared,
    /// as [`AppState::with_reads`].
    pub fn with_shutdown(self, shutdown: CancellationToken) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.shutdown = shutdown;
        shared.applied = OnceLock::new();
        Self(Arc::new(shared))
    }
}
