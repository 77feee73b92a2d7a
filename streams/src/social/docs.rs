//! The documents stored for users and content items, and their states.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// What kind of content an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Post = 1,
    Approach = 2,
    Comment = 3,
    Event = 4,
    JobOffer = 5,
    Campaign = 6,
}

impl ItemKind {
    pub fn byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => ItemKind::Post,
            2 => ItemKind::Approach,
            3 => ItemKind::Comment,
            4 => ItemKind::Event,
            5 => ItemKind::JobOffer,
            6 => ItemKind::Campaign,
            _ => return None,
        })
    }
}

/// Lifecycle state of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Live (posts, approaches, comments, scheduled events, open offers and campaigns).
    Open,
    /// Deleted by its author: gone from every read, kept as a tombstone so later references
    /// fail with `target_deleted`.
    Deleted,
    /// A campaign its creator closed.
    Closed,
    /// An event its organiser cancelled.
    Cancelled,
    /// A job offer the recipient accepted.
    Accepted,
    /// A job offer the recipient declined.
    Declined,
    /// A job offer its sender withdrew.
    Withdrawn,
}

/// One content item: the creating action's payload, with edits merged in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemDoc {
    pub id: Uuid,
    pub kind: ItemKind,
    pub author: Uuid,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    pub state: ItemState,
    /// The post an approach belongs to, the target of a comment or campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// The kind-specific fields as submitted (title, body, tags, starts_at …), without `type`.
    pub data: Map<String, Value>,
    /// Whether publishing the item pushed it into followers' feeds: false when its author was
    /// already pulled (pulled stays pulled), so deleting it need not visit every follower.
    /// Documents written before this field read as true: their deletion still visits all.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub pushed: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A user's profile as the views know it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserDoc {
    pub username: String,
    pub registered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_image_id: Option<Uuid>,
    #[serde(default)]
    pub image_ids: Vec<Uuid>,
    #[serde(default)]
    pub erased: bool,
}
