//! The actor's own notification state: read markers and per-type preferences. They are actions
//! like any other so that the notification view stays a function of the log (DESIGN invariant 2).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Payload;
use super::validate::{self as rule, Check};

/// `notifications.read`: every notification of the actor up to and including `up_to` (a
/// notification id; ids are time-ordered) is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsRead {
    /// The newest notification being marked read.
    pub up_to: Uuid,
}

impl Payload for NotificationsRead {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("up_to", &self.up_to)
    }
}

/// `notifications.preferences_updated`: turns notification types on or off; unset types keep
/// their setting. Every type is on by default except `post_by_followed` (opt-in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPreferencesUpdated {
    /// Someone followed you.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_follower: Option<bool>,
    /// An approach was attached to your post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approach_on_post: Option<bool>,
    /// A comment on your post, approach or event, or a reply to your comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<bool>,
    /// Reactions to your content (grouped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<bool>,
    /// A donation to your approach or campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donation: Option<bool>,
    /// Your campaign reached its goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_goal_reached: Option<bool>,
    /// A job offer to you, or an answer to yours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_offer: Option<bool>,
    /// An event you RSVP'd to changed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_change: Option<bool>,
    /// Someone mentioned you with `@username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention: Option<bool>,
    /// A new post by someone you follow (off unless turned on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_by_followed: Option<bool>,
}

impl NotificationPreferencesUpdated {
    /// `(name, value)` of every field, set or not.
    pub fn fields(&self) -> [(&'static str, Option<bool>); 10] {
        [
            ("new_follower", self.new_follower),
            ("approach_on_post", self.approach_on_post),
            ("comment", self.comment),
            ("reaction", self.reaction),
            ("donation", self.donation),
            ("campaign_goal_reached", self.campaign_goal_reached),
            ("job_offer", self.job_offer),
            ("event_change", self.event_change),
            ("mention", self.mention),
            ("post_by_followed", self.post_by_followed),
        ]
    }
}

impl Payload for NotificationPreferencesUpdated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        if self.fields().iter().all(|(_, v)| v.is_none()) {
            return Err(rule::no_changes("the notification types"));
        }
        Ok(())
    }
}
