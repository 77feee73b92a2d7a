//! A real `AppState` in a temporary directory (embedded log, SQLite accounts, fjall idempotency
//! store, local object store), built the way the binary's `ingest_state` builds it, optionally
//! with a read side (the social stream job on an embedded state store, as `philo up` runs it),
//! and helpers to drive the router with `oneshot` and to read back what the log holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use object_store::local::LocalFileSystem;
use philo_accounts::{Accounts, AccountsConfig, Clock, SystemClock};
use philo_events::Envelope;
use philo_events::log::{ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, Log, Position};
use philo_ingest_api::idempotency::FjallIdempotencyStore;
use philo_ingest_api::{AppState, IngestConfig, ReadSide};
use philo_streams::job::{Job, JobConfig};
use philo_streams::read::SocialViews;
use philo_streams::runtime::{Streams, StreamsConfig, open_store};
use philo_streams::social::{SocialConfig, SocialProcessor};
use philo_streams::store::StateStore;
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

/// The HS256 key of every test app (≥ 32 bytes).
pub const SECRET: &str = "philo-ingest-it-secret-0123456789abcdef";
/// A password every test user registers with.
pub const PASSWORD: &str = "correct horse battery staple";
/// Partitions of the `actions` topic.
pub const PARTITIONS: u32 = 4;

/// The accounts database URL of a SQLite file in `dir`.
pub fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.join(file).display())
}

pub struct TestApp {
    /// The stream job behind the read endpoints, when the app has one. Declared first so it
    /// stops before the directory it writes in is removed.
    _streams: Option<Streams>,
    pub dir: TempDir,
    pub state: AppState,
    /// The same log the app appends to.
    pub log: Arc<dyn Log>,
    /// The app's shutdown token (attached with `AppState::with_shutdown`); [`TestApp::serve`]
    /// shuts its listener down gracefully on it.
    pub shutdown: CancellationToken,
    router: Router,
}

/// Which read side a test app has.
enum Reads {
    /// None: reads answer 503 `views_unavailable`.
    None,
    /// The social job, running.
    Running,
    /// A social job that never steps.
    Stalled,
}

/// Tokens of a registered (or logged-in) user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: Uuid,
    pub access: String,
    pub refresh: String,
}

impl Session {
    fn from_json(v: &Value) -> Self {
        Self {
            user_id: v["user_id"].as_str().unwrap().parse().unwrap(),
            access: v["access_token"].as_str().unwrap().to_owned(),
            refresh: v["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON (panics with the body text when it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the error body's `code`; returns the body.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> Value {
        let body = self.json();
        assert_eq!(
            (self.status, body["code"].as_str()),
            (status, Some(code)),
            "body: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error has a message: {body}"
        );
        body
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }
}

/// One record read back from the `actions` topic.
#[derive(Debug, Clone)]
pub struct Logged {
    pub position: Position,
    pub key: Bytes,
    pub envelope: Envelope,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(IngestConfig::default()).await
    }

    pub async fn with_config(config: IngestConfig) -> Self {
        Self::build(config, Reads::None).await
    }

    /// An app whose read endpoints answer from a running social stream job.
    pub async fn with_reads() -> Self {
        Self::with_reads_config(IngestConfig::default()).await
    }

    pub async fn with_reads_config(config: IngestConfig) -> Self {
        Self::build(config, Reads::Running).await
    }

    /// An app with a read side whose job never runs: the views stay empty and no position is
    /// ever reached (for `not_caught_up`).
    pub async fn with_stalled_reads(config: IngestConfig) -> Self {
        Self::build(config, Reads::Stalled).await
    }

    /// An app appending to `log` (a Kafka log, say) instead of an embedded one.
    pub async fn with_log(log: Arc<dyn Log>) -> Self {
        Self::build_on(IngestConfig::default(), Reads::None, Some(log)).await
    }

    async fn build(config: IngestConfig, reads: Reads) -> Self {
        Self::build_on(config, reads, None).await
    }

    async fn build_on(config: IngestConfig, reads: Reads, log: Option<Arc<dyn Log>>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);

        let log = match log {
            Some(log) => log,
            None => {
                Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap())
            }
        };
        log.create_topic(ACTIONS_TOPIC, PARTITIONS).await.unwrap();

        let accounts = Accounts::connect(
            AccountsConfig::new(
                sqlite_url(dir.path(), "accounts.db"),
                SecretString::from(SECRET),
            ),
            clock.clone(),
        )
        .await
        .unwrap();
        let idempotency =
            FjallIdempotencyStore::open(&dir.path().join("idempotency"), config.idempotency_ttl())
                .unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let images = LocalFileSystem::new_with_prefix(&objects).unwrap();

        let state = AppState::new(
            log.clone(),
            accounts,
            clock,
            Arc::new(idempotency),
            Arc::new(images),
            config,
            None,
        );
        let shutdown = CancellationToken::new();
        let state = state.with_shutdown(shutdown.clone());
        let state_dir = dir.path().join("state");
        let (state, streams) = match reads {
            Reads::None => (state, None),
            Reads::Running => {
                let store = open_store(&state_dir).unwrap();
                let streams = Streams::start(log.clone(), store, StreamsConfig::new(&state_dir))
                    .await
                    .unwrap();
                let reads = ReadSide {
                    views: streams.views(),
                    progress: streams.progress(),
                };
                (state.with_reads(reads), Some(streams))
            }
            Reads::Stalled => {
                let store: Arc<dyn StateStore> = open_store(&state_dir).unwrap();
                let job = Job::open(
                    SocialProcessor::new(SocialConfig::default()),
                    log.clone(),
                    store.clone(),
                    JobConfig::default(),
                )
                .await
                .unwrap();
                let reads = ReadSide {
                    views: SocialViews::new(store, SocialConfig::default()),
                    progress: job.progress(),
                };
                (state.with_reads(reads), None)
            }
        };
        let router = philo_ingest_api::router(state.clone());
        Self {
            _streams: streams,
            dir,
            state,
            log,
            shutdown,
            router,
        }
    }

    /// Serves the app on a real listener (127.0.0.1, port 0) until [`TestApp::shutdown`] is
    /// cancelled; returns its base URL and the server task.
    pub async fn serve(&self) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = self
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let shutdown = self.shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        });
        (format!("http://{addr}"), server)
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.router().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A request with optional bearer token, content type and extra headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::GET, path, token, None, &[], Body::empty())
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::DELETE, path, token, None, &[], Body::empty())
            .await
    }

    /// POSTs raw bytes as `application/json`.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        self.call(
            Method::POST,
            path,
            token,
            Some("application/json"),
            extra,
            body,
        )
        .await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.post_raw(path, token, &[], serde_json::to_vec(body).unwrap())
            .await
    }

    pub async fn post_action(&self, token: &str, action: &Value) -> Resp {
        self.post_json("/v1/actions", Some(token), action).await
    }

    /// Registers `username` (email `<username>@example.org`) and returns its tokens.
    pub async fn register(&self, username: &str) -> Session {
        let res = self
            .post_json(
                "/v1/auth/register",
                None,
                &json!({
                    "username": username,
                    "email": format!("{username}@example.org"),
                    "password": PASSWORD,
                }),
            )
            .await;
        Session::from_json(&res.expect(StatusCode::CREATED))
    }

    /// Creates admin `username` (as the CLI does: admins never register) and logs it in.
    pub async fn admin(&self, username: &str) -> Session {
        self.state
            .accounts
            .create_admin(philo_accounts::NewUser {
                username: username.into(),
                email: format!("{username}@example.org"),
                password: secrecy::SecretString::from(PASSWORD),
                role: philo_accounts::Role::User,
            })
            .await
            .unwrap();
        self.login(username).await
    }

    pub async fn login(&self, login: &str) -> Session {
        let res = self
            .post_json(
                "/v1/auth/login",
                None,
                &json!({"login": login, "password": PASSWORD}),
            )
            .await;
        Session::from_json(&res.expect(StatusCode::OK))
    }

    /// Every record of the `actions` topic, partition by partition, in offset order.
    pub async fn records(&self) -> Vec<Logged> {
        let mut out = Vec::new();
        for p in 0..self.log.partitions(ACTIONS_TOPIC).await.unwrap() {
            let wm = self.log.watermarks(ACTIONS_TOPIC, p).await.unwrap();
            let mut next = wm.low;
            while next < wm.high {
                let batch = self.log.read(ACTIONS_TOPIC, p, next, 1000).await.unwrap();
                assert!(!batch.is_empty(), "read below the high watermark is empty");
                for r in batch {
                    next = r.offset + 1;
                    let envelope = Envelope::from_json(&r.value).expect("log holds envelopes");
                    out.push(Logged {
                        position: r.position(),
                        key: r.key,
                        envelope,
                    });
                }
            }
        }
        out
    }

    /// The records whose action has kind `kind`.
    pub async fn records_of_kind(&self, kind: &str) -> Vec<Logged> {
        let mut all = self.records().await;
        all.retain(|r| r.envelope.action.kind().as_str() == kind);
        all
    }

    /// The record at a position token as handed to clients.
    pub async fn record_at(&self, token: &str) -> Logged {
        let pos: Position = token.parse().expect("position token parses");
        let recs = self
            .log
            .read(ACTIONS_TOPIC, pos.partition, pos.offset, 1)
            .await
            .unwrap();
        let r = recs.into_iter().next().expect("a record at the position");
        assert_eq!(r.position(), pos);
        Logged {
            position: pos,
            envelope: Envelope::from_json(&r.value).unwrap(),
            key: r.key,
        }
    }
}

/// The envelope JSON of a record, for comparing actions as the client sent them.
pub fn action_json(env: &Envelope) -> Value {
    serde_json::to_value(&env.action).unwrap()
}

/// A valid `post.created` action with a distinguishing title.
pub fn post(title: &str) -> Value {
    json!({"type": "post.created", "title": title, "body": "some body text", "tags": ["it"]})
}
