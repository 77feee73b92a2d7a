//! Retention: delete, per partition, records older than `max_age` and the oldest records while
//! the partition holds more than `max_bytes_per_partition`; a background thread runs it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Inner, TopicState, codec, storage};
use crate::log::LogError;

impl Inner {
    pub(super) fn enforce_retention(&self, now_ms: i64) -> Result<u64, LogError> {
        const MAX_DELETES_PER_PASS: usize = 200_000;
        let topics: Vec<Arc<TopicState>> = self
            .topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect();
        let age_cutoff = self
            .config
            .max_age
            .map(|a| now_ms.saturating_sub(a.as_millis() as i64));
        let mut deleted = 0u64;
        for t in topics {
            for (pid, p) in t.partitions.iter().enumerate() {
                let pid = pid as u32;
                let low = p.low.load(Ordering::Acquire);
                let high = p.durable_high.load(Ordering::Acquire);
                if low >= high {
                    continue;
                }
                let size =
                    p.cum_bytes.load(Ordering::Acquire) - p.cum_at_low.load(Ordering::Acquire);
                let over_size = self
                    .config
                    .max_bytes_per_partition
                    .map_or(0, |max| size.saturating_sub(max));
                let mut batch = self.shards[p.shard].batch();
                let mut new_low = low;
                let start_cum = p.cum_at_low.load(Ordering::Acquire);
                let mut new_cum_at_low = start_cum;
                // Never delete the newest durable record: offsets resume from it after a restart.
                let range = codec::key(pid, low)..codec::key(pid, high - 1);
                for kv in p.keyspace.range(range).take(MAX_DELETES_PER_PASS) {
                    let (k, v) = kv.into_inner().map_err(|e| storage("retention scan", e))?;
                    let meta = codec::decode_meta(&v)?;
                    let too_old = age_cutoff.is_some_and(|c| meta.timestamp_ms < c);
                    if !too_old && new_cum_at_low - start_cum >= over_size {
                        break;
                    }
                    let (_, off) = codec::decode_key(&k)?;
                    new_cum_at_low = meta.cum_bytes;
                    batch.remove(&p.keyspace, k);
                    new_low = off + 1;
                }
                if new_low > low {
                    batch.commit().map_err(|e| storage("retention delete", e))?;
                    p.cum_at_low.store(new_cum_at_low, Ordering::Release);
                    p.low.store(new_low, Ordering::Release);
                    deleted += new_low - low;
                    crate::metrics::retention_deleted(new_low - low);
                }
            }
        }
        Ok(deleted)
    }
}

/// Runs retention periodically until the log is dropped.
pub(super) struct RetentionHandle {
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl RetentionHandle {
    pub(super) fn spawn(inner: std::sync::Weak<Inner>) -> Result<Self, LogError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let interval = match inner.upgrade() {
            Some(i) => i.config.retention_interval,
            None => return Ok(Self { stop: None }),
        };
        std::thread::Builder::new()
            .name("philo-log-retention".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    let Some(inner) = inner.upgrade() else { break };
                    let now = chrono::Utc::now().timestamp_millis();
                    if let Err(e) = inner.enforce_retention(now) {
                        tracing::warn!(error = %e, "log retention pass failed");
                    }
                }
            })
            .map_err(|e| storage("spawn retention", e))?;
        Ok(Self { stop: Some(stop) })
    }
}

impl Drop for RetentionHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
