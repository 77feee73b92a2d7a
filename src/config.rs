//! Layered configuration: built-in defaults → `philo.toml` → `PHILO__SECTION__KEY` environment
//! → command-line flags. Unknown keys are an error; secrets never print.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use philo_events::log::Durability;
use philo_ingest_api::IngestConfig;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhiloConfig {
    /// Everything embedded lives under here.
    pub data_dir: PathBuf,
    /// Product API address.
    pub listen: SocketAddr,
    pub log: LogConfig,
    pub accounts: AccountsSection,
    pub images: ImagesSection,
    pub ingest: IngestConfig,
    pub streams: StreamsSection,
    pub lake: LakeSection,
    pub telemetry: TelemetryConfig,
}

impl Default for PhiloConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            log: LogConfig::default(),
            accounts: AccountsSection::default(),
            images: ImagesSection::default(),
            ingest: IngestConfig::default(),
            streams: StreamsSection::default(),
            lake: LakeSection::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `embedded` (default: the durable log under the data directory) or a Kafka cluster,
    /// `kafka://host:port[,host:port…][?setting=value…]` (settings in `docs/kafka.md`).
    pub backend: String,
    /// Replication factor of the topics Philo creates on Kafka (unless the URL sets one).
    pub replication_factor: u32,
    /// Partitions of the `actions` topic (fixed at creation).
    pub partitions: u32,
    pub durability: Durability,
    /// Embedded log: journals the partitions are spread over, each with its own writer and
    /// fsyncs, so that one journal's fsync does not hold up the next group commit (fixed when
    /// the log is created; ADR 001 has what one and two measured).
    pub shards: usize,
    /// Delete records older than this many hours (0 keeps forever).
    pub retention_hours: u64,
    /// Keep at most this many bytes per partition (0 is unbounded).
    pub retention_bytes_per_partition: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            backend: "embedded".into(),
            replication_factor: 1,
            partitions: 8,
            durability: Durability::Fsync,
            shards: 1,
            retention_hours: 24 * 7,
            retention_bytes_per_partition: 1 << 30,
        }
    }
}

/// The stream jobs and their views.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsSection {
    /// Empty: `<data_dir>/state`.
    pub state_dir: String,
    /// Most items kept in a home feed.
    pub feed_cap: usize,
    /// Authors with at least this many followers are pulled at read time, not pushed.
    pub pull_threshold: i64,
    /// Recent items of a followee copied into a new follower's feed.
    pub backfill: usize,
    /// Most records a job reads per partition in one step.
    pub max_batch_records: usize,
    /// Items the read side keeps decoded with their counters (each a few hundred bytes to a
    /// few KiB); 0 turns the cache off.
    pub read_cache_items: usize,
    /// Address of the `philo streams` role's `/metrics` and `/healthz`.
    pub listen: SocketAddr,
}

impl Default for StreamsSection {
    fn default() -> Self {
        let social = philo_streams::social::SocialConfig::default();
        Self {
            state_dir: String::new(),
            feed_cap: social.feed_cap,
            pull_threshold: social.pull_threshold,
            backfill: social.backfill,
            max_batch_records: philo_streams::job::JobConfig::default().max_batch_records,
            read_cache_items: social.read_cache_items,
            listen: "127.0.0.1:9091".parse().expect("valid address"),
        }
    }
}

impl PhiloConfig {
    /// The streams' settings, resolved against the data directory.
    pub fn streams_config(&self) -> philo_streams::runtime::StreamsConfig {
        let dir = if self.streams.state_dir.is_empty() {
            self.data_dir.join("state")
        } else {
            PathBuf::from(&self.streams.state_dir)
        };
        let mut c = philo_streams::runtime::StreamsConfig::new(dir);
        c.social.feed_cap = self.streams.feed_cap.max(1);
        c.social.pull_threshold = self.streams.pull_threshold.max(1);
        c.social.backfill = self.streams.backfill;
        c.social.read_cache_items = self.streams.read_cache_items;
        c.job.max_batch_records = self.streams.max_batch_records.max(1);
        c.job.failed_topic = Some(philo_events::log::FAILED_TOPIC.to_owned());
        c
    }
}

/// The anonymizer and the Delta tables it lands (`docs/lake.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSection {
    /// Whether `philo up` runs the anonymizer in-process.
    pub enabled: bool,
    /// Empty: `<data_dir>/lake` on local disk. Or `s3://bucket/prefix`.
    pub url: String,
    /// Options of the lake's store, as `object_store` names them (for S3: `endpoint`,
    /// `region`, `access_key_id`, `secret_access_key`, `allow_http`, …). Values never print.
    #[serde(serialize_with = "redact_map", deserialize_with = "scalar_map")]
    pub storage: BTreeMap<String, SecretString>,
    /// HMAC key of the pseudonyms (≥ 32 bytes); never enters the lake. Empty: generated once
    /// into `<data_dir>/secrets/lake.key`.
    #[serde(serialize_with = "redact")]
    pub pseudonym_key: Option<SecretString>,
    /// Id of that key, recorded in every row (rotate by changing both).
    pub pseudonym_key_id: String,
    /// k of the `users` dimension's k-anonymity.
    pub k_anonymity: usize,
    /// A micro-batch commits at this many actions…
    pub batch_max_actions: usize,
    /// …or this many milliseconds after its first action.
    pub batch_max_wait_ms: u64,
    /// A Delta checkpoint every this many commits.
    pub checkpoint_interval: u32,
    /// Parquet compression: `zstd` (default), `snappy`, `lz4` or `none`.
    pub compression: String,
    /// Compaction every this many minutes (0: only `philo lake optimize`).
    pub optimize_every_minutes: u64,
    /// Vacuum every this many hours (0: only `philo lake vacuum`).
    pub vacuum_every_hours: u64,
    /// Files unreferenced for this long are deleted by vacuum.
    pub vacuum_retention_hours: u64,
    /// Address of the `philo lake` role's `/metrics` and `/healthz`.
    pub listen: SocketAddr,
    /// In `philo up`, the anonymizer runs on its own thread (and blocking threads) at this nice
    /// value, 1 – 19, so the API's and the social job's threads win the cores when both want
    /// them (as RocksDB lowers its compaction threads' priority); 0 runs it on the API's
    /// runtime at their priority. The `philo lake` role ignores it.
    pub nice: i32,
}

impl Default for LakeSection {
    fn default() -> Self {
        let job = philo_lake::job::LakeJobConfig::default();
        Self {
            enabled: true,
            url: String::new(),
            storage: BTreeMap::new(),
            pseudonym_key: None,
            pseudonym_key_id: "k1".into(),
            k_anonymity: job.k,
            batch_max_actions: job.batch_max_actions,
            batch_max_wait_ms: job.batch_max_wait.as_millis() as u64,
            checkpoint_interval: job.settings.checkpoint_interval,
            compression: "zstd".into(),
            optimize_every_minutes: 15,
            vacuum_every_hours: 6,
            vacuum_retention_hours: 7 * 24,
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            nice: 10,
        }
    }
}

impl PhiloConfig {
    /// Where the lake lives.
    pub fn lake_location(&self) -> Result<philo_lake::storage::Location> {
        let options = self
            .lake
            .storage
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    secrecy::ExposeSecret::expose_secret(v).to_owned(),
                )
            })
            .collect();
        let location = if self.lake.url.is_empty() {
            std::fs::create_dir_all(self.data_dir.join("lake"))?;
            let dir = std::path::absolute(self.data_dir.join("lake"))?;
            philo_lake::storage::Location::parse(&dir.to_string_lossy(), options)?
        } else {
            philo_lake::storage::Location::parse(&self.lake.url, options)?
        };
        Ok(location)
    }

    /// The anonymizer job's settings (`lake.compression` checked by [`PhiloConfig::load`]).
    pub fn lake_job_config(&self) -> philo_lake::job::LakeJobConfig {
        use std::time::Duration;
        let l = &self.lake;
        let mut c = philo_lake::job::LakeJobConfig {
            k: l.k_anonymity.max(1),
            batch_max_actions: l.batch_max_actions.max(1),
            batch_max_wait: Duration::from_millis(l.batch_max_wait_ms),
            optimize_every: (l.optimize_every_minutes > 0)
                .then(|| Duration::from_secs(l.optimize_every_minutes * 60)),
            vacuum_every: (l.vacuum_every_hours > 0)
                .then(|| Duration::from_secs(l.vacuum_every_hours * 3600)),
            vacuum_retention: Duration::from_secs(l.vacuum_retention_hours * 3600),
            ..Default::default()
        };
        c.settings.checkpoint_interval = l.checkpoint_interval.max(1);
        if let Some(compression) = philo_lake::table::parse_compression(&l.compression) {
            c.settings.compression = compression;
        }
        c
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsSection {
    /// Empty: SQLite at `<data_dir>/accounts.db`. Or `postgres://…`.
    pub database_url: String,
    /// HS256 key (≥ 32 bytes). Empty: generated once into `<data_dir>/secrets/jwt.key`.
    #[serde(serialize_with = "redact")]
    pub jwt_secret: Option<SecretString>,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub max_connections: u32,
}

fn redact<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Default for AccountsSection {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            jwt_secret: None,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            max_connections: 10,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesSection {
    /// Empty: `<data_dir>/objects`. Or an object-store URL such as `s3://bucket/prefix`.
    pub store_url: String,
    /// Options of that store, as `object_store` names them, e.g. for S3 `aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`. Values never
    /// print (they hold credentials).
    #[serde(serialize_with = "redact_map", deserialize_with = "scalar_map")]
    pub store_options: BTreeMap<String, SecretString>,
}

/// Store options as strings, whatever scalar the layer produced (`PHILO__…=true` arrives as a
/// boolean from the environment).
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Bool(bool),
        Int(i64),
        Float(f64),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(t) => t,
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
            };
            (k, SecretString::from(text))
        })
        .collect())
}

fn redact_map<S: serde::Serializer>(
    v: &BTreeMap<String, SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(v.len()))?;
    for key in v.keys() {
        map.serialize_entry(key, "[redacted]")?;
    }
    map.end()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `pretty` or `json`.
    pub log_format: String,
    /// A tracing filter, e.g. `info,philo=debug`.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: "pretty".into(),
            log_level: "info".into(),
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `log.backend`.
    #[serde(skip)]
    pub log: Option<String>,
}

impl PhiloConfig {
    /// Loads the layers. `file` defaults to `philo.toml` when it exists.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(PhiloConfig::default()));
        match file {
            Some(f) => {
                anyhow::ensure!(f.exists(), "config file {} does not exist", f.display());
                figment = figment.merge(Toml::file_exact(f));
            }
            None if Path::new("philo.toml").exists() => {
                figment = figment.merge(Toml::file_exact("philo.toml"));
            }
            None => {}
        }
        let mut config: Self = figment
            .merge(Env::prefixed("PHILO__").split("__"))
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        if let Some(log) = &overrides.log {
            config.log.backend = log.clone();
        }
        anyhow::ensure!(
            philo_lake::table::parse_compression(&config.lake.compression).is_some(),
            "invalid configuration: lake.compression `{}` is not zstd, snappy, lz4 or none",
            config.lake.compression
        );
        anyhow::ensure!(
            (0..=19).contains(&config.lake.nice),
            "invalid configuration: lake.nice {} is not 0 – 19",
            config.lake.nice
        );
        Ok(config)
    }

    pub fn accounts_url(&self) -> String {
        if self.accounts.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("accounts.db").display()
            )
        } else {
            self.accounts.database_url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("philo.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[log]\npartitions = 3\n",
        )
        .unwrap();
        let c = PhiloConfig::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.log.partitions, 3);
        let flags = Overrides {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            log: Some("kafka://127.0.0.1:9092".into()),
            ..Default::default()
        };
        assert_eq!(
            PhiloConfig::load(Some(&file), &flags).unwrap().log.backend,
            "kafka://127.0.0.1:9092",
            "--log overrides the file"
        );
        assert_eq!(
            PhiloConfig::load(Some(&file), &flags)
                .unwrap()
                .listen
                .port(),
            9100
        );

        std::fs::write(&file, "[log]\npartitionz = 3\n").unwrap();
        let err = PhiloConfig::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("partitionz"), "{err:#}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut c = PhiloConfig::default();
        c.accounts.jwt_secret = Some(SecretString::from("super-secret-value-that-is-long-enough"));
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("super-secret"), "{shown}");
    }
}
