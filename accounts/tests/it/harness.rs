//! Test databases for both backends and the fixture every suite test receives.
//!
//! SQLite: a fresh file in a temporary directory. PostgreSQL: a fresh database
//! `philo_test_<uuid>` on the server at `PHILO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards (best effort, also when the
//! test fails). An unreachable server fails the test; outside CI, `PHILO_SKIP_POSTGRES=1` turns
//! that into a loud skip.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use philo_accounts::{
    Accounts, AccountsConfig, Clock, ManualClock, NewUser, Role, TokenPair, User,
};
use secrecy::SecretString;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// What a suite test gets: a connected service on a fresh database and the clock it runs on.
#[derive(Clone)]
pub struct Fixture {
    pub accounts: Accounts,
    pub clock: Arc<ManualClock>,
    pub url: String,
}

impl Fixture {
    pub fn config(&self) -> AccountsConfig {
        config(&self.url)
    }

    /// A second, independent service on the same database (another process, as far as the
    /// revocation cache is concerned), sharing the clock.
    pub async fn another_process(&self) -> Accounts {
        let clock: Arc<dyn Clock> = self.clock.clone();
        Accounts::connect(self.config(), clock)
            .await
            .expect("second connect")
    }

    pub async fn register(&self, username: &str, email: &str, password: &str) -> (User, TokenPair) {
        self.accounts
            .register(new_user(username, email, password, Role::User))
            .await
            .unwrap_or_else(|e| panic!("register {username}: {e:?}"))
    }
}

pub fn config(url: &str) -> AccountsConfig {
    let mut cfg = AccountsConfig::new(url, SecretString::from(SECRET));
    cfg.max_connections = 5;
    cfg
}

pub fn new_user(username: &str, email: &str, password: &str, role: Role) -> NewUser {
    NewUser {
        username: username.to_owned(),
        email: email.to_owned(),
        password: SecretString::from(password),
        role,
    }
}

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s)
}

/// Runs `test` against a fresh database of `kind`, then removes the database, then re-raises a
/// failure of `test`.
pub async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = TestDb::create(kind).await else {
        return;
    };
    let clock = Arc::new(ManualClock::starting_now());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let accounts = Accounts::connect(config(&db.url), dyn_clock)
        .await
        .unwrap_or_else(|e| panic!("connect to {kind:?} test database: {e:?}"));
    let fixture = Fixture {
        accounts: accounts.clone(),
        clock,
        url: db.url.clone(),
    };
    let outcome = tokio::spawn(test(fixture)).await;
    accounts.close().await;
    db.remove().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

struct TestDb {
    url: String,
    /// SQLite: keeps the directory alive. PostgreSQL: the admin URL and the database name.
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    async fn create(kind: Kind) -> Option<TestDb> {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("accounts.db");
                Some(TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Kind::Postgres => {
                let admin_url = std::env::var("PHILO_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                let mut admin = postgres_admin(&admin_url).await?;
                let name = format!("philo_test_{}", Uuid::new_v4().simple());
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                let _ = admin.close().await;
                Some(TestDb {
                    url: with_database(&admin_url, &name),
                    _dir: None,
                    postgres: Some((admin_url, name)),
                })
            }
        }
    }

    async fn remove(self) {
        if let Some((admin_url, name)) = &self.postgres {
            match PgConnection::connect(admin_url).await {
                Ok(mut admin) => {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(e) = admin.execute(drop.as_str()).await {
                        eprintln!("note: could not drop test database {name}: {e}");
                    }
                    let _ = admin.close().await;
                }
                Err(e) => eprintln!("note: could not drop test database {name}: {e}"),
            }
        }
    }
}

/// Connects to the PostgreSQL test server, or decides what an unreachable one means:
/// a failure in CI, a failure by default, a loud skip with `PHILO_SKIP_POSTGRES=1`.
async fn postgres_admin(admin_url: &str) -> Option<PgConnection> {
    let attempt = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(admin_url));
    let error = match attempt.await {
        Ok(Ok(conn)) => return Some(conn),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out after 10 s".to_owned(),
    };
    let skip = std::env::var("PHILO_SKIP_POSTGRES").is_ok_and(|v| v == "1");
    if std::env::var_os("CI").is_some() {
        panic!(
            "PostgreSQL is unreachable at {admin_url} ({error}) and CI is set: the PostgreSQL \
             backend must be tested in CI. Start it or set PHILO_TEST_POSTGRES_URL."
        );
    }
    if skip {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !! SKIPPING a PostgreSQL accounts test: {admin_url} unreachable ({error}).\n\
             !! PHILO_SKIP_POSTGRES=1 is set, so this counts as passed. It is NOT tested.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return None;
    }
    panic!(
        "PostgreSQL is unreachable at {admin_url} ({error}). Start PostgreSQL, point \
         PHILO_TEST_POSTGRES_URL at one, or set PHILO_SKIP_POSTGRES=1 to skip these tests locally."
    );
}

/// `admin_url` with its database path replaced by `name` (query string kept).
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

#[test]
fn with_database_replaces_the_path_only() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
