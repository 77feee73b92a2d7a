//! Posts, approaches, comments and reactions.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Payload;
use super::limits::{BODY_MAX_CHARS, COMMENT_MAX_CHARS, TAG_MAX_CHARS, TAGS_MAX, TITLE_MAX_CHARS};
use super::validate::{self as rule, Check, Lines};

/// `post.created`: a business problem, described. The post's id is the envelope's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostCreated {
    /// One line, 1..=200 characters.
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: String,
    /// 1..=20 000 characters.
    #[schemars(length(min = 1, max = BODY_MAX_CHARS))]
    pub body: String,
    /// Up to 10 distinct tags of `[a-z0-9-]`, 1..=32 characters each. May be left out.
    #[serde(default)]
    #[schemars(
        length(max = TAGS_MAX),
        inner(length(min = 1, max = TAG_MAX_CHARS), pattern("^[a-z0-9-]+$"))
    )]
    pub tags: Vec<String>,
}

impl Payload for PostCreated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::text("title", &self.title, TITLE_MAX_CHARS, Lines::Single)?;
        rule::text("body", &self.body, BODY_MAX_CHARS, Lines::Multi)?;
        rule::tags("tags", &self.tags)
    }
}

/// `post.edited`: replaces the fields that are set (at least one). `tags: []` clears the tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEdited {
    /// The post being edited.
    pub post_id: Uuid,
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: Option<String>,
    /// New body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = BODY_MAX_CHARS))]
    pub body: Option<String>,
    /// New tags, replacing all of the old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = TAGS_MAX))]
    pub tags: Option<Vec<String>>,
}

impl Payload for PostEdited {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("post_id", &self.post_id)?;
        if self.title.is_none() && self.body.is_none() && self.tags.is_none() {
            return Err(rule::no_changes("title, body or tags"));
        }
        rule::opt_text("title", self.title.as_ref(), TITLE_MAX_CHARS, Lines::Single)?;
        rule::opt_text("body", self.body.as_ref(), BODY_MAX_CHARS, Lines::Multi)?;
        self.tags
            .as_deref()
            .map_or(Ok(()), |t| rule::tags("tags", t))
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.post_id]
    }
}

/// `post.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostDeleted {
    /// The post being deleted.
    pub post_id: Uuid,
}

impl Payload for PostDeleted {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("post_id", &self.post_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.post_id]
    }
}

/// `approach.created`: a proposed solution, attached to a post or standalone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproachCreated {
    /// The post this approach answers; absent for a standalone approach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<Uuid>,
    /// One line, 1..=200 characters.
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: String,
    /// 1..=20 000 characters.
    #[schemars(length(min = 1, max = BODY_MAX_CHARS))]
    pub body: String,
}

impl Payload for ApproachCreated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::opt_id("post_id", self.post_id.as_ref())?;
        rule::text("title", &self.title, TITLE_MAX_CHARS, Lines::Single)?;
        rule::text("body", &self.body, BODY_MAX_CHARS, Lines::Multi)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        self.post_id.into_iter().collect()
    }
}

/// `approach.edited`: replaces the fields that are set (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproachEdited {
    /// The approach being edited.
    pub approach_id: Uuid,
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: Option<String>,
    /// New body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = BODY_MAX_CHARS))]
    pub body: Option<String>,
}

impl Payload for ApproachEdited {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("approach_id", &self.approach_id)?;
        if self.title.is_none() && self.body.is_none() {
            return Err(rule::no_changes("title or body"));
        }
        rule::opt_text("title", self.title.as_ref(), TITLE_MAX_CHARS, Lines::Single)?;
        rule::opt_text("body", self.body.as_ref(), BODY_MAX_CHARS, Lines::Multi)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.approach_id]
    }
}

/// `approach.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproachDeleted {
    /// The approach being deleted.
    pub approach_id: Uuid,
}

impl Payload for ApproachDeleted {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("approach_id", &self.approach_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.approach_id]
    }
}

/// `comment.created`: a comment on a post or an approach, optionally replying to a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentCreated {
    /// The post or approach commented on.
    pub target_id: Uuid,
    /// 1..=5 000 characters.
    #[schemars(length(min = 1, max = COMMENT_MAX_CHARS))]
    pub body: String,
    /// The comment this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
}

impl Payload for CommentCreated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("target_id", &self.target_id)?;
        rule::text("body", &self.body, COMMENT_MAX_CHARS, Lines::Multi)?;
        rule::opt_id("parent_id", self.parent_id.as_ref())
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        std::iter::once(self.target_id)
            .chain(self.parent_id)
            .collect()
    }
}

/// `comment.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentDeleted {
    /// The comment being deleted.
    pub comment_id: Uuid,
}

impl Payload for CommentDeleted {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("comment_id", &self.comment_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.comment_id]
    }
}

/// How someone reacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReactionKind {
    /// 👍
    Like,
    /// ❤️
    Love,
    /// 💡
    Insightful,
    /// 🎉
    Celebrate,
    /// 🤝
    Support,
    /// 🤔
    Curious,
}

/// `reaction.added`: one reaction of one kind per user and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactionAdded {
    /// The post, approach or comment reacted to.
    pub target_id: Uuid,
    /// Which reaction.
    pub kind: ReactionKind,
}

impl Payload for ReactionAdded {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("target_id", &self.target_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.target_id]
    }
}

/// `reaction.removed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactionRemoved {
    /// The post, approach or comment reacted to.
    pub target_id: Uuid,
    /// Which reaction.
    pub kind: ReactionKind,
}

impl Payload for ReactionRemoved {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("target_id", &self.target_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.target_id]
    }
}
