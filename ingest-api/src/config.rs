//! Settings of the ingest API (part of the binary's layered configuration).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Ingest API settings. Unknown keys are rejected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest single-action body, bytes.
    pub max_action_bytes: usize,
    /// Most actions in one batch request.
    pub max_batch_actions: usize,
    /// Largest batch body, bytes.
    pub max_batch_bytes: usize,
    /// Sustained requests per second allowed per user.
    pub rate_limit_per_second: u32,
    /// Burst allowance per user.
    pub rate_limit_burst: u32,
    /// Register/login/refresh attempts per minute per client address.
    pub auth_attempts_per_minute: u32,
    /// How long an `Idempotency-Key` is remembered, seconds.
    pub idempotency_ttl_secs: u64,
    /// How long a read with `after=<position>` waits for the views to reach that position,
    /// milliseconds; past it the read answers 503 `not_caught_up`.
    pub read_wait_ms: u64,
    pub images: ImageConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_action_bytes: 64 * 1024,
            max_batch_actions: 500,
            max_batch_bytes: 512 * 1024,
            rate_limit_per_second: 200,
            // At least `max_batch_actions`: a batch costs one unit per action, so a smaller burst
            // would refuse batches the API allows (413 `batch_exceeds_rate_limit`).
            rate_limit_burst: 500,
            auth_attempts_per_minute: 60,
            idempotency_ttl_secs: 24 * 3600,
            read_wait_ms: 5_000,
            images: ImageConfig::default(),
        }
    }
}

impl IngestConfig {
    /// How long an `Idempotency-Key` is remembered.
    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_ttl_secs)
    }

    /// How long a read waits for `after=<position>`.
    pub fn read_wait(&self) -> Duration {
        Duration::from_millis(self.read_wait_ms)
    }
}

/// Image upload limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Largest upload, bytes.
    pub max_bytes: usize,
    /// Most pixels (width × height).
    pub max_pixels: u64,
    /// Longest side, pixels.
    pub max_side: u32,
    /// Longest side of the generated thumbnail, pixels.
    pub thumbnail_side: u32,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 12_000,
            thumbnail_side: 320,
        }
    }
}
