//! The lake's Delta tables: created on first use, appended with the log positions they hold.
//!
//! Every append is one Delta commit carrying, besides its data files, one **application
//! transaction** (`txn`) per log partition whose records it holds:
//! `{appId: "philo-anonymizer/<partition>", version: <next offset to read>}`. A table's txn
//! versions are therefore exactly how far into each partition it is complete, read back in
//! [`LakeTable::positions`]; a writer that crashed after the commit and before learning of it
//! skips those records when it starts again, and two writers racing over the same records
//! collide in Delta's conflict checker (`ConcurrentTransaction`) instead of both landing.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;

use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Transaction, transaction::TransactionError};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};
use serde_json::json;

use crate::anonymize::{POLICY_VERSION, Row, TableSchema};
use crate::columnar;
use crate::storage::Location;

/// The app id of the txn recording `table`'s progress through `partition` of its topic:
/// `philo-anonymizer/<p>` for the `actions` topic, `philo-anonymizer/failed/<p>` for
/// `failed_actions`, which is fed by `actions.failed`.
pub fn app_id(table: &str, partition: u32) -> String {
    if table == crate::anonymize::FAILED_ACTIONS.name {
        format!("philo-anonymizer/failed/{partition}")
    } else {
        format!("philo-anonymizer/{partition}")
    }
}

/// Commit metadata every lake commit carries.
pub fn commit_metadata(key_id: &str) -> Vec<(String, serde_json::Value)> {
    vec![
        ("philo.policy_version".into(), json!(POLICY_VERSION)),
        ("philo.key_id".into(), json!(key_id)),
    ]
}

/// Errors of the lake's tables.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: DeltaTableError,
    },
    #[error("arrow batch for {table}: {source}")]
    Arrow {
        table: String,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// Another writer committed the same log positions first.
    #[error("table {0}: another writer committed these log positions first")]
    Raced(String),
}

impl LakeError {
    pub(crate) fn delta(table: &str) -> impl FnOnce(DeltaTableError) -> LakeError + '_ {
        move |source| match source {
            DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_),
            } => LakeError::Raced(table.into()),
            source => LakeError::Delta {
                table: table.into(),
                source,
            },
        }
    }
}

/// How often a rewrite that lost a race with another writer is tried again.
pub(crate) const RACE_RETRIES: u32 = 3;

/// Table properties the lake's tables are created with.
#[derive(Debug, Clone)]
pub struct TableSettings {
    /// A checkpoint every this many commits.
    pub checkpoint_interval: u32,
    /// How long `_delta_log` entries are kept after a checkpoint covers them.
    pub log_retention: String,
    /// Parquet compression of the data files (ZSTD level 1 by default; `none` keeps pages
    /// byte-searchable, which the canary test relies on).
    pub compression: Compression,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self {
            checkpoint_interval: 10,
            log_retention: "interval 7 days".into(),
            compression: Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")),
        }
    }
}

/// One open table.
pub struct LakeTable {
    pub schema: &'static TableSchema,
    arrow: Arc<ArrowSchema>,
    delta: DeltaTable,
    compression: Compression,
}

impl std::fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeTable")
            .field("table", &self.schema.name)
            .field("version", &self.delta.version())
            .finish()
    }
}

/// Parquet settings of the files the lake writes.
pub(crate) fn writer_properties(compression: Compression) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(compression)
        .build()
}

/// Parses a compression name: `zstd` (level 1), `snappy`, `lz4` or `none`.
pub fn parse_compression(name: &str) -> Option<Compression> {
    Some(match name.to_ascii_lowercase().as_str() {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(1).ok()?),
        "snappy" => Compression::SNAPPY,
        "lz4" => Compression::LZ4_RAW,
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        _ => return None,
    })
}

impl LakeTable {
    /// Opens `schema`'s table under `location`, creating it (partitioned by `day` when it has
    /// that column) if it does not exist yet. Two processes creating it at once both succeed.
    pub async fn open(
        location: &Location,
        schema: &'static TableSchema,
        settings: &TableSettings,
    ) -> Result<Self, LakeError> {
        let name = schema.name;
        let url = location.table_url(name);
        if let Some(dir) = location.local_dir() {
            // delta-rs refuses a local table location that does not exist yet.
            std::fs::create_dir_all(dir.join(name)).map_err(|e| LakeError::Delta {
                table: name.into(),
                source: DeltaTableError::Generic(format!("creating {}: {e}", dir.display())),
            })?;
        }
        let mut delta = open_url(&url, &location.options)
            .await
            .map_err(LakeError::delta(name))?;
        if delta.version().is_none() {
            let partition: Vec<&str> = schema
                .columns
                .iter()
                .any(|(c, _, _)| *c == "day")
                .then_some("day")
                .into_iter()
                .collect();
            let created = delta
                .clone()
                .create()
                .with_table_name(name)
                .with_columns(columnar::delta_schema(schema).fields().cloned())
                .with_partition_columns(partition)
                .with_configuration_property(
                    TableProperty::CheckpointInterval,
                    Some(settings.checkpoint_interval.to_string()),
                )
                .with_configuration_property(
                    TableProperty::LogRetentionDuration,
                    Some(settings.log_retention.clone()),
                )
                .await;
            delta = match created {
                Ok(t) => t,
                // Someone else created it between our look and our commit.
                Err(_) if { delta.update_state().await.is_ok() && delta.version().is_some() } => {
                    delta
                }
                Err(e) => return Err(LakeError::delta(name)(e)),
            };
        }
        let mut table = Self {
            schema,
            arrow: columnar::arrow_schema(schema),
            delta,
            compression: settings.compression,
        };
        table.evolve().await?;
        Ok(table)
    }

    /// Schema evolution: columns the code knows and the table lacks are added (nullable, so
    /// older rows read as null and existing readers keep working). Columns are never removed
    /// or retyped; a table holding a column the code does not know is refused.
    async fn evolve(&mut self) -> Result<(), LakeError> {
        let name = self.schema.name;
        let Ok(state) = self.delta.snapshot() else {
            return Ok(());
        };
        let existing = state.schema();
        let wanted = columnar::delta_schema(self.schema);
        if let Some(unknown) = existing.fields().find(|f| wanted.field(f.name()).is_none()) {
            return Err(LakeError::Delta {
                table: name.into(),
                source: DeltaTableError::Generic(format!(
                    "the table has a column `{}` this version of Philo does not know; \
                     run the newer version",
                    unknown.name()
                )),
            });
        }
        let missing: Vec<_> = wanted
            .fields()
            .filter(|f| existing.field(f.name()).is_none())
            .map(|f| deltalake::kernel::StructField::new(f.name(), f.data_type().clone(), true))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        tracing::info!(table = name, columns = missing.len(), "adding new columns");
        let added = self
            .delta
            .clone()
            .add_columns()
            .with_fields(missing)
            .await
            .map_err(LakeError::delta(name))?;
        self.delta = added;
        Ok(())
    }

    pub fn name(&self) -> &'static str {
        self.schema.name
    }

    /// The table's current Delta version.
    pub fn version(&self) -> Option<u64> {
        self.delta.version()
    }

    /// The Delta table (a cheap clone) for reads and maintenance.
    pub fn delta(&self) -> &DeltaTable {
        &self.delta
    }

    /// Reloads the table's state from storage (after another process changed it).
    pub async fn refresh(&mut self) -> Result<(), LakeError> {
        self.delta
            .update_state()
            .await
            .map_err(LakeError::delta(self.schema.name))
    }

    /// Replaces the table handle after a maintenance operation returned a newer one.
    pub(crate) fn replace(&mut self, delta: DeltaTable) {
        self.delta = delta;
    }

    /// Parquet settings of this table's files.
    pub(crate) fn writer_properties(&self) -> WriterProperties {
        writer_properties(self.compression)
    }

    /// Replaces the rows of `day` and later with `batches` (cast to the table's schema) in
    /// one commit.
    pub async fn replace_days(
        &mut self,
        batches: Vec<RecordBatch>,
        day: &str,
        key_id: &str,
    ) -> Result<(), LakeError> {
        let name = self.schema.name;
        let mut cast = Vec::with_capacity(batches.len());
        for b in batches {
            let columns = self
                .arrow
                .fields()
                .iter()
                .map(|f| {
                    let column = b.column_by_name(f.name()).ok_or_else(|| LakeError::Arrow {
                        table: name.into(),
                        source: deltalake::arrow::error::ArrowError::SchemaError(format!(
                            "no column {}",
                            f.name()
                        )),
                    })?;
                    deltalake::arrow::compute::cast(column, f.data_type()).map_err(|source| {
                        LakeError::Arrow {
                            table: name.into(),
                            source,
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            cast.push(
                RecordBatch::try_new(self.arrow.clone(), columns).map_err(|source| {
                    LakeError::Arrow {
                        table: name.into(),
                        source,
                    }
                })?,
            );
        }
        let metadata = CommitProperties::default().with_metadata(commit_metadata(key_id));
        if cast.is_empty() {
            // Nothing left for those days (an erasure emptied them): delete their rows.
            let (deleted, _) = self
                .delta
                .clone()
                .delete()
                .with_predicate(format!("day >= DATE '{day}'"))
                .with_commit_properties(metadata)
                .await
                .map_err(LakeError::delta(name))?;
            self.delta = deleted;
            return Ok(());
        }
        // Another writer recomputed the same days first: reload and write again.
        let properties = self.writer_properties();
        self.overwrite(|delta| {
            delta
                .write(cast.clone())
                .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
                .with_replace_where(format!("day >= DATE '{day}'"))
                .with_writer_properties(properties.clone())
                .with_commit_properties(metadata.clone())
                .into_future()
        })
        .await
    }

    /// Runs `write` (an overwrite of some or all of the table) on the current table; if another
    /// writer committed first, reloads and runs it again, at most [`RACE_RETRIES`] times. The
    /// last rewrite wins, as it should for data recomputed from the same log.
    pub(crate) async fn overwrite<F, Fut>(&mut self, mut write: F) -> Result<(), LakeError>
    where
        F: FnMut(DeltaTable) -> Fut,
        Fut: std::future::Future<Output = Result<DeltaTable, DeltaTableError>>,
    {
        let mut attempt = 0;
        loop {
            match write(self.delta.clone())
                .await
                .map_err(LakeError::delta(self.schema.name))
            {
                Err(LakeError::Raced(_)) if attempt < RACE_RETRIES => {
                    attempt += 1;
                    self.refresh().await?;
                }
                other => {
                    self.delta = other?;
                    return Ok(());
                }
            }
        }
    }

    /// The next log offset this table has not yet taken, per partition `0..partitions`.
    pub async fn positions(&self, partitions: u32) -> Result<Vec<u64>, LakeError> {
        let mut out = vec![0; partitions as usize];
        let Ok(state) = self.delta.snapshot() else {
            return Ok(out);
        };
        for (p, slot) in out.iter_mut().enumerate() {
            let version = state
                .transaction_version(
                    self.delta.log_store().as_ref(),
                    app_id(self.schema.name, p as u32),
                )
                .await
                .map_err(LakeError::delta(self.schema.name))?;
            *slot = version.map_or(0, |v| v.max(0) as u64);
        }
        Ok(out)
    }

    /// Appends `rows` in one commit that also records `progress` (partition → next offset) as
    /// application transactions. `rows` may be empty (a progress-only commit). Returns the new
    /// Delta version.
    pub async fn append(
        &mut self,
        rows: &[Row],
        progress: &HashMap<u32, u64>,
        key_id: &str,
    ) -> Result<u64, LakeError> {
        let batch = self.batch_of(rows)?;
        self.append_batch(batch, progress, key_id).await
    }

    /// `rows` (of this table) as one record batch, `None` when there are none.
    pub fn batch_of(&self, rows: &[Row]) -> Result<Option<RecordBatch>, LakeError> {
        if rows.is_empty() {
            return Ok(None);
        }
        columnar::record_batch(self.schema, &self.arrow, rows.iter())
            .map(Some)
            .map_err(|source| LakeError::Arrow {
                table: self.schema.name.into(),
                source,
            })
    }

    /// Like [`LakeTable::append`], with the rows already a record batch of this table's schema.
    pub async fn append_batch(
        &mut self,
        batch: Option<RecordBatch>,
        progress: &HashMap<u32, u64>,
        key_id: &str,
    ) -> Result<u64, LakeError> {
        let name = self.schema.name;
        let mut properties = CommitProperties::default()
            .with_metadata(commit_metadata(key_id))
            .with_application_transactions(
                progress
                    .iter()
                    .map(|(p, next)| Transaction::new(app_id(name, *p), *next as i64))
                    .collect(),
            );
        // Lake commits are small and frequent; expired log entries go at checkpoints.
        properties = properties.with_cleanup_expired_logs(Some(true));
        let mut writer = RecordBatchWriter::for_table(&self.delta)
            .map_err(LakeError::delta(name))?
            .with_writer_properties(writer_properties(self.compression))
            .with_commit_properties(properties);
        if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
            writer.write(batch).await.map_err(LakeError::delta(name))?;
        }
        let version = writer
            .flush_and_commit(&mut self.delta)
            .await
            .map_err(LakeError::delta(name))?;
        Ok(version)
    }
}

/// Opens (or prepares to create) the Delta table at `url`.
pub(crate) async fn open_url(
    url: &url::Url,
    options: &HashMap<String, String>,
) -> Result<DeltaTable, DeltaTableError> {
    crate::storage::register_s3();
    let mut table = deltalake::DeltaTableBuilder::from_url(url.clone())?
        .with_storage_options(options.clone())
        .build()?;
    // Loading a location with no log makes delta-kernel log an error; look first.
    if !table.log_store().is_delta_table_location().await? {
        return Ok(table);
    }
    match table.load().await {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(table),
        Err(e) => Err(e),
    }
}
