//! Per-user and per-address rate limits (GCRA, via `governor`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::config::IngestConfig;
use crate::error::ApiError;

pub struct RateLimits {
    users: DefaultKeyedRateLimiter<Uuid>,
    auth: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v.max(1)).expect("max(1) is non-zero")
}

impl RateLimits {
    pub fn new(config: &IngestConfig) -> Self {
        let users = Quota::per_second(nz(config.rate_limit_per_second))
            .allow_burst(nz(config.rate_limit_burst));
        let auth = Quota::per_minute(nz(config.auth_attempts_per_minute))
            .allow_burst(nz(config.auth_attempts_per_minute));
        Self {
            users: RateLimiter::keyed(users),
            auth: RateLimiter::keyed(auth),
            clock: DefaultClock::default(),
        }
    }

    /// One request by `user`; `cost` is the number of actions it carries.
    pub fn check_user(&self, user: Uuid, cost: u32) -> Result<(), ApiError> {
        match self.users.check_key_n(&user, nz(cost)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(limited(not_until.wait_time_from(self.clock.now()))),
            // The batch is larger than the burst: it can never pass in one go.
            Err(_) => Err(ApiError::too_large(
                "batch_exceeds_rate_limit",
                "the batch is larger than your burst allowance; send smaller batches",
            )),
        }
    }

    /// One authentication attempt from `addr`.
    pub fn check_auth(&self, addr: IpAddr) -> Result<(), ApiError> {
        self.auth
            .check_key(&addr)
            .map_err(|not_until| limited(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets idle keys so memory stays bounded.
    pub fn retain_recent(&self) {
        self.users.retain_recent();
        self.auth.retain_recent();
    }
}

fn limited(wait: Duration) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {} ms", wait.as_millis()),
    )
    .retry_after(wait + Duration::from_millis(999))
}
