//! The lake's tables, open together: erasure (delete, vacuum, log purge, receipt), compaction,
//! vacuum, the `users` dimension, the daily aggregates, and a DataFusion session over all of
//! them. The anonymizer job ([`crate::job`]) writes through it; `philo lake …` maintains it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use std::future::IntoFuture;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::anonymize::{DAILY_ACTIVITY, DAILY_DONATIONS, FAILED_ACTIONS, Row, TABLES, USERS};
use crate::columnar;
use crate::job::JobError;
use crate::storage::Location;
use crate::table::{LakeError, LakeTable, TableSettings, commit_metadata};

/// What erasing one user removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// The `account.erased` action (its actor is the user; the receipt names no one, so it
    /// can sit beside the tables).
    pub action_id: Uuid,
    pub tables: Vec<TableErasure>,
    pub completed_at: DateTime<Utc>,
}

/// One table's part of an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableErasure {
    pub table: String,
    /// The Delta version of the delete commit (`None`: nothing to delete).
    pub version: Option<u64>,
    pub rows_removed: u64,
    /// Data files physically deleted by the zero-retention vacuum.
    pub files_deleted: u64,
    /// `_delta_log` entries (commits and checkpoints, whose file statistics and delete
    /// predicate could still hold the pseudonym) removed behind a fresh checkpoint.
    pub log_entries_removed: u64,
}

/// Erasure receipts, under `_philo/erasures/` beside the tables. Reading them opens no table.
#[derive(Clone)]
pub struct Receipts {
    store: Arc<dyn ObjectStore>,
    dir: StorePath,
}

impl std::fmt::Debug for Receipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipts").field("dir", &self.dir).finish()
    }
}

impl Receipts {
    /// The receipts of the lake at `location`.
    pub fn new(location: &Location) -> Result<Self, object_store::Error> {
        let (store, prefix) = object_store::parse_url_opts(&location.url, &location.options)?;
        Ok(Self {
            store: Arc::from(store),
            dir: prefix.join("_philo").join("erasures"),
        })
    }

    /// The stored receipt of erasure `action_id`, if it completed.
    pub async fn get(&self, action_id: Uuid) -> Result<Option<ErasureReceipt>, JobError> {
        match self.store.get(&self.path(action_id)).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, receipt: &ErasureReceipt) -> Result<(), JobError> {
        let body = serde_json::to_vec_pretty(receipt).expect("a receipt serializes");
        self.store
            .put(&self.path(receipt.action_id), body.into())
            .await?;
        Ok(())
    }

    fn path(&self, action_id: Uuid) -> StorePath {
        self.dir.clone().join(format!("{action_id}.json").as_str())
    }
}

/// The lake's tables, open.
pub struct Lake {
    pub location: Location,
    /// The fact tables, in [`TABLES`] order.
    pub tables: Vec<LakeTable>,
    pub failed: LakeTable,
    pub users: LakeTable,
    pub daily_activity: LakeTable,
    pub daily_donations: LakeTable,
    receipts: Receipts,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("location", &self.location)
            .field("tables", &self.tables)
            .finish()
    }
}

impl Lake {
    /// Opens every table under `location`, creating the missing ones.
    pub async fn open(location: &Location, settings: &TableSettings) -> Result<Self, JobError> {
        let mut tables = Vec::with_capacity(TABLES.len());
        for schema in TABLES {
            tables.push(LakeTable::open(location, schema, settings).await?);
        }
        let failed = LakeTable::open(location, &FAILED_ACTIONS, settings).await?;
        let users = LakeTable::open(location, &USERS, settings).await?;
        let daily_activity = LakeTable::open(location, &DAILY_ACTIVITY, settings).await?;
        let daily_donations = LakeTable::open(location, &DAILY_DONATIONS, settings).await?;
        let receipts = Receipts::new(location)?;
        Ok(Self {
            location: location.clone(),
            tables,
            failed,
            users,
            daily_activity,
            daily_donations,
            receipts,
        })
    }

    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&LakeTable> {
        self.all().find(|t| t.name() == name)
    }

    /// Every table: the fact tables, `failed_actions`, `users`, the daily aggregates.
    pub fn all(&self) -> impl Iterator<Item = &LakeTable> {
        self.tables.iter().chain([
            &self.failed,
            &self.users,
            &self.daily_activity,
            &self.daily_donations,
        ])
    }

    /// Every table, mutably, in the order of [`Lake::all`].
    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut LakeTable> {
        self.tables.iter_mut().chain([
            &mut self.failed,
            &mut self.users,
            &mut self.daily_activity,
            &mut self.daily_donations,
        ])
    }

    /// Recomputes the daily aggregates for `since` and every later day from the fact tables
    /// (replacing those days' rows in one commit per table). Returns the rows written.
    pub async fn write_daily(&mut self, since: NaiveDate, key_id: &str) -> Result<usize, JobError> {
        let ctx = self.session().await?;
        let day = since.format("%Y-%m-%d").to_string();
        // Per fact table: its kind column (the action's `event`, a reaction's `kind`, …) and
        // the user column that says who acted.
        let mut parts = Vec::new();
        for t in TABLES {
            let has = |c: &str| t.columns.iter().any(|(n, _, _)| *n == c);
            let kind = if has("event") {
                "\"event\"".to_string()
            } else if has("kind") {
                "\"kind\"".to_string()
            } else if has("status") {
                "\"status\"".to_string()
            } else {
                format!("'{}'", t.name)
            };
            let actor = t.user_columns.first().copied().unwrap_or("key_id");
            parts.push(format!(
                "SELECT day, '{name}' AS source, CAST({kind} AS VARCHAR) AS kind, count(*) AS actions, \
                 count(DISTINCT \"{actor}\") AS users FROM {name} WHERE day >= DATE '{day}' \
                 GROUP BY day, {kind}",
                name = t.name
            ));
        }
        let activity = ctx
            .sql(&parts.join(" UNION ALL "))
            .await
            .map_err(|e| LakeError::delta(DAILY_ACTIVITY.name)(e.into()))?
            .collect()
            .await
            .map_err(|e| LakeError::delta(DAILY_ACTIVITY.name)(e.into()))?;
        let donations = ctx
            .sql(&format!(
                "SELECT day, currency, count(*) AS donations, sum(amount_minor) AS amount_minor, \
                 count(DISTINCT donor) AS donors FROM donations WHERE day >= DATE '{day}' \
                 GROUP BY day, currency"
            ))
            .await
            .map_err(|e| LakeError::delta(DAILY_DONATIONS.name)(e.into()))?
            .collect()
            .await
            .map_err(|e| LakeError::delta(DAILY_DONATIONS.name)(e.into()))?;
        let mut rows = 0;
        for (table, batches) in [
            (&mut self.daily_activity, activity),
            (&mut self.daily_donations, donations),
        ] {
            rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
            table.replace_days(batches, &day, key_id).await?;
        }
        Ok(rows)
    }

    /// A DataFusion session with every table registered under its name (after a refresh, so
    /// it sees what other writers committed).
    pub async fn session(
        &mut self,
    ) -> Result<deltalake::datafusion::prelude::SessionContext, JobError> {
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        for table in self.all_mut() {
            table.refresh().await?;
            let name = table.name();
            let delta = table.delta();
            delta
                .update_datafusion_session(&ctx.state())
                .map_err(LakeError::delta(name))?;
            let provider = delta
                .table_provider()
                .await
                .map_err(|e| LakeError::delta(name)(e.into()))?;
            ctx.register_table(name, provider)
                .map_err(|e| LakeError::delta(name)(e.into()))?;
        }
        Ok(ctx)
    }

    /// The stored receipt of erasure `action_id`, if it completed.
    pub async fn receipt(&self, action_id: Uuid) -> Result<Option<ErasureReceipt>, JobError> {
        self.receipts.get(action_id).await
    }

    /// Deletes every row naming `pseudonym` in a user column of any table, vacuums the touched
    /// tables with zero retention so the deleted rows' files are physically gone, and removes
    /// the `_delta_log` entries before a fresh checkpoint (they hold the old files' statistics).
    pub async fn erase(
        &mut self,
        action_id: Uuid,
        pseudonym: &str,
        key_id: &str,
    ) -> Result<ErasureReceipt, JobError> {
        // Pseudonyms are 32 hex digits; anything else never reaches a predicate.
        assert!(
            pseudonym.len() == 32 && pseudonym.bytes().all(|b| b.is_ascii_hexdigit()),
            "a pseudonym is 32 hex digits"
        );
        let mut tables = Vec::new();
        for table in self.all_mut() {
            if table.schema.user_columns.is_empty() {
                continue;
            }
            let predicate = table
                .schema
                .user_columns
                .iter()
                .map(|c| format!("\"{c}\" = '{pseudonym}'"))
                .collect::<Vec<_>>()
                .join(" OR ");
            let name = table.name();
            let (deleted, metrics) = table
                .delta()
                .clone()
                .delete()
                .with_predicate(predicate)
                .with_commit_properties(
                    CommitProperties::default().with_metadata(commit_metadata(key_id)),
                )
                .await
                .map_err(LakeError::delta(name))?;
            // delta-rs leaves the count unknown only for whole-file deletes without row
            // statistics; the lake's files always carry statistics.
            let rows = metrics.num_deleted_rows.unwrap_or(0) as u64;
            let touched = rows > 0 || metrics.num_removed_files > 0;
            let mut entry = TableErasure {
                table: name.to_string(),
                version: None,
                rows_removed: rows,
                files_deleted: 0,
                log_entries_removed: 0,
            };
            if touched {
                entry.version = deleted.version();
                let (vacuumed, vm) = deleted
                    .vacuum()
                    .with_retention_period(chrono::Duration::zero())
                    .with_enforce_retention_duration(false)
                    .await
                    .map_err(LakeError::delta(name))?;
                entry.files_deleted = vm.files_deleted.len() as u64;
                // Older log entries hold the deleted files' statistics (min/max pseudonyms)
                // and the delete's predicate: checkpoint now, then drop everything before it.
                // Time travel to versions before the erasure ends here, by design.
                deltalake::checkpoints::create_checkpoint(&vacuumed, None)
                    .await
                    .map_err(LakeError::delta(name))?;
                let checkpoint = vacuumed.version().unwrap_or_default();
                entry.log_entries_removed = deltalake::checkpoints::cleanup_expired_logs_for(
                    checkpoint,
                    vacuumed.log_store().as_ref(),
                    Utc::now().timestamp_millis() + 1_000,
                    None,
                )
                .await
                .map_err(LakeError::delta(name))?
                    as u64;
                table.replace(vacuumed);
            } else {
                table.replace(deleted);
            }
            tables.push(entry);
        }
        let receipt = ErasureReceipt {
            action_id,
            tables,
            completed_at: Utc::now(),
        };
        self.receipts.put(&receipt).await?;
        Ok(receipt)
    }

    /// Compacts every table's small files (per partition) toward `target_file_bytes`.
    /// Returns `(table, files removed, files added)`.
    pub async fn optimize(
        &mut self,
        target_file_bytes: u64,
        key_id: &str,
    ) -> Result<Vec<(String, u64, u64)>, JobError> {
        let mut out = Vec::new();
        for table in self.all_mut() {
            table.refresh().await?;
            let name = table.name();
            let (optimized, metrics) = table
                .delta()
                .clone()
                .optimize()
                .with_target_size(
                    std::num::NonZeroU64::new(target_file_bytes)
                        .unwrap_or(std::num::NonZeroU64::MIN),
                )
                .with_writer_properties(table.writer_properties())
                .with_commit_properties(
                    CommitProperties::default().with_metadata(commit_metadata(key_id)),
                )
                .await
                .map_err(LakeError::delta(name))?;
            out.push((
                name.to_string(),
                metrics.num_files_removed,
                metrics.num_files_added,
            ));
            table.replace(optimized);
        }
        Ok(out)
    }

    /// Deletes files no version newer than `retention` refers to. Returns `(table, files)`.
    pub async fn vacuum(&mut self, retention: Duration) -> Result<Vec<(String, u64)>, JobError> {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let mut out = Vec::new();
        for table in self.all_mut() {
            table.refresh().await?;
            let name = table.name();
            let (vacuumed, metrics) = table
                .delta()
                .clone()
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .await
                .map_err(LakeError::delta(name))?;
            out.push((name.to_string(), metrics.files_deleted.len() as u64));
            table.replace(vacuumed);
        }
        Ok(out)
    }

    /// Replaces the `users` dimension with `rows`.
    pub async fn write_users(&mut self, rows: &[Row], key_id: &str) -> Result<u64, JobError> {
        let schema = columnar::arrow_schema(&USERS);
        let batch = columnar::record_batch(&USERS, &schema, rows.iter()).map_err(|source| {
            LakeError::Arrow {
                table: USERS.name.into(),
                source,
            }
        })?;
        // Another writer may rewrite it at the same time (two anonymizers, or a maintenance
        // command): the loser reloads and writes again.
        let properties = self.users.writer_properties();
        self.users
            .overwrite(|delta| {
                delta
                    .write(vec![batch.clone()])
                    .with_save_mode(SaveMode::Overwrite)
                    .with_writer_properties(properties.clone())
                    .with_commit_properties(
                        CommitProperties::default().with_metadata(commit_metadata(key_id)),
                    )
                    .into_future()
            })
            .await?;
        Ok(self.users.version().unwrap_or_default())
    }
}
