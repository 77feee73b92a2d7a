//! A bounded cache of access tokens whose signature and claims were already checked.
//!
//! Under load every request of a client carries the same access token, and verifying it again
//! (two base64 decodes, HMAC-SHA256, two JSON parses) was ~8% of the ingest server's CPU in
//! `perf`. A hit here skips only that work: the token text must match byte for byte (the map
//! compares whole tokens; only the hash looks at the signature segment), and expiry and
//! revocation are still checked on every request by the caller.
//!
//! Written by hand rather than with a cache crate: it is a map with a size cap, cleared when
//! full, which is all that is needed (a cleared cache only costs re-verification).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use crate::Claims;

/// Most tokens remembered; at ~0.5 KiB each this bounds the cache to a few MiB.
const CAPACITY: usize = 8_192;

/// A whole token, hashed by its signature segment (unique per header and payload under our key)
/// so hashing stays cheap; equality compares the full text.
#[derive(Debug, Eq)]
struct TokenKey(Box<str>);

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        signature(&self.0).hash(state);
    }
}

fn signature(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(_, sig)| sig)
}

#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    map: Mutex<HashMap<TokenKey, Claims>>,
}

impl VerifiedTokens {
    /// The claims of `token` if it was verified before.
    pub(crate) fn get(&self, token: &str) -> Option<Claims> {
        // A lookup key is built from the borrowed text; the allocation is cheaper than the
        // verification it saves and keeps the map's key type simple.
        let key = TokenKey(token.into());
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }

    pub(crate) fn insert(&self, token: &str, claims: &Claims) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(TokenKey(token.into()), claims.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use uuid::Uuid;

    fn claims() -> Claims {
        Claims {
            sub: Uuid::now_v7(),
            role: Role::User,
            sid: Uuid::now_v7(),
            iat: 1,
            exp: 2,
            iss: "philo".into(),
            jti: Uuid::new_v4(),
        }
    }

    #[test]
    fn hits_need_the_whole_token_not_just_its_signature() {
        let cache = VerifiedTokens::default();
        let c = claims();
        cache.insert("aaa.bbb.sig", &c);
        assert_eq!(cache.get("aaa.bbb.sig"), Some(c));
        // Same signature segment, other header or payload: a different token.
        assert_eq!(cache.get("aaa.xxx.sig"), None);
        assert_eq!(cache.get("zzz.bbb.sig"), None);
    }

    #[test]
    fn stays_bounded() {
        let cache = VerifiedTokens::default();
        for i in 0..CAPACITY + 10 {
            cache.insert(&format!("h.p.{i}"), &claims());
        }
        assert!(cache.map.lock().unwrap().len() <= CAPACITY);
    }
}
