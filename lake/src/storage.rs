//! Where the lake lives: a URL resolved through `object_store`.
//!
//! - `file:///abs/path` — local disk (the default, `<data_dir>/lake`).
//! - `s3://bucket/prefix` — any S3-compatible store; options (`endpoint`, `region`,
//!   `access_key_id`, `secret_access_key`, `allow_http`, …: the keys `object_store`'s
//!   `AmazonS3ConfigKey` parses) come from `[lake.storage]`.
//!
//! delta-rs resolves storage through registries of factories per URL scheme. Its own S3
//! support (`deltalake-aws`) brings the AWS SDK and a DynamoDB lock client; Philo needs neither,
//! because S3 has had conditional writes (`If-None-Match: *`) since 2024 and delta-rs's default
//! log store commits with exactly that (`PutMode::Create`). So `s3://` is registered here with
//! `object_store`'s own S3 client and delta-rs's default log store: a commit either creates the
//! next `_delta_log` entry or fails with "already exists", and never overwrites by rename.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError, Path};
use url::Url;

/// A lake location: the root URL and the options its store needs.
#[derive(Clone, PartialEq, Eq)]
pub struct Location {
    pub url: Url,
    pub options: HashMap<String, String>,
}

impl std::fmt::Debug for Location {
    /// Shows option names, never their values (they hold credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&String> = self.options.keys().collect();
        keys.sort();
        f.debug_struct("Location")
            .field("url", &self.url.as_str())
            .field("options", &keys)
            .finish()
    }
}

/// Why a location is unusable.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("lake URL `{0}` is not a URL: {1}")]
    Parse(String, url::ParseError),
    #[error("lake URL `{0}` has scheme `{1}`; use file:// or s3://")]
    Scheme(String, String),
    #[error("lake URL `{0}` names no bucket")]
    NoBucket(String),
}

impl Location {
    /// Parses `url` (a plain path is taken as a local directory).
    pub fn parse(url: &str, options: HashMap<String, String>) -> Result<Self, LocationError> {
        let parsed = if url.starts_with('/') {
            Url::from_directory_path(url)
                .map_err(|()| LocationError::Scheme(url.into(), "path".into()))?
        } else {
            Url::parse(url).map_err(|e| LocationError::Parse(url.into(), e))?
        };
        match parsed.scheme() {
            "file" | "memory" => {}
            "s3" | "s3a" => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(LocationError::NoBucket(url.into()));
                }
            }
            other => return Err(LocationError::Scheme(url.into(), other.into())),
        }
        let mut parsed = parsed;
        if !parsed.path().ends_with('/') {
            let path = format!("{}/", parsed.path());
            parsed.set_path(&path);
        }
        register_s3();
        Ok(Self {
            url: parsed,
            options,
        })
    }

    /// A local directory.
    pub fn local(dir: &std::path::Path) -> Result<Self, LocationError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::parse(&dir.to_string_lossy(), HashMap::new())
    }

    /// The URL of `table` under this location.
    pub fn table_url(&self, table: &str) -> Url {
        self.url
            .join(&format!("{table}/"))
            .expect("a table name is a valid path segment")
    }

    /// Whether the lake is on local disk (then it has a directory path).
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }
}

/// `s3://` through `object_store`'s S3 client.
#[derive(Debug)]
struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)
            .map_err(|e| DeltaTableError::Generic(format!("S3 store for {url}: {e}")))?;
        Ok((Arc::new(store), path))
    }
}

/// delta-rs's default log store (commits by conditional put) for `s3://`.
#[derive(Debug)]
struct ConditionalPutLogs;

impl LogStoreFactory for ConditionalPutLogs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Registers the `s3://` and `s3a://` schemes with delta-rs (once per process).
pub fn register_s3() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            let url = Url::parse(scheme).expect("a scheme URL");
            object_store_factories().insert(url.clone(), Arc::new(S3Stores));
            logstore_factories().insert(url, Arc::new(ConditionalPutLogs));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_name_their_tables() {
        let l = Location::parse("/tmp/lake", HashMap::new()).unwrap();
        assert_eq!(l.table_url("posts").as_str(), "file:///tmp/lake/posts/");
        assert_eq!(l.local_dir().unwrap(), std::path::Path::new("/tmp/lake/"));
        let s = Location::parse("s3://bucket/some/prefix", HashMap::new()).unwrap();
        assert_eq!(
            s.table_url("users").as_str(),
            "s3://bucket/some/prefix/users/"
        );
        assert!(s.local_dir().is_none());
        assert!(matches!(
            Location::parse("gs://b/p", HashMap::new()),
            Err(LocationError::Scheme(..))
        ));
        assert!(matches!(
            Location::parse("s3:///p", HashMap::new()),
            Err(LocationError::NoBucket(_))
        ));
        assert!(Location::parse("not a url", HashMap::new()).is_err());
    }

    #[test]
    fn debug_never_prints_credentials() {
        let l = Location::parse(
            "s3://b/p",
            HashMap::from([("secret_access_key".to_string(), "hunter2".to_string())]),
        )
        .unwrap();
        let shown = format!("{l:?}");
        assert!(shown.contains("secret_access_key") && !shown.contains("hunter2"));
    }
}
