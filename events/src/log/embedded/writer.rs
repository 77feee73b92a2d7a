//! A shard's writer thread: offsets, group commit, fsync, acknowledgements.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use fjall::{Database, PersistMode};
use tokio::sync::{mpsc, oneshot};

use super::{Durability, TopicState, codec};
use crate::log::{LogError, Position, Record};

/// Records of one topic whose partitions all live in the writer's shard, in append order.
pub(crate) struct AppendRequest {
    pub topic: Arc<TopicState>,
    /// `partitions[i]` is `records[i]`'s partition (chosen by [`EmbeddedLog::append`]).
    ///
    /// [`EmbeddedLog::append`]: super::EmbeddedLog
    pub partitions: Vec<u32>,
    pub records: Vec<Record>,
    pub reply: oneshot::Sender<Result<Vec<Position>, LogError>>,
}

pub(crate) struct Writer {
    /// This shard's database. Only this thread writes its records; shard 0's journal is also
    /// fsync'd by topic creation and consumer-group commits.
    pub db: Database,
    pub rx: mpsc::Receiver<AppendRequest>,
    pub durability: Durability,
    pub max_batch_records: usize,
    pub fsyncs: Arc<AtomicU64>,
}

impl Writer {
    /// Runs until every sender is gone. Each turn takes everything queued (up to
    /// `max_batch_records`), writes it as one atomic batch, persists once, then answers all.
    pub fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut requests = vec![first];
            let mut count = requests[0].records.len();
            while count < self.max_batch_records {
                match self.rx.try_recv() {
                    Ok(r) => {
                        count += r.records.len();
                        requests.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.write(requests, count);
        }
    }

    fn write(&self, requests: Vec<AppendRequest>, count: usize) {
        let started = Instant::now();
        let mut batch = self.db.batch();
        // (topic name, partition) -> (next offset, running bytes), staged until durable.
        let mut staged: HashMap<(*const TopicState, u32), (u64, u64)> = HashMap::new();
        let mut answers = Vec::with_capacity(requests.len());
        for req in &requests {
            let mut positions = Vec::with_capacity(req.records.len());
            for (record, &partition) in req.records.iter().zip(&req.partitions) {
                let state = &req.topic.partitions[partition as usize];
                let entry = staged
                    .entry((Arc::as_ptr(&req.topic), partition))
                    .or_insert_with(|| {
                        (
                            state.durable_high.load(Ordering::Acquire),
                            state.cum_bytes.load(Ordering::Acquire),
                        )
                    });
                let offset = entry.0;
                entry.0 += 1;
                entry.1 += codec::record_size(record);
                batch.insert(
                    &state.keyspace,
                    // A 12-byte key: held inline by the engine, no heap copy.
                    &codec::key(partition, offset)[..],
                    codec::encode(record, entry.1),
                );
                positions.push(Position { partition, offset });
            }
            answers.push(positions);
        }
        let mode = match self.durability {
            Durability::Fsync => PersistMode::SyncAll,
            Durability::Fdatasync => PersistMode::SyncData,
            Durability::Buffered => PersistMode::Buffer,
        };
        let result = batch.commit().and_then(|()| {
            if mode != PersistMode::Buffer {
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            self.db.persist(mode)
        });
        match result {
            Ok(()) => {
                // Publish: raise watermarks only now that the batch is durable.
                for req in &requests {
                    let mut published = false;
                    // Per partition of the topic, not per record: a batch request holds hundreds
                    // of one partition's records. Other shards' partitions are never staged.
                    for (p, state) in req.topic.partitions.iter().enumerate() {
                        if let Some((next, cum)) =
                            staged.remove(&(Arc::as_ptr(&req.topic), p as u32))
                        {
                            state.cum_bytes.store(cum, Ordering::Release);
                            state.durable_high.store(next, Ordering::Release);
                            published = true;
                        }
                    }
                    // Once per topic and commit: a later request of the same topic finds its
                    // partitions already published.
                    if published {
                        req.topic.appended.send_modify(|n| *n += 1);
                    }
                }
                crate::metrics::group_commit(count, started.elapsed());
                for (req, positions) in requests.into_iter().zip(answers) {
                    let _ = req.reply.send(Ok(positions));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = count, "log group commit failed");
                crate::metrics::append_failed(count);
                for req in requests {
                    let _ = req
                        .reply
                        .send(Err(LogError::Storage(format!("append failed: {e}"))));
                }
            }
        }
    }
}
