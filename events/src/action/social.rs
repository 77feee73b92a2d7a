//! The social graph (follows, blocks), the profile and resume, and explore feedback.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Payload;
use super::limits::{
    DISPLAY_NAME_MAX_CHARS, EXPLORE_ITEMS_MAX, PROFILE_DESCRIPTION_MAX_CHARS, RESUME_MAX_CHARS,
    SKILL_MAX_CHARS, SKILLS_MAX,
};
use super::validate::{self as rule, Check, Lines, ValidationError};

/// Defines a payload `{user_id}` pointing at another user.
macro_rules! user_edge {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The other user.
            pub user_id: Uuid,
        }

        impl Payload for $name {
            fn validate(&self, _now: DateTime<Utc>) -> Check {
                rule::id("user_id", &self.user_id)
            }

            fn referenced_ids(&self) -> Vec<Uuid> {
                vec![self.user_id]
            }
        }
    };
}

user_edge!(
    /// `follow.created`: the actor follows `user_id`.
    FollowCreated
);
user_edge!(
    /// `follow.removed`: the actor unfollows `user_id`.
    FollowRemoved
);
user_edge!(
    /// `block.created`: the actor blocks `user_id`.
    BlockCreated
);
user_edge!(
    /// `block.removed`: the actor unblocks `user_id`.
    BlockRemoved
);

/// `profile.updated`: replaces the fields that are set (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdated {
    /// One line, 1..=64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = DISPLAY_NAME_MAX_CHARS))]
    pub display_name: Option<String>,
    /// "About me", 0..=2 000 characters; `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = PROFILE_DESCRIPTION_MAX_CHARS))]
    pub description: Option<String>,
    /// `true`: the user's data must never reach a data procurer from now on (the lake keeps
    /// it out of every procurer view, old rows included); `false` opts back in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_opt_out: Option<bool>,
}

impl Payload for ProfileUpdated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        if self.display_name.is_none() && self.description.is_none() && self.sale_opt_out.is_none()
        {
            return Err(rule::no_changes(
                "display_name, description or sale_opt_out",
            ));
        }
        let name = self.display_name.as_ref();
        rule::opt_text("display_name", name, DISPLAY_NAME_MAX_CHARS, Lines::Single)?;
        self.description.as_deref().map_or(Ok(()), |d| {
            rule::text_may_be_empty(
                "description",
                d,
                PROFILE_DESCRIPTION_MAX_CHARS,
                Lines::Multi,
            )
        })
    }
}

/// `resume.updated`: the whole resume, replacing the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeUpdated {
    /// 1..=50 000 characters.
    #[schemars(length(min = 1, max = RESUME_MAX_CHARS))]
    pub text: String,
    /// Up to 50 distinct skills, 1..=50 characters each. May be left out.
    #[serde(default)]
    #[schemars(length(max = SKILLS_MAX), inner(length(min = 1, max = SKILL_MAX_CHARS)))]
    pub skills: Vec<String>,
}

impl Payload for ResumeUpdated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::text("text", &self.text, RESUME_MAX_CHARS, Lines::Multi)?;
        rule::skills("skills", &self.skills)
    }
}

/// `explore.viewed`: explore items (posts, approaches, events) shown to the actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExploreViewed {
    /// 1..=100 distinct item ids.
    #[schemars(length(min = 1, max = EXPLORE_ITEMS_MAX))]
    pub item_ids: Vec<Uuid>,
}

impl Payload for ExploreViewed {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        let n = self.item_ids.len();
        if n == 0 {
            return Err(ValidationError::at(
                "too_short",
                "item_ids",
                "`item_ids` must hold at least one id",
            ));
        }
        if n > EXPLORE_ITEMS_MAX {
            return Err(ValidationError::at(
                "too_many",
                "item_ids",
                format!("`item_ids` has {n} ids, at most {EXPLORE_ITEMS_MAX} are allowed"),
            ));
        }
        rule::distinct_ids("item_ids", &self.item_ids)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        self.item_ids.clone()
    }
}

/// `explore.clicked`: the actor opened an explore item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExploreClicked {
    /// The item opened.
    pub item_id: Uuid,
}

impl Payload for ExploreClicked {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("item_id", &self.item_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.item_id]
    }
}

/// `explore.dismissed`: the actor does not want to see this item (or ones like it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExploreDismissed {
    /// The item dismissed.
    pub item_id: Uuid,
}

impl Payload for ExploreDismissed {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("item_id", &self.item_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.item_id]
    }
}
