//! The envelope the server wraps around every action before it enters the log.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::action::Action;

/// The log record header naming the action's kind (`post.created`, …), written with every
/// envelope, so a consumer can pass over kinds it does not handle without decoding the JSON.
pub const KIND_HEADER: &str = "philo-kind";

/// One user (or server) action as it is stored in the log.
///
/// `id` is a UUIDv7 assigned by the server; it is also the id of the entity the action creates
/// (a post, a comment, an event …), and the idempotency key every downstream sink dedupes on.
/// The actor is always the authenticated subject, never a body field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// UUIDv7 of this action (and of the entity it creates).
    pub id: Uuid,
    /// The user who performed the action.
    pub actor_id: Uuid,
    /// Server receive time.
    #[serde(serialize_with = "rfc3339")]
    pub received_at: DateTime<Utc>,
    /// Schema version of `action`'s kind at the time it was written.
    pub schema_version: u16,
    /// The action itself, `{"type": "<kind>", ...}`.
    pub action: Action,
}

impl Envelope {
    /// Wraps `action` for `actor_id`, stamping a fresh UUIDv7 taken from `now`.
    pub fn new(actor_id: Uuid, action: Action, now: DateTime<Utc>) -> Self {
        Self::with_id(new_action_id(now), actor_id, action, now)
    }

    /// Wraps `action` with a known id (outbox rows carry theirs).
    pub fn with_id(id: Uuid, actor_id: Uuid, action: Action, now: DateTime<Utc>) -> Self {
        Self {
            id,
            actor_id,
            received_at: now,
            schema_version: action.schema_version(),
            action,
        }
    }

    /// The log key: the actor id, so one actor's actions stay ordered in one partition.
    pub fn key(&self) -> [u8; 16] {
        *self.actor_id.as_bytes()
    }

    /// Serialises to the JSON stored as the log record's value.
    pub fn to_json(&self) -> Vec<u8> {
        // Most envelopes fit 512 bytes: one allocation instead of growing from serde_json's
        // 128. Serialising a plain data struct to a Vec cannot fail.
        let mut out = Vec::with_capacity(512);
        serde_json::to_writer(&mut out, self).expect("envelope serialises");
        out
    }

    /// Parses a log record's value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        // One UTF-8 check of the whole record, then the `&str` parser: the byte-slice parser
        // checks every string on its own, and many short checks cost more than one long one
        // (~10 % of the decode of a typical envelope).
        let text = std::str::from_utf8(bytes).map_err(serde::de::Error::custom)?;
        serde_json::from_str(text)
    }
}

/// Writes a time exactly as chrono's own `Serialize` does (RFC 3339 with `Z`, as many fractional
/// digits as needed: none, 3, 6 or 9), but through chrono's direct RFC 3339 writer: its
/// `Serialize` goes through `Display`, which hands serde_json the text a few characters at a time
/// to escape, and every action's envelope is serialised once on the ingest path.
fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// A UUIDv7 whose timestamp is `now` (the injected clock). Ids made by one process are
/// strictly increasing, also within one millisecond (a counter in the random bits, as RFC 9562
/// allows), so items created in one burst still list newest first in creation order.
pub fn new_action_id(now: DateTime<Utc>) -> Uuid {
    static CONTEXT: std::sync::Mutex<uuid::ContextV7> =
        std::sync::Mutex::new(uuid::ContextV7::new());
    let context = CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
    let ts = uuid::Timestamp::from_unix(
        &*context,
        now.timestamp().max(0) as u64,
        now.timestamp_subsec_nanos(),
    );
    Uuid::new_v7(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_times_serialise_as_chrono_writes_them() {
        use chrono::TimeZone;
        let base = Utc.with_ymd_and_hms(2026, 11, 28, 5, 4, 3).unwrap();
        let action = Action::from_json(br#"{"type":"user.logged_out"}"#).unwrap();
        for nanos in [
            0,
            1,
            999,
            1_000,
            120_000,
            1_000_000,
            123_000_000,
            123_456_000,
            123_456_789,
            999_999_999,
        ] {
            for t in [
                base,
                Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            ] {
                let t = t + chrono::TimeDelta::nanoseconds(nanos);
                let env = Envelope::new(Uuid::nil(), action.clone(), t);
                let json: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
                assert_eq!(
                    json["received_at"],
                    serde_json::to_value(t).unwrap(),
                    "{t:?}"
                );
                assert_eq!(Envelope::from_json(&env.to_json()).unwrap(), env);
            }
        }
    }

    #[test]
    fn ids_of_one_millisecond_increase_in_creation_order() {
        let now = Utc::now();
        let ids: Vec<Uuid> = (0..1000).map(|_| new_action_id(now)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids[0].get_version_num(), 7);
    }
}
