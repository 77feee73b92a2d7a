//! What every handler can reach: the log, accounts, stores, limits. Passed in explicitly.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use object_store::ObjectStore;
use philo_accounts::{Accounts, Clock};
use philo_events::log::Log;

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

/// What [`AppState`] shares.
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
        }))
    }
}
