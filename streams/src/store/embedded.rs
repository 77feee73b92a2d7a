//! The embedded `StateStore` backend: local disk, on the fjall LSM engine.
//!
//! Layout: one fjall database under `dir`, one keyspace per table (`t.<table>`), created on the
//! first write. A row's key is `u16 big-endian length of pk ++ pk ++ ck`, so partitions never
//! mix (`a` and `ab` differ in their length prefix) and a partition's rows are contiguous and
//! ordered by clustering key. A row's value is a flag byte (0: no TTL, 1: TTL), for a TTL the
//! expiry as 8 big-endian bytes of unix milliseconds, then the user's value.
//!
//! Atomicity: a [`WriteBatch`] becomes one fjall batch across keyspaces (one journal entry, one
//! sequence number). Reads go through a fjall snapshot, so they never see half a batch (fjall's
//! plain keyspace reads do: they read at the newest sequence number, which a batch in progress
//! already uses). Within a batch the mutations are resolved in order first (last write to a key
//! wins); a `DeleteRange` becomes removes of the keys in range at that point — those already
//! stored and those written earlier in the same batch — and is atomic with the batch's other
//! writes: batches holding one take the store's write gate exclusively, so no other batch
//! commits between the range read and the commit.
//!
//! Durability: `apply` writes the batch to the journal and hands it to the OS without fsync
//! (it survives a process crash, not a power loss); [`StateStore::sync`] fsyncs the journal. The
//! journal is sequential, so batches become durable in the order they were applied.
//!
//! TTL: rows past their expiry are hidden from every read; [`EmbeddedStore::purge_expired`]
//! deletes them, and a background thread runs it for every table every `purge_interval`.
//!
//! Resident tables ([`EmbeddedStoreConfig::resident_tables`]) are held in memory and made
//! durable by a changelog record in the same fjall batch, with checkpoints (see
//! [`super::resident`]); they keep every guarantee above. Their keyspaces are `r.<table>.log`
//! and `r.<table>.parts`; a table found there on disk is resident whatever the configuration
//! says, and a table configured resident whose rows are still plain is moved into memory when
//! the store opens.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as FjallBatch, PersistMode,
    Readable, Slice, Snapshot,
};

use super::lane;
use super::resident::{Grouped, LogState, Part, Rows};
use super::{
    CkRange, Lane, Mutation, Order, Row, StateStore, StoreError, WriteBatch, prefix_successor,
};

/// Which tables a store holds in memory (see [`super::resident`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ResidentTables {
    /// None: every table is an LSM table.
    #[default]
    None,
    /// These tables.
    Named(Vec<String>),
    /// Every table (the contract suite runs so).
    All,
}

impl ResidentTables {
    fn includes(&self, table: &str) -> bool {
        match self {
            Self::None => false,
            Self::Named(names) => names.iter().any(|n| n == table),
            Self::All => true,
        }
    }
}

/// Settings of the embedded store.
#[derive(Clone)]
pub struct EmbeddedStoreConfig {
    /// Directory holding the store's files.
    pub dir: PathBuf,
    /// Block cache size in bytes, shared by all tables.
    pub cache_bytes: u64,
    /// Memtable size per table before it is flushed (memory use scales with tables × this).
    pub memtable_bytes: u64,
    /// The clock TTLs are measured against, in unix milliseconds. Tests inject their own.
    pub now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// How often the background thread purges expired rows; `None` disables it.
    pub purge_interval: Option<Duration>,
    /// Tables held in memory, durable through a changelog (see [`super::resident`]).
    pub resident_tables: ResidentTables,
    /// A resident table is checkpointed once its changelog holds more than this many bytes and
    /// more than the table's rows take in memory.
    pub checkpoint_bytes: u64,
}

impl EmbeddedStoreConfig {
    /// Defaults for a store under `dir`: 64 MiB cache, 16 MiB memtables, system clock, purge
    /// every 60 s.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache_bytes: 64 << 20,
            memtable_bytes: 16 << 20,
            now_ms: Arc::new(|| chrono::Utc::now().timestamp_millis()),
            purge_interval: Some(Duration::from_secs(60)),
            resident_tables: ResidentTables::None,
            checkpoint_bytes: 64 << 20,
        }
    }
}

impl std::fmt::Debug for EmbeddedStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStoreConfig")
            .field("dir", &self.dir)
            .field("cache_bytes", &self.cache_bytes)
            .field("memtable_bytes", &self.memtable_bytes)
            .field("purge_interval", &self.purge_interval)
            .field("resident_tables", &self.resident_tables)
            .field("checkpoint_bytes", &self.checkpoint_bytes)
            .finish_non_exhaustive()
    }
}

/// The embedded state store. Cheap to clone; the purge thread stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    // Declared first so it is dropped (and its thread joined) before `inner`: the database is
    // closed, and its directory free to reopen, once the last clone is gone.
    _purge: Arc<PurgeThread>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.config.dir)
            .finish()
    }
}

struct Inner {
    db: Database,
    /// Open keyspaces by table name.
    tables: RwLock<HashMap<String, Keyspace>>,
    /// Batches with a `DeleteRange` and purges (which read, then write) hold it exclusively;
    /// every other batch holds it shared. See the module docs.
    write_gate: RwLock<()>,
    /// Resident tables by name.
    resident: RwLock<HashMap<String, Arc<ResidentTable>>>,
    /// Held by every batch that writes a resident table, from its changelog sequence number to
    /// its rows in memory, so memory changes in changelog order.
    resident_gate: std::sync::Mutex<()>,
    config: EmbeddedStoreConfig,
}

/// A resident table: its rows in memory, its changelog and checkpoint keyspaces.
struct ResidentTable {
    rows: Rows,
    /// Changelog records by sequence number (u64 BE).
    log: Keyspace,
    /// Checkpoint blocks by partition key.
    parts: Keyspace,
    state: std::sync::Mutex<LogState>,
}

/// Longest key fjall accepts (it panics on longer ones).
const MAX_KEY: usize = u16::MAX as usize;
/// Longest `pk ++ ck`: the key also holds the 2-byte length of pk.
const MAX_PK_CK: usize = MAX_KEY - 2;
const KEYSPACE_PREFIX: &str = "t.";
const RESIDENT_PREFIX: &str = "r.";
const RESIDENT_LOG_SUFFIX: &str = ".log";
const RESIDENT_PARTS_SUFFIX: &str = ".parts";
/// Most bytes of checkpoint blocks per fjall batch.
const CHECKPOINT_CHUNK: usize = 32 << 20;
/// Expired rows removed per purge commit (bounds memory and how long writers wait).
const PURGE_CHUNK: usize = 10_000;

impl EmbeddedStore {
    /// Opens (recovering if needed) or creates the store under `config.dir`, and starts the
    /// purge thread.
    pub fn open(config: EmbeddedStoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| storage("create store dir", e))?;
        // One background worker, as in the events crate's log: more only compete with the jobs
        // on a small machine.
        // Large journal values are resident tables' changelog records (a fan-out step's feed
        // rows): compressing them cost a tenth of such a step and saved little (ids).
        let db = Database::builder(&config.dir)
            .cache_size(config.cache_bytes)
            .worker_threads(1)
            .journal_compression(fjall::CompressionType::None)
            .open()
            .map_err(|e| storage("open store", e))?;
        let interval = config.purge_interval;
        let inner = Arc::new(Inner {
            db,
            tables: RwLock::new(HashMap::new()),
            write_gate: RwLock::new(()),
            resident: RwLock::new(HashMap::new()),
            resident_gate: std::sync::Mutex::new(()),
            config,
        });
        inner.open_resident_tables()?;
        let purge = PurgeThread::spawn(Arc::downgrade(&inner), interval)?;
        Ok(Self {
            _purge: Arc::new(purge),
            inner,
        })
    }

    /// Deletes the expired rows of `table` now; returns how many. The background thread also
    /// does this every `purge_interval`.
    pub fn purge_expired(&self, table: &str) -> Result<u64, StoreError> {
        self.inner.purge_expired(table)
    }

    /// Rows physically stored in `table`, expired ones not yet purged included. A full scan:
    /// for tests and operators.
    pub fn stored_rows(&self, table: &str) -> Result<u64, StoreError> {
        if let Some(t) = self.inner.resident_table(table) {
            return Ok(t.rows.count());
        }
        let Some(ks) = self.inner.lookup(table)? else {
            return Ok(0);
        };
        let mut n = 0;
        for kv in self.inner.db.snapshot().iter(&ks) {
            kv.key().map_err(|e| storage("count rows", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Bytes the store's files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.db.disk_space().unwrap_or(0)
    }

    /// Memory the rows of resident tables take (arenas without dead bytes, plus their indexes).
    pub fn resident_bytes(&self) -> u64 {
        self.inner.resident_bytes()
    }
}

impl Inner {
    /// The keyspace of an existing table, opening it if it exists on disk but not yet here.
    fn lookup(&self, table: &str) -> Result<Option<Keyspace>, StoreError> {
        if let Some(ks) = self.tables.read().expect("tables lock").get(table) {
            return Ok(Some(ks.clone()));
        }
        validate_table(table)?;
        if !self.db.keyspace_exists(&keyspace_name(table)) {
            return Ok(None);
        }
        self.open_table(table).map(Some)
    }

    /// The keyspace of `table`, creating it if needed.
    fn table(&self, table: &str) -> Result<Keyspace, StoreError> {
        // Bind first: a guard in a `match` scrutinee would live through `open_table`'s write lock.
        let cached = self.tables.read().expect("tables lock").get(table).cloned();
        match cached {
            Some(ks) => Ok(ks),
            None => {
                validate_table(table)?;
                self.open_table(table)
            }
        }
    }

    fn open_table(&self, table: &str) -> Result<Keyspace, StoreError> {
        let mut tables = self.tables.write().expect("tables lock");
        if let Some(ks) = tables.get(table) {
            return Ok(ks.clone());
        }
        let memtable = self.config.memtable_bytes.max(1 << 20);
        let ks = self
            .db
            .keyspace(&keyspace_name(table), || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable)
            })
            .map_err(|e| storage("open table", e))?;
        tables.insert(table.to_owned(), ks.clone());
        Ok(ks)
    }

    /// Every table on disk, opened or not, resident ones included.
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .db
            .list_keyspace_names()
            .iter()
            .filter_map(|n| n.strip_prefix(KEYSPACE_PREFIX).map(str::to_owned))
            .collect();
        names.extend(
            self.resident
                .read()
                .expect("resident tables")
                .keys()
                .cloned(),
        );
        names.sort_unstable();
        names.dedup();
        names
    }

    fn now(&self) -> i64 {
        (self.config.now_ms)()
    }

    fn purge_expired(&self, table: &str) -> Result<u64, StoreError> {
        if let Some(t) = self.resident_table(table) {
            return self.purge_resident(&t);
        }
        let Some(ks) = self.lookup(table)? else {
            return Ok(0);
        };
        let now = self.now();
        let mut candidates = Vec::new();
        let mut purged = 0;
        for kv in self.db.snapshot().iter(&ks) {
            let (k, v) = kv.into_inner().map_err(|e| storage("purge scan", e))?;
            if live_value(&v, now)?.is_none() {
                candidates.push(k);
                if candidates.len() == PURGE_CHUNK {
                    purged += self.remove_if_expired(&ks, &mut candidates, now)?;
                }
            }
        }
        purged += self.remove_if_expired(&ks, &mut candidates, now)?;
        purged_rows(purged);
        Ok(purged)
    }

    /// Removes the rows of `keys` that are still expired: a batch may have rewritten one since
    /// the scan saw it, so each is checked again under the exclusive write gate.
    fn remove_if_expired(
        &self,
        ks: &Keyspace,
        keys: &mut Vec<Slice>,
        now: i64,
    ) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let _gate = self.write_gate.write().expect("write gate");
        let snapshot = self.db.snapshot();
        let mut batch = FjallBatch::with_capacity(self.db.clone(), keys.len())
            .durability(Some(PersistMode::Buffer));
        let mut n = 0;
        for k in keys.drain(..) {
            let current = snapshot.get(ks, &k).map_err(|e| storage("purge read", e))?;
            if let Some(v) = current
                && live_value(&v, now)?.is_none()
            {
                batch.remove(ks, k);
                n += 1;
            }
        }
        batch.commit().map_err(|e| storage("purge commit", e))?;
        Ok(n)
    }

    fn apply(&self, mut batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let lanes = std::mem::take(&mut batch.lanes);
        if self.config.resident_tables == ResidentTables::None
            && self.resident.read().expect("resident tables").is_empty()
        {
            lanes_to_mutations(&mut batch, &lanes)?;
            return self.apply_plain(batch, Vec::new());
        }
        // Per resident table, its changelog records: its mutations encoded (one record), then
        // each of its lanes as a record of its own, in order.
        let mut resident: Vec<(Arc<ResidentTable>, Vec<Vec<u8>>)> = Vec::new();
        let mut plain = Vec::with_capacity(batch.mutations.len());
        let now = self.now();
        let mut last: Option<(&'static str, Option<Arc<ResidentTable>>)> = None;
        let mut lookup = |table: &'static str| -> Result<Option<Arc<ResidentTable>>, StoreError> {
            // Batches come in runs of one table: look the table up once per run.
            if let Some((t, r)) = &last
                && std::ptr::eq(*t, table)
            {
                return Ok(r.clone());
            }
            let r = self.resident_for_write(table)?;
            last = Some((table, r.clone()));
            Ok(r)
        };
        let records_of = |resident: &mut Vec<(Arc<ResidentTable>, Vec<Vec<u8>>)>,
                          t: Arc<ResidentTable>| {
            match resident.iter().position(|(r, _)| Arc::ptr_eq(r, &t)) {
                Some(i) => i,
                None => {
                    resident.push((t, vec![Vec::new()]));
                    resident.len() - 1
                }
            }
        };
        for m in batch.mutations.drain(..) {
            let Some(t) = lookup(m.table())? else {
                plain.push(m);
                continue;
            };
            let i = records_of(&mut resident, t);
            encode_mutation(&mut resident[i].1[0], &m, now)?;
        }
        batch.mutations = plain;
        let mut plain_lanes = Vec::new();
        for l in lanes {
            match lookup(l.table)? {
                Some(t) => {
                    let i = records_of(&mut resident, t);
                    resident[i].1.push(l.ops);
                }
                None => plain_lanes.push(l),
            }
        }
        lanes_to_mutations(&mut batch, &plain_lanes)?;
        for (_, records) in &mut resident {
            records.retain(|r| !r.is_empty());
        }
        resident.retain(|(_, records)| !records.is_empty());
        if resident.is_empty() {
            return self.apply_plain(batch, Vec::new());
        }
        let _gate = self.resident_gate.lock().expect("resident gate");
        self.apply_resident_locked(batch, resident)
    }

    /// Commits `batch` with the changelog records of each resident table, then applies the
    /// records to memory and checkpoints where due. The caller holds `resident_gate`.
    fn apply_resident_locked(
        &self,
        batch: WriteBatch,
        resident: Vec<(Arc<ResidentTable>, Vec<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        let resident: Vec<(Arc<ResidentTable>, Vec<Slice>)> = resident
            .into_iter()
            .map(|(t, rs)| (t, rs.into_iter().map(Slice::from).collect()))
            .collect();
        // Checked and grouped before anything commits (memory must be able to follow every
        // record), and applied from the records' bytes after.
        let grouped: Vec<Vec<Grouped>> = resident
            .iter()
            .map(|(_, records)| records.iter().map(|r| Grouped::of(r)).collect())
            .collect::<Result<_, _>>()?;
        for (t, records) in &resident {
            let first = t.state.lock().expect("resident state").next_seq;
            for (seq, record) in (first..).zip(records) {
                entries.push((
                    t.log.clone(),
                    Slice::from(seq.to_be_bytes().to_vec()),
                    record.clone(),
                ));
            }
        }
        self.apply_plain(batch, entries)?;
        for ((t, records), grouped) in resident.iter().zip(&grouped) {
            // The records are committed: memory follows them. A failure here (a partition past
            // 4 GiB) leaves memory behind the disk until a restart replays the record.
            let mut state = t.state.lock().expect("resident state");
            let mut applied = Ok(());
            for (record, grouped) in records.iter().zip(grouped) {
                state.next_seq += 1;
                state.log_bytes += record.len() as u64;
                let LogState { dirty, .. } = &mut *state;
                applied = applied.and_then(|()| t.rows.apply_grouped(record, grouped, dirty));
            }
            drop(state);
            applied?;
            metrics::gauge!("philo_state_store_resident_bytes").set(self.resident_bytes() as f64);
            if let Err(e) = self.checkpoint_if_due(t) {
                tracing::warn!(error = %e, "resident table checkpoint failed; retried later");
            }
        }
        Ok(())
    }

    /// Memory the rows of every resident table take.
    fn resident_bytes(&self) -> u64 {
        self.resident
            .read()
            .expect("resident tables")
            .values()
            .map(|t| t.rows.live_bytes())
            .sum()
    }

    /// Writes a checkpoint of `t` when its changelog has outgrown both the floor and the table.
    fn checkpoint_if_due(&self, t: &ResidentTable) -> Result<(), StoreError> {
        let mut state = t.state.lock().expect("resident state");
        if state.log_bytes < self.config.checkpoint_bytes.max(t.rows.live_bytes()) {
            return Ok(());
        }
        let mut out =
            FjallBatch::with_capacity(self.db.clone(), 0).durability(Some(PersistMode::Buffer));
        let mut size = 0usize;
        for pk in &state.dirty {
            match t.rows.checkpoint_block(pk) {
                Some(block) => {
                    size += block.len();
                    out.insert(&t.parts, pk.as_ref(), block);
                }
                None => out.remove(&t.parts, pk.as_ref()),
            }
            if size >= CHECKPOINT_CHUNK {
                out.commit().map_err(|e| storage("checkpoint", e))?;
                out = FjallBatch::with_capacity(self.db.clone(), 0)
                    .durability(Some(PersistMode::Buffer));
                size = 0;
            }
        }
        for seq in state.first_seq..state.next_seq {
            out.remove(&t.log, seq.to_be_bytes());
        }
        out.commit().map_err(|e| storage("checkpoint", e))?;
        state.first_seq = state.next_seq;
        state.log_bytes = 0;
        state.dirty.clear();
        metrics::counter!("philo_state_store_checkpoints_total").increment(1);
        Ok(())
    }

    /// Deletes the expired rows of a resident table (under the gate: no batch rewrites one
    /// between the check and the delete).
    fn purge_resident(&self, t: &Arc<ResidentTable>) -> Result<u64, StoreError> {
        let _gate = self.resident_gate.lock().expect("resident gate");
        let now = self.now();
        let mut record = Vec::new();
        let mut n = 0;
        for pk in t.rows.pks() {
            t.rows.with_part(&pk, |p| {
                for (ck, v) in p.rows() {
                    if matches!(live_value(v, now), Ok(None)) {
                        lane::delete(&mut record, &pk, ck);
                        n += 1;
                    }
                }
            });
        }
        if n > 0 {
            self.apply_resident_locked(WriteBatch::new(), vec![(t.clone(), vec![record])])?;
        }
        purged_rows(n);
        Ok(n)
    }

    /// The resident table `table`, if it is one.
    fn resident_table(&self, table: &str) -> Option<Arc<ResidentTable>> {
        self.resident
            .read()
            .expect("resident tables")
            .get(table)
            .cloned()
    }

    /// The resident table `table` if it is or is configured to be one (created then).
    fn resident_for_write(&self, table: &str) -> Result<Option<Arc<ResidentTable>>, StoreError> {
        if let Some(t) = self.resident_table(table) {
            return Ok(Some(t));
        }
        if !self.config.resident_tables.includes(table) {
            return Ok(None);
        }
        validate_table(table)?;
        self.open_resident(table).map(Some)
    }

    /// Opens every resident table on disk or configured, recovering each from its checkpoint
    /// and changelog; moves a configured table's plain rows into memory.
    fn open_resident_tables(&self) -> Result<(), StoreError> {
        let mut names: Vec<String> = self
            .db
            .list_keyspace_names()
            .iter()
            .filter_map(|n| {
                n.strip_prefix(RESIDENT_PREFIX)
                    .and_then(|n| n.strip_suffix(RESIDENT_LOG_SUFFIX))
                    .map(str::to_owned)
            })
            .collect();
        if let ResidentTables::Named(configured) = &self.config.resident_tables {
            for n in configured {
                validate_table(n)?;
                names.push(n.clone());
            }
        }
        names.sort_unstable();
        names.dedup();
        for name in names {
            self.open_resident(&name)?;
        }
        Ok(())
    }

    fn open_resident(&self, table: &str) -> Result<Arc<ResidentTable>, StoreError> {
        let mut map = self.resident.write().expect("resident tables");
        if let Some(t) = map.get(table) {
            return Ok(t.clone());
        }
        let memtable = self.config.memtable_bytes.max(1 << 20);
        let open = |suffix: &str| {
            self.db
                .keyspace(&format!("{RESIDENT_PREFIX}{table}{suffix}"), || {
                    KeyspaceCreateOptions::default().max_memtable_size(memtable)
                })
                .map_err(|e| storage("open resident table", e))
        };
        let t = ResidentTable {
            rows: Rows::new(),
            log: open(RESIDENT_LOG_SUFFIX)?,
            parts: open(RESIDENT_PARTS_SUFFIX)?,
            state: std::sync::Mutex::new(LogState::default()),
        };
        let snapshot = self.db.snapshot();
        for kv in snapshot.iter(&t.parts) {
            let (pk, block) = kv.into_inner().map_err(|e| storage("load checkpoint", e))?;
            t.rows.load(&pk, Part::decode(&block)?);
        }
        {
            let mut state = t.state.lock().expect("resident state");
            let mut first = None;
            for kv in snapshot.iter(&t.log) {
                let (k, record) = kv
                    .into_inner()
                    .map_err(|e| storage("replay changelog", e))?;
                let seq = u64::from_be_bytes(
                    k.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Storage("corrupt changelog key".into()))?,
                );
                t.rows.apply_record(&record, &mut state.dirty)?;
                first.get_or_insert(seq);
                state.next_seq = seq + 1;
                state.log_bytes += record.len() as u64;
            }
            state.first_seq = first.unwrap_or(state.next_seq);
        }
        // Rows of a table that was plain until now move in: imported, checkpointed, then
        // cleared (a crash before the clear imports the same rows again: nothing else has
        // written the table yet).
        if self.db.keyspace_exists(&keyspace_name(table)) {
            let plain = self.open_table(table)?;
            let mut record = Vec::new();
            let mut rows = 0;
            for kv in self.db.snapshot().iter(&plain) {
                let (k, v) = kv.into_inner().map_err(|e| storage("import rows", e))?;
                let (pk, ck) = decode_key(&k)?;
                lane::put(&mut record, pk, ck, &[], &v);
                rows += 1;
            }
            if rows > 0 {
                t.rows.apply_record(&record, &mut Vec::new())?;
                let mut out = FjallBatch::with_capacity(self.db.clone(), 0)
                    .durability(Some(PersistMode::Buffer));
                for pk in t.rows.pks() {
                    if let Some(block) = t.rows.checkpoint_block(&pk) {
                        out.insert(&t.parts, pk.as_ref(), block);
                    }
                }
                out.commit().map_err(|e| storage("import rows", e))?;
                self.db
                    .persist(PersistMode::SyncAll)
                    .map_err(|e| storage("import rows", e))?;
                plain.clear().map_err(|e| storage("import rows", e))?;
                tracing::info!(table, rows, "moved a table's rows into memory");
            }
            self.tables.write().expect("tables lock").remove(table);
        }
        let t = Arc::new(t);
        map.insert(table.to_owned(), t.clone());
        Ok(t)
    }

    /// Applies `batch` to the LSM tables, committing `records` (keyspace, key, value: resident
    /// changelog records) in the same fjall batch.
    fn apply_plain(
        &self,
        batch: WriteBatch,
        records: Vec<(Keyspace, Slice, Slice)>,
    ) -> Result<(), StoreError> {
        let mutations = batch.mutations.len() as u64;
        let now = self.now();
        let has_range = batch
            .mutations
            .iter()
            .any(|m| matches!(m, Mutation::DeleteRange { .. }));
        let _exclusive = has_range.then(|| self.write_gate.write().expect("write gate"));
        let _shared = (!has_range).then(|| self.write_gate.read().expect("write gate"));
        if batch.unique_keys && !has_range {
            // Each key once: no order to resolve, straight into one fjall batch.
            let mut keyspaces: Vec<(&'static str, Keyspace)> = Vec::new();
            let mut out = FjallBatch::with_capacity(self.db.clone(), batch.mutations.len())
                .durability(Some(PersistMode::Buffer));
            for m in batch.mutations {
                let (t, key, value) = self.single_write(&mut keyspaces, m, now)?;
                match value {
                    Some(v) => out.insert(&keyspaces[t].1, key, v),
                    None => out.remove(&keyspaces[t].1, key),
                }
            }
            for (ks, key, record) in records {
                out.insert(&ks, key, record);
            }
            out.commit().map_err(|e| storage("apply batch", e))?;
            batch_applied(mutations);
            return Ok(());
        }
        // Resolve the batch in order first: fjall gives every item of a batch the same sequence
        // number, so two writes to one key must not both reach it.
        let mut keyspaces: Vec<(&'static str, Keyspace)> = Vec::new();
        let mut writes: BTreeMap<(usize, Slice), Option<Slice>> = BTreeMap::new();
        let mut snapshot: Option<Snapshot> = None;
        for m in batch.mutations {
            match m {
                Mutation::DeleteRange { table, pk, range } => {
                    let t = self.batch_table(&mut keyspaces, table)?;
                    let Some((start, end)) = key_bounds(&pk, &range)? else {
                        continue;
                    };
                    let snapshot = snapshot.get_or_insert_with(|| self.db.snapshot());
                    for kv in snapshot.range(&keyspaces[t].1, (start.clone(), end.clone())) {
                        let key = kv.key().map_err(|e| storage("delete range", e))?;
                        writes.insert((t, key), None);
                    }
                    // Writes earlier in this batch are in range too.
                    let lo = start.map(|k| (t, Slice::new(k.as_ref())));
                    let hi = match end {
                        Bound::Unbounded => Bound::Excluded((t + 1, Slice::empty())),
                        end => end.map(|k| (t, Slice::new(k.as_ref()))),
                    };
                    for (_, v) in writes.range_mut((lo, hi)) {
                        *v = None;
                    }
                }
                single => {
                    let (t, key, value) = self.single_write(&mut keyspaces, single, now)?;
                    writes.insert((t, key), value);
                }
            }
        }
        let mut out = FjallBatch::with_capacity(self.db.clone(), writes.len())
            .durability(Some(PersistMode::Buffer));
        for ((t, key), value) in writes {
            let ks = &keyspaces[t].1;
            match value {
                Some(v) => out.insert(ks, key, v),
                None => out.remove(ks, key),
            }
        }
        for (ks, key, record) in records {
            out.insert(&ks, key, record);
        }
        out.commit().map_err(|e| storage("apply batch", e))?;
        batch_applied(mutations);
        Ok(())
    }

    /// A put or delete as (keyspace index, stored key, stored value or `None` for a delete).
    fn single_write(
        &self,
        keyspaces: &mut Vec<(&'static str, Keyspace)>,
        m: Mutation,
        now: i64,
    ) -> Result<(usize, Slice, Option<Slice>), StoreError> {
        let (table, pk, ck, value) = match m {
            Mutation::Put {
                table,
                pk,
                ck,
                value,
                ttl,
            } => {
                let expiry = ttl.map(|ttl| now.saturating_add(ttl_ms(ttl)));
                (table, pk, ck, Some(encode_value(&value, expiry)?))
            }
            Mutation::Delete { table, pk, ck } => (table, pk, ck, None),
            Mutation::DeleteRange { .. } => {
                return Err(StoreError::Storage(
                    "a range delete is not a single write".into(),
                ));
            }
        };
        let t = self.batch_table(keyspaces, table)?;
        let key = Slice::new(KeyBuf::new(&pk, &ck)?.as_ref());
        Ok((t, key, value))
    }

    /// Index of `table` in this batch's keyspaces, opening it on first use.
    fn batch_table(
        &self,
        keyspaces: &mut Vec<(&'static str, Keyspace)>,
        table: &'static str,
    ) -> Result<usize, StoreError> {
        if let Some(i) = keyspaces.iter().position(|(t, _)| *t == table) {
            return Ok(i);
        }
        keyspaces.push((table, self.table(table)?));
        Ok(keyspaces.len() - 1)
    }
}

/// Refuses keys an LSM table would refuse (see [`KeyBuf::new`]).
fn check_key(pk: &[u8], ck: &[u8]) -> Result<(), StoreError> {
    let len = pk.len() + ck.len();
    if len > MAX_PK_CK {
        return Err(StoreError::KeyTooLong(len));
    }
    Ok(())
}

/// Appends a mutation of a resident table to its changelog record: keys checked as for LSM
/// rows, the value stored with its flag byte and expiry.
fn encode_mutation(record: &mut Vec<u8>, m: &Mutation, now: i64) -> Result<(), StoreError> {
    match m {
        Mutation::Put {
            pk, ck, value, ttl, ..
        } => {
            check_key(pk, ck)?;
            let mut flag = [0u8; 9];
            let flag = match ttl {
                None => &[NO_TTL][..],
                Some(ttl) => {
                    flag[0] = WITH_TTL;
                    flag[1..].copy_from_slice(&now.saturating_add(ttl_ms(*ttl)).to_be_bytes());
                    &flag[..]
                }
            };
            lane::put(record, pk, ck, flag, value);
        }
        Mutation::Delete { pk, ck, .. } => {
            check_key(pk, ck)?;
            lane::delete(record, pk, ck);
        }
        Mutation::DeleteRange { pk, range, .. } => {
            check_key(pk, &[])?;
            lane::delete_range(record, pk, range);
        }
    }
    Ok(())
}

/// Lanes of LSM tables as plain mutations, after the batch's own (order then matters, so the
/// batch is resolved in order).
fn lanes_to_mutations(batch: &mut WriteBatch, lanes: &[Lane]) -> Result<(), StoreError> {
    for l in lanes {
        for op in lane::ops(&l.ops) {
            batch.unique_keys = false;
            batch.mutations.push(op?.to_mutation(l.table)?);
        }
    }
    Ok(())
}

impl StateStore for EmbeddedStore {
    fn get(&self, table: &str, pk: &[u8], ck: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let key = KeyBuf::new(pk, ck)?;
        if let Some(t) = self.inner.resident_table(table) {
            let now = self.inner.now();
            return t
                .rows
                .with_part(pk, |p| match p.get(ck) {
                    Some(v) => live_value(v, now).map(|v| v.map(Bytes::copy_from_slice)),
                    None => Ok(None),
                })
                .unwrap_or(Ok(None));
        }
        let Some(ks) = self.inner.lookup(table)? else {
            return Ok(None);
        };
        let Some(v) = self
            .inner
            .db
            .snapshot()
            .get(&ks, &key)
            .map_err(|e| storage("get", e))?
        else {
            return Ok(None);
        };
        Ok(live_value(&v, self.inner.now())?.map(Bytes::copy_from_slice))
    }

    fn scan(
        &self,
        table: &str,
        pk: &[u8],
        range: &CkRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let bounds = key_bounds(pk, range)?;
        if let Some(t) = self.inner.resident_table(table) {
            if bounds.is_none() || limit == 0 {
                return Ok(Vec::new());
            }
            let now = self.inner.now();
            return t
                .rows
                .with_part(pk, |p| {
                    let (lo, hi) = p.index_range(range);
                    let mut rows = Vec::new();
                    let mut push = |i: usize| -> Result<bool, StoreError> {
                        let (ck, v) = p.row(i);
                        if let Some(value) = live_value(v, now)? {
                            rows.push(Row {
                                ck: Bytes::copy_from_slice(ck),
                                value: Bytes::copy_from_slice(value),
                            });
                        }
                        Ok(rows.len() < limit)
                    };
                    match order {
                        Order::Asc => {
                            for i in lo..hi {
                                if !push(i)? {
                                    break;
                                }
                            }
                        }
                        Order::Desc => {
                            for i in (lo..hi).rev() {
                                if !push(i)? {
                                    break;
                                }
                            }
                        }
                    }
                    Ok(rows)
                })
                .unwrap_or(Ok(Vec::new()));
        }
        let Some(ks) = self.inner.lookup(table)? else {
            return Ok(Vec::new());
        };
        let Some(bounds) = bounds.filter(|_| limit > 0) else {
            return Ok(Vec::new());
        };
        let now = self.inner.now();
        let skip = 2 + pk.len();
        let iter = self.inner.db.snapshot().range(&ks, bounds);
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match order {
            Order::Asc => Box::new(iter),
            Order::Desc => Box::new(iter.rev()),
        };
        let mut rows = Vec::new();
        for kv in iter {
            let (k, v) = kv.into_inner().map_err(|e| storage("scan", e))?;
            if let Some(value) = live_value(&v, now)? {
                rows.push(Row {
                    ck: Bytes::copy_from_slice(&k[skip..]),
                    value: Bytes::copy_from_slice(value),
                });
                if rows.len() == limit {
                    break;
                }
            }
        }
        Ok(rows)
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.inner.apply(batch)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .persist(PersistMode::SyncAll)
            .map_err(|e| storage("sync", e))?;
        metrics::counter!("philo_state_store_syncs_total").increment(1);
        Ok(())
    }

    fn truncate(&self, table: &str) -> Result<(), StoreError> {
        if let Some(t) = self.inner.resident_table(table) {
            let _gate = self.inner.resident_gate.lock().expect("resident gate");
            let mut state = t.state.lock().expect("resident state");
            t.log.clear().map_err(|e| storage("truncate", e))?;
            t.parts.clear().map_err(|e| storage("truncate", e))?;
            t.rows.clear();
            state.first_seq = state.next_seq;
            state.log_bytes = 0;
            state.dirty.clear();
            return Ok(());
        }
        match self.inner.lookup(table)? {
            Some(ks) => ks.clear().map_err(|e| storage("truncate", e)),
            None => Ok(()),
        }
    }

    fn for_each(
        &self,
        table: &str,
        visit: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if let Some(t) = self.inner.resident_table(table) {
            let now = self.inner.now();
            for pk in t.rows.pks() {
                // A copy per partition: the visitor runs without the shard's lock.
                let Some(part) = t.rows.with_part(&pk, Part::clone) else {
                    continue;
                };
                for (ck, v) in part.rows() {
                    if let Some(value) = live_value(v, now)?
                        && !visit(&pk, ck, value)
                    {
                        return Ok(());
                    }
                }
            }
            return Ok(());
        }
        let Some(ks) = self.inner.lookup(table)? else {
            return Ok(());
        };
        let now = self.inner.now();
        for kv in self.inner.db.snapshot().iter(&ks) {
            let (k, v) = kv.into_inner().map_err(|e| storage("for_each", e))?;
            let (pk, ck) = decode_key(&k)?;
            if let Some(value) = live_value(&v, now)?
                && !visit(pk, ck, value)
            {
                break;
            }
        }
        Ok(())
    }
}

/// Runs `purge_expired` for every table periodically until the store is dropped.
struct PurgeThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PurgeThread {
    fn spawn(inner: Weak<Inner>, interval: Option<Duration>) -> Result<Self, StoreError> {
        let Some(interval) = interval else {
            return Ok(Self {
                stop: None,
                handle: None,
            });
        };
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("philo-store-purge".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    let Some(inner) = inner.upgrade() else { break };
                    for table in inner.table_names() {
                        if let Err(e) = inner.purge_expired(&table) {
                            tracing::warn!(error = %e, table, "state store purge failed");
                        }
                    }
                }
            })
            .map_err(|e| storage("spawn purge thread", e))?;
        Ok(Self {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for PurgeThread {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread; joining means it no longer holds the database.
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn storage(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(format!("{what}: {e}"))
}

fn keyspace_name(table: &str) -> String {
    format!("{KEYSPACE_PREFIX}{table}")
}

fn validate_table(table: &str) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidTable(table.to_owned()))
    }
}

/// Milliseconds of a TTL, rounded up so a row never expires before its TTL has passed.
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// A storage key (`len(pk) ++ pk ++ ck`), on the stack when short so point reads and scan bounds
/// do not allocate. Hand-written: a tiny small-vector, as the workspace pins no such crate.
#[derive(Clone)]
enum KeyBuf {
    Inline([u8; 128], usize),
    Heap(Vec<u8>),
}

impl KeyBuf {
    fn new(pk: &[u8], ck: &[u8]) -> Result<Self, StoreError> {
        let len = pk.len() + ck.len();
        if len > MAX_PK_CK {
            return Err(StoreError::KeyTooLong(len));
        }
        let pk_len = (pk.len() as u16).to_be_bytes();
        let total = 2 + len;
        Ok(if total <= 128 {
            let mut buf = [0u8; 128];
            buf[..2].copy_from_slice(&pk_len);
            buf[2..2 + pk.len()].copy_from_slice(pk);
            buf[2 + pk.len()..total].copy_from_slice(ck);
            Self::Inline(buf, total)
        } else {
            let mut v = Vec::with_capacity(total);
            v.extend_from_slice(&pk_len);
            v.extend_from_slice(pk);
            v.extend_from_slice(ck);
            Self::Heap(v)
        })
    }
}

impl AsRef<[u8]> for KeyBuf {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::Inline(buf, len) => &buf[..*len],
            Self::Heap(v) => v,
        }
    }
}

type KeyBounds = (Bound<KeyBuf>, Bound<KeyBuf>);

/// The storage-key bounds of `range` in partition `pk`; `None` when the range is empty.
fn key_bounds(pk: &[u8], range: &CkRange) -> Result<Option<KeyBounds>, StoreError> {
    if ck_range_is_empty(range) {
        return Ok(None);
    }
    let start = match &range.start {
        Bound::Unbounded => Bound::Included(KeyBuf::new(pk, &[])?),
        Bound::Included(ck) => Bound::Included(KeyBuf::new(pk, ck)?),
        Bound::Excluded(ck) => Bound::Excluded(KeyBuf::new(pk, ck)?),
    };
    let end = match &range.end {
        Bound::Unbounded => {
            // Past every key of the partition. With pk within its limit the successor exists
            // and is no longer than the partition prefix.
            match prefix_successor(KeyBuf::new(pk, &[])?.as_ref()) {
                Some(succ) => Bound::Excluded(KeyBuf::Heap(succ)),
                None => Bound::Unbounded,
            }
        }
        Bound::Included(ck) => Bound::Included(KeyBuf::new(pk, ck)?),
        Bound::Excluded(ck) => Bound::Excluded(KeyBuf::new(pk, ck)?),
    };
    Ok(Some((start, end)))
}

/// Whether no clustering key can lie in `range`. Checked up front: fjall's and `BTreeMap`'s
/// range functions may panic on inverted bounds.
fn ck_range_is_empty(range: &CkRange) -> bool {
    match (&range.start, &range.end) {
        (_, Bound::Excluded(e)) if e.is_empty() => true,
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
            s >= e
        }
        _ => false,
    }
}

/// Splits a storage key into `(pk, ck)`.
fn decode_key(key: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let corrupt = || StoreError::Storage("corrupt row key".into());
    let len = key
        .get(..2)
        .ok_or_else(corrupt)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)?;
    let rest = &key[2..];
    if rest.len() < len {
        return Err(corrupt());
    }
    Ok(rest.split_at(len))
}

const NO_TTL: u8 = 0;
const WITH_TTL: u8 = 1;

/// A stored value: flag byte, optional expiry, user value. Written in one allocation.
fn encode_value(value: &[u8], expiry_ms: Option<i64>) -> Result<Slice, StoreError> {
    let mut header = [0u8; 9];
    let header = match expiry_ms {
        None => {
            header[0] = NO_TTL;
            &header[..1]
        }
        Some(at) => {
            header[0] = WITH_TTL;
            header[1..].copy_from_slice(&at.to_be_bytes());
            &header[..]
        }
    };
    let len = header.len() + value.len();
    Slice::from_reader(&mut header.chain(value), len).map_err(|e| storage("encode value", e))
}

/// The user value of a stored value, or `None` if it has expired at `now_ms`.
fn live_value(stored: &[u8], now_ms: i64) -> Result<Option<&[u8]>, StoreError> {
    match stored.split_first() {
        Some((&NO_TTL, value)) => Ok(Some(value)),
        Some((&WITH_TTL, rest)) if rest.len() >= 8 => {
            let (at, value) = rest.split_at(8);
            let at = i64::from_be_bytes(at.try_into().expect("8 bytes"));
            Ok((at > now_ms).then_some(value))
        }
        _ => Err(StoreError::Storage("corrupt row value".into())),
    }
}

// Metrics of the state store. They belong in the crate's `metrics.rs` once it has one.

fn batch_applied(mutations: u64) {
    metrics::counter!("philo_state_store_batches_total").increment(1);
    metrics::counter!("philo_state_store_mutations_total").increment(mutations);
}

fn purged_rows(rows: u64) {
    metrics::counter!("philo_state_store_purged_rows_total").increment(rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_partitions_apart_and_decode() {
        let a = KeyBuf::new(b"a", b"b").unwrap();
        let ab = KeyBuf::new(b"ab", b"").unwrap();
        assert_ne!(a.as_ref(), ab.as_ref());
        assert_eq!(decode_key(a.as_ref()).unwrap(), (&b"a"[..], &b"b"[..]));
        let long = KeyBuf::new(&[7u8; 300], b"ck").unwrap();
        assert!(matches!(long, KeyBuf::Heap(_)));
        assert_eq!(decode_key(long.as_ref()).unwrap().1, b"ck");
        assert!(decode_key(&[0, 5, 1]).is_err());
        assert!(matches!(
            KeyBuf::new(&[0u8; MAX_PK_CK], b"x"),
            Err(StoreError::KeyTooLong(65534))
        ));
        assert!(KeyBuf::new(&[0u8; MAX_PK_CK], b"").is_ok());
    }

    #[test]
    fn values_carry_expiry() {
        let plain = encode_value(b"v", None).unwrap();
        assert_eq!(&plain[..], b"\0v");
        assert_eq!(live_value(&plain, i64::MAX).unwrap(), Some(&b"v"[..]));
        let ttl = encode_value(b"v", Some(1_000)).unwrap();
        assert_eq!(ttl.len(), 10);
        assert_eq!(live_value(&ttl, 999).unwrap(), Some(&b"v"[..]));
        assert_eq!(live_value(&ttl, 1_000).unwrap(), None);
        assert!(live_value(b"", 0).is_err());
        assert!(live_value(b"\x01short", 0).is_err());
        assert!(live_value(b"\x07", 0).is_err());
    }

    #[test]
    fn empty_ranges_are_detected() {
        let r = |start, end| CkRange { start, end };
        let inc = |s: &[u8]| Bound::Included(s.to_vec());
        let exc = |s: &[u8]| Bound::Excluded(s.to_vec());
        assert!(ck_range_is_empty(&r(inc(b"b"), inc(b"a"))));
        assert!(!ck_range_is_empty(&r(inc(b"a"), inc(b"a"))));
        assert!(ck_range_is_empty(&r(inc(b"a"), exc(b"a"))));
        assert!(ck_range_is_empty(&r(exc(b"a"), inc(b"a"))));
        assert!(ck_range_is_empty(&r(Bound::Unbounded, exc(b""))));
        assert!(!ck_range_is_empty(&CkRange::all()));
        assert!(!ck_range_is_empty(&CkRange::prefix(b"\xff\xff")));
    }

    #[test]
    fn table_names_are_checked() {
        assert!(validate_table("follows_by_user_2").is_ok());
        assert!(validate_table(&"a".repeat(64)).is_ok());
        for bad in ["", "Feed", "feed-x", "feed.x", "fé", &"a".repeat(65)] {
            assert!(matches!(
                validate_table(bad),
                Err(StoreError::InvalidTable(_))
            ));
        }
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2_000);
        assert_eq!(ttl_ms(Duration::MAX), i64::MAX);
    }
}
