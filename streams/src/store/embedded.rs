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

use super::{CkRange, Mutation, Order, Row, StateStore, StoreError, WriteBatch, prefix_successor};

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
    config: EmbeddedStoreConfig,
}

/// Longest key fjall accepts (it panics on longer ones).
const MAX_KEY: usize = u16::MAX as usize;
/// Longest `pk ++ ck`: the key also holds the 2-byte length of pk.
const MAX_PK_CK: usize = MAX_KEY - 2;
const KEYSPACE_PREFIX: &str = "t.";
/// Expired rows removed per purge commit (bounds memory and how long writers wait).
const PURGE_CHUNK: usize = 10_000;

impl EmbeddedStore {
    /// Opens (recovering if needed) or creates the store under `config.dir`, and starts the
    /// purge thread.
    pub fn open(config: EmbeddedStoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| storage("create store dir", e))?;
        // One background worker, as in the events crate's log: more only compete with the jobs
        // on a small machine.
        let db = Database::builder(&config.dir)
            .cache_size(config.cache_bytes)
            .worker_threads(1)
            .open()
            .map_err(|e| storage("open store", e))?;
        let interval = config.purge_interval;
        let inner = Arc::new(Inner {
            db,
            tables: RwLock::new(HashMap::new()),
            write_gate: RwLock::new(()),
            config,
        });
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

    /// Every table on disk, opened or not.
    fn table_names(&self) -> Vec<String> {
        self.db
            .list_keyspace_names()
            .iter()
            .filter_map(|n| n.strip_prefix(KEYSPACE_PREFIX).map(str::to_owned))
            .collect()
    }

    fn now(&self) -> i64 {
        (self.config.now_ms)()
    }

    fn purge_expired(&self, table: &str) -> Result<u64, StoreError> {
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

    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
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

impl StateStore for EmbeddedStore {
    fn get(&self, table: &str, pk: &[u8], ck: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let key = KeyBuf::new(pk, ck)?;
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
