//! The `StateStore` contract suite against the embedded backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use philo_streams::store::contract::ManualClock;
use philo_streams::store::{EmbeddedStore, EmbeddedStoreConfig, ResidentTables, StateStore};

fn scratch() -> PathBuf {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep()
}

fn embedded() -> Arc<dyn StateStore> {
    Arc::new(EmbeddedStore::open(EmbeddedStoreConfig::new(scratch())).unwrap())
}

/// A store on a hand-moved clock, and the function that moves it.
fn embedded_clocked() -> (Arc<dyn StateStore>, impl Fn(Duration)) {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut config = EmbeddedStoreConfig::new(scratch());
    config.now_ms = clock.as_fn();
    let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::open(config).unwrap());
    (store, move |by| clock.advance(by))
}

philo_streams::state_store_contract_suite!(embedded(), embedded_clocked());

/// The same contract with every table resident (in memory, durable through a changelog).
mod resident {
    use super::*;

    fn config() -> EmbeddedStoreConfig {
        let mut config = EmbeddedStoreConfig::new(scratch());
        config.resident_tables = ResidentTables::All;
        // Checkpoints on almost every batch: their writes run under the contract too.
        config.checkpoint_bytes = 256;
        config
    }

    fn embedded() -> Arc<dyn StateStore> {
        Arc::new(EmbeddedStore::open(config()).unwrap())
    }

    fn embedded_clocked() -> (Arc<dyn StateStore>, impl Fn(Duration)) {
        let clock = ManualClock::new(1_700_000_000_000);
        let mut config = config();
        config.now_ms = clock.as_fn();
        let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::open(config).unwrap());
        (store, move |by| clock.advance(by))
    }

    philo_streams::state_store_contract_suite!(embedded(), embedded_clocked());
}
