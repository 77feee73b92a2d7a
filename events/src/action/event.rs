//! Events (meetups, talks): created, updated, cancelled, and RSVPs.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Payload;
use super::limits::{
    CAPACITY_MAX, DESCRIPTION_MAX_CHARS, LOCATION_MAX_CHARS, REASON_MAX_CHARS, TITLE_MAX_CHARS,
    URL_MAX_CHARS,
};
use super::validate::{self as rule, Check, Lines, ValidationError};

/// `event.created`: an event held at exactly one of a physical `location` or an `online_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventCreated {
    /// One line, 1..=200 characters.
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: String,
    /// 1..=10 000 characters.
    #[schemars(length(min = 1, max = DESCRIPTION_MAX_CHARS))]
    pub description: String,
    /// Start (may lie in the past: events are sometimes recorded after the fact).
    pub starts_at: DateTime<Utc>,
    /// End, strictly after `starts_at`.
    pub ends_at: DateTime<Utc>,
    /// Physical venue, one line of 1..=200 characters; exclusive with `online_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = LOCATION_MAX_CHARS))]
    pub location: Option<String>,
    /// `http(s)` URL of an online event, at most 2 048 characters; exclusive with `location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URL_MAX_CHARS))]
    pub online_url: Option<String>,
    /// Seats, 1..=1 000 000; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = CAPACITY_MAX))]
    pub capacity: Option<u32>,
}

impl Payload for EventCreated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::text("title", &self.title, TITLE_MAX_CHARS, Lines::Single)?;
        rule::text(
            "description",
            &self.description,
            DESCRIPTION_MAX_CHARS,
            Lines::Multi,
        )?;
        ends_after_start(self.starts_at, self.ends_at)?;
        match (&self.location, &self.online_url) {
            (Some(_), Some(_)) => return Err(both_venues()),
            (None, None) => {
                return Err(ValidationError::whole(
                    "conflicting_fields",
                    "an event needs exactly one of `location` or `online_url`, neither is set",
                ));
            }
            _ => {}
        }
        venue(self.location.as_deref(), self.online_url.as_deref())?;
        capacity(self.capacity)
    }
}

/// `event.updated`: replaces the fields that are set (at least one besides `event_id`).
///
/// An event has exactly one venue, so setting `location` or `online_url` replaces whichever of
/// the two the event had; setting both is `conflicting_fields`. When both `starts_at` and
/// `ends_at` are set they must be in order; when only one is, the check against the stored event
/// is the consumer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventUpdated {
    /// The event being updated.
    pub event_id: Uuid,
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DESCRIPTION_MAX_CHARS))]
    pub description: Option<String>,
    /// New start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    /// New end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    /// New physical venue (the event becomes in-person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = LOCATION_MAX_CHARS))]
    pub location: Option<String>,
    /// New online URL (the event becomes online).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = URL_MAX_CHARS))]
    pub online_url: Option<String>,
    /// New capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = CAPACITY_MAX))]
    pub capacity: Option<u32>,
}

impl Payload for EventUpdated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("event_id", &self.event_id)?;
        let changes = [
            self.title.is_some(),
            self.description.is_some(),
            self.starts_at.is_some(),
            self.ends_at.is_some(),
            self.location.is_some(),
            self.online_url.is_some(),
            self.capacity.is_some(),
        ];
        if !changes.contains(&true) {
            return Err(rule::no_changes(
                "title, description, starts_at, ends_at, location, online_url or capacity",
            ));
        }
        rule::opt_text("title", self.title.as_ref(), TITLE_MAX_CHARS, Lines::Single)?;
        let description = self.description.as_ref();
        rule::opt_text(
            "description",
            description,
            DESCRIPTION_MAX_CHARS,
            Lines::Multi,
        )?;
        if let (Some(starts_at), Some(ends_at)) = (self.starts_at, self.ends_at) {
            ends_after_start(starts_at, ends_at)?;
        }
        if self.location.is_some() && self.online_url.is_some() {
            return Err(both_venues());
        }
        venue(self.location.as_deref(), self.online_url.as_deref())?;
        capacity(self.capacity)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.event_id]
    }
}

/// `event.cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventCancelled {
    /// The event being cancelled.
    pub event_id: Uuid,
    /// Why, 1..=500 characters, for the attendees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = REASON_MAX_CHARS))]
    pub reason: Option<String>,
}

impl Payload for EventCancelled {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("event_id", &self.event_id)?;
        rule::opt_text(
            "reason",
            self.reason.as_ref(),
            REASON_MAX_CHARS,
            Lines::Multi,
        )
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.event_id]
    }
}

/// An answer to an event invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RsvpStatus {
    /// Will attend.
    Going,
    /// Might attend; wants updates.
    Interested,
    /// Will not attend.
    NotGoing,
}

/// `event.rsvp`: the actor's latest answer replaces any earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRsvp {
    /// The event answered.
    pub event_id: Uuid,
    /// The answer.
    pub status: RsvpStatus,
}

impl Payload for EventRsvp {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("event_id", &self.event_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.event_id]
    }
}

fn ends_after_start(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Check {
    if ends_at <= starts_at {
        return Err(ValidationError::at(
            "invalid_value",
            "ends_at",
            "`ends_at` must be after `starts_at`",
        ));
    }
    Ok(())
}

fn both_venues() -> ValidationError {
    ValidationError::whole(
        "conflicting_fields",
        "an event is held at a `location` or an `online_url`, not both",
    )
}

fn venue(location: Option<&str>, online_url: Option<&str>) -> Check {
    if let Some(location) = location {
        rule::text("location", location, LOCATION_MAX_CHARS, Lines::Single)?;
    }
    if let Some(url) = online_url {
        rule::http_url("online_url", url, URL_MAX_CHARS)?;
    }
    Ok(())
}

fn capacity(capacity: Option<u32>) -> Check {
    capacity.map_or(Ok(()), |c| rule::in_range("capacity", c, 1..=CAPACITY_MAX))
}
