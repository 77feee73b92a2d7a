//! Integration tests of `philo-accounts`: one suite (`suite.rs`), run against every backend.
//!
//! `accounts_test_suite!` expands each listed suite function into one `#[tokio::test]` per
//! backend (`sqlite::name`, `postgres::name`), in the manner of Quickwit's
//! `metastore_test_suite!`.

mod harness;
mod suite;

macro_rules! accounts_test_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::harness::run(crate::harness::Kind::Sqlite, crate::suite::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::harness::run(crate::harness::Kind::Postgres, crate::suite::$name).await;
                }
            )*
        }
    };
}

accounts_test_suite!(
    register_returns_user_and_working_tokens,
    register_validates_input,
    duplicates_are_refused_case_insensitively,
    concurrent_duplicate_registrations_yield_exactly_one_success,
    login_by_username_or_email_case_insensitively,
    wrong_password_and_unknown_login_look_the_same,
    refresh_rotates_within_the_session,
    refresh_reuse_revokes_the_whole_session,
    concurrent_refreshes_of_one_token_cannot_both_succeed,
    expired_tokens_are_refused,
    unknown_refresh_tokens_are_refused,
    logout_revokes_refresh_and_access_tokens,
    other_processes_learn_revocations_on_sync,
    outbox_rows_follow_their_transaction_and_ack_deletes_them,
    admin_is_refused_via_register,
    create_admin_works,
    reconnect_keeps_data_and_migrations_are_idempotent,
    ping_and_unknown_user,
    erase_revokes_everything_frees_the_names_and_writes_account_erased,
);

#[tokio::test]
async fn connect_refuses_a_short_secret_before_touching_the_database() {
    let mut cfg = harness::config("postgres://nobody@127.0.0.1:1/none");
    cfg.jwt_secret = harness::secret("short");
    let clock: std::sync::Arc<dyn philo_accounts::Clock> =
        std::sync::Arc::new(philo_accounts::SystemClock);
    let err = philo_accounts::Accounts::connect(cfg, clock)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config", "{err:?}");
}

#[tokio::test]
async fn connect_to_an_unreachable_database_is_retryable() {
    // Port 1 on loopback: connection refused.
    let cfg = harness::config("postgres://nobody@127.0.0.1:1/none");
    let clock: std::sync::Arc<dyn philo_accounts::Clock> =
        std::sync::Arc::new(philo_accounts::SystemClock);
    let err = philo_accounts::Accounts::connect(cfg, clock)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.code(), "unavailable");
}

#[tokio::test]
async fn sqlite_database_is_in_wal_mode() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let clock: std::sync::Arc<dyn philo_accounts::Clock> =
        std::sync::Arc::new(philo_accounts::SystemClock);
    let accounts = philo_accounts::Accounts::connect(harness::config(&url), clock)
        .await
        .unwrap();
    accounts.ping().await.unwrap();
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    accounts.close().await;
}
