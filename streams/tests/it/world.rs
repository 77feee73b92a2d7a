//! A small world for job tests: a real embedded log and state store in a temp dir, a manual
//! clock, and helpers to act as users and read the views.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use philo_events::log::{ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, Log, Position, Record};
use philo_events::{Action, Envelope};
use philo_streams::job::{Job, JobConfig, StepStats};
use philo_streams::read::SocialViews;
use philo_streams::runtime::store_config;
use philo_streams::social::{SocialConfig, SocialProcessor};
use philo_streams::store::{CkRange, EmbeddedStore, Order, Row, StateStore};
use serde_json::{Value, json};
use uuid::Uuid;

pub struct World {
    pub _dir: tempfile::TempDir,
    pub log: Arc<dyn Log>,
    pub store: Arc<dyn StateStore>,
    pub job: Job<SocialProcessor>,
    pub views: SocialViews,
    pub now: DateTime<Utc>,
}

pub fn record(env: &Envelope) -> Record {
    Record::new(
        bytes::Bytes::copy_from_slice(env.actor_id.as_bytes()),
        env.to_json(),
        env.received_at.timestamp_millis(),
    )
}

/// A `post.created` action titled `title`.
pub fn post(title: &str) -> Value {
    json!({"type": "post.created", "title": title, "body": "body of the post", "tags": []})
}

pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

impl World {
    pub async fn new() -> Self {
        Self::with(SocialConfig::default(), JobConfig::default(), 4).await
    }

    pub async fn with(config: SocialConfig, job: JobConfig, partitions: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap();
        let log: Arc<dyn Log> = Arc::new(log);
        log.create_topic(ACTIONS_TOPIC, partitions).await.unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(EmbeddedStore::open(store_config(&dir.path().join("state"))).unwrap());
        let mut job = Job::open(
            SocialProcessor::new(config.clone()),
            log.clone(),
            store.clone(),
            job,
        )
        .await
        .unwrap();
        let views = SocialViews::new(store.clone(), config.clone());
        job.on_commit(views.item_cache());
        Self {
            _dir: dir,
            log,
            store,
            job,
            views,
            now: start_time(),
        }
    }

    /// Appends `action` (JSON) by `actor`, one second after the previous one. Returns its id.
    pub async fn act(&mut self, actor: Uuid, action: Value) -> Uuid {
        self.act_at(actor, action).await.0
    }

    pub async fn act_at(&mut self, actor: Uuid, action: Value) -> (Uuid, Position) {
        self.now += Duration::seconds(1);
        let action: Action = serde_json::from_value(action).expect("test action decodes");
        action.validate(self.now).expect("test action is valid");
        let env = Envelope::new(actor, action, self.now);
        let pos = self
            .log
            .append(ACTIONS_TOPIC, vec![record(&env)])
            .await
            .unwrap();
        (env.id, pos[0])
    }

    /// Registers a user named `name`.
    pub async fn user(&mut self, name: &str) -> Uuid {
        let id = Uuid::now_v7();
        self.act(
            id,
            json!({"type": "user.registered", "username": name, "role": "user"}),
        )
        .await;
        id
    }

    pub async fn sync(&mut self) -> StepStats {
        self.job.catch_up().await.unwrap()
    }

    /// Item ids of `user`'s whole feed, newest first.
    pub fn feed(&self, user: Uuid) -> Vec<Uuid> {
        self.feed_pages(user, 100).concat()
    }

    /// Item ids of each page of `user`'s feed read `limit` at a time, following the cursor.
    pub fn feed_pages(&self, user: Uuid, limit: usize) -> Vec<Vec<Uuid>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.views.feed(&user, cursor.as_deref(), limit).unwrap();
            pages.push(page.items.iter().map(|i| i.id).collect());
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return pages,
            }
        }
    }

    /// The rows stored in `user`'s feed table (what the store holds, before any read-time
    /// merging or filtering).
    pub fn feed_rows(&self, user: Uuid) -> Vec<Row> {
        self.store
            .scan(
                philo_streams::social::tables::FEED,
                user.as_bytes(),
                &CkRange::all(),
                Order::Asc,
                usize::MAX,
            )
            .unwrap()
    }

    /// Reasons of this job's failed actions, by action id.
    pub fn failed(&self) -> Vec<(Uuid, String)> {
        let mut out = Vec::new();
        self.store
            .for_each(philo_streams::job::FAILED_TABLE, &mut |_, _, v| {
                let f: philo_streams::job::FailedAction = serde_json::from_slice(v).unwrap();
                out.push((f.action_id, f.reason));
                true
            })
            .unwrap();
        out
    }

    pub fn reason_of(&self, id: Uuid) -> Option<String> {
        self.failed()
            .into_iter()
            .find(|(a, _)| *a == id)
            .map(|(_, r)| r)
    }
}
