//! The action vocabulary: everything a user (or the server, on a user's behalf) can do, as one
//! typed, versioned, validated enum.
//!
//! # On the wire
//! An action is a JSON object whose `"type"` names its kind and whose other members are that
//! kind's fields, nothing else:
//!
//! ```json
//! {"type": "post.created", "title": "Cold chain for small farms", "body": "…", "tags": ["logistics"]}
//! ```
//!
//! Ids are UUID strings, times RFC 3339 strings, money integer minor units plus an ISO 4217
//! [`Currency`], enums `snake_case` strings. Optional fields may be left out (or `null`); unknown
//! fields are refused. [`json_schemas`] publishes one JSON Schema per kind.
//!
//! # Three steps for untrusted bytes
//! 1. [`Action::from_json`] decodes, refusing with a [`DecodeError`] whose `code` is stable.
//! 2. [`ActionKind::client_submittable`] says whether a client may send this kind at all
//!    (server-emitted kinds: `image.uploaded`, `user.*`, `account.erased`).
//! 3. [`Action::validate`] checks the vocabulary's rules (lengths, ranges, formats) against an
//!    injected `now`, refusing with a [`ValidationError`]. Rules that need state (does the post
//!    exist?) are downstream consumers' business; [`Action::referenced_ids`] lists what to check.
//!
//! # Versions
//! Every kind has a [`schema_version`](ActionKind::schema_version), stored in the envelope. A
//! backwards-compatible change (a new optional field) keeps it; anything else bumps it, and
//! decoding must keep accepting every version already in the log.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

mod content;
mod currency;
mod decode;
mod event;
mod funding;
mod job;
pub mod limits;
mod notify;
mod social;
mod strict_json;
mod system;
mod validate;
mod wire;

pub use content::{
    ApproachCreated, ApproachDeleted, ApproachEdited, CommentCreated, CommentDeleted, PostCreated,
    PostDeleted, PostEdited, ReactionAdded, ReactionKind, ReactionRemoved,
};
pub use currency::Currency;
pub use decode::DecodeError;
pub use event::{EventCancelled, EventCreated, EventRsvp, EventUpdated, RsvpStatus};
pub use funding::{CampaignClosed, CampaignCreated, DonationMade};
pub use job::{
    JobOfferAnswered, JobOfferCreated, JobOfferWithdrawn, OfferAnswer, SalaryBand, SalaryPeriod,
};
pub use notify::{NotificationPreferencesUpdated, NotificationsRead};
pub use social::{
    BlockCreated, BlockRemoved, ExploreClicked, ExploreDismissed, ExploreViewed, FollowCreated,
    FollowRemoved, ProfileUpdated, ResumeUpdated,
};
pub use system::{
    AccountErased, ImagePurpose, ImageUploaded, UserLoggedIn, UserLoggedOut, UserRegistered,
    UserRole,
};
pub use validate::ValidationError;

/// What every kind's payload struct does beyond (de)serialising.
trait Payload {
    /// Checks the vocabulary's rules; the first broken one is the error.
    fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationError>;

    /// Ids of other entities this action points at.
    fn referenced_ids(&self) -> Vec<Uuid> {
        Vec::new()
    }
}

/// Declares the vocabulary once: the [`Action`] enum with its serde names, [`ActionKind`], and
/// the per-kind tables, so that the wire name, the kind and the payload type cannot drift apart.
macro_rules! vocabulary {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $name:literal, version $version:literal, $who:ident;
    )*) => {
        /// One action, `{"type": "<kind>", ...fields}` on the wire.
        ///
        /// `Deserialize` is written by hand (see [`wire`]): serde's derive for an internally
        /// tagged enum buffers every object into an intermediate tree before it looks at the tag.
        #[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
        #[serde(tag = "type")]
        pub enum Action {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($variant), )*
        }

        /// The kind of an [`Action`]: its `"type"` on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ActionKind {
            $( $(#[$doc])* $variant, )*
        }

        impl ActionKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ActionKind] = &[$(ActionKind::$variant),*];

            /// The wire name, e.g. `"post.created"`.
            pub fn as_str(self) -> &'static str {
                match self { $(ActionKind::$variant => $name,)* }
            }

            /// The kind whose wire name is `s`.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(ActionKind::$variant),)* _ => None }
            }

            /// The current schema version of this kind's payload.
            pub fn schema_version(self) -> u16 {
                match self { $(ActionKind::$variant => $version,)* }
            }

            /// Whether clients may submit this kind; server-emitted kinds may not.
            pub fn client_submittable(self) -> bool {
                match self { $(ActionKind::$variant => vocabulary!(@client $who),)* }
            }

            /// The payload's JSON Schema as derived, without the `"type"` member.
            fn payload_schema(self) -> schemars::Schema {
                match self { $(ActionKind::$variant => schemars::schema_for!($variant),)* }
            }
        }

        impl Action {
            /// This action's kind.
            pub fn kind(&self) -> ActionKind {
                match self { $(Action::$variant(_) => ActionKind::$variant,)* }
            }

            fn payload(&self) -> &dyn Payload {
                match self { $(Action::$variant(p) => p,)* }
            }
        }

        impl wire::Payloads for ActionKind {
            const NAMES: &'static [&'static str] = &[$($name),*];

            fn deserialize_payload<'de, D: serde::Deserializer<'de>>(
                self,
                payload: D,
            ) -> Result<Action, D::Error> {
                match self {
                    $(ActionKind::$variant => $variant::deserialize(payload).map(Action::$variant),)*
                }
            }
        }

        $(
            impl From<$variant> for Action {
                fn from(payload: $variant) -> Self {
                    Action::$variant(payload)
                }
            }
        )*
    };
    (@client client) => { true };
    (@client server) => { false };
}

vocabulary! {
    /// A post was created.
    PostCreated => "post.created", version 1, client;
    /// A post was edited.
    PostEdited => "post.edited", version 1, client;
    /// A post was deleted.
    PostDeleted => "post.deleted", version 1, client;
    /// An approach was created.
    ApproachCreated => "approach.created", version 1, client;
    /// An approach was edited.
    ApproachEdited => "approach.edited", version 1, client;
    /// An approach was deleted.
    ApproachDeleted => "approach.deleted", version 1, client;
    /// A comment was written.
    CommentCreated => "comment.created", version 1, client;
    /// A comment was deleted.
    CommentDeleted => "comment.deleted", version 1, client;
    /// A reaction was added.
    ReactionAdded => "reaction.added", version 1, client;
    /// A reaction was removed.
    ReactionRemoved => "reaction.removed", version 1, client;
    /// The actor followed a user.
    FollowCreated => "follow.created", version 1, client;
    /// The actor unfollowed a user.
    FollowRemoved => "follow.removed", version 1, client;
    /// The actor blocked a user.
    BlockCreated => "block.created", version 1, client;
    /// The actor unblocked a user.
    BlockRemoved => "block.removed", version 1, client;
    /// Money was donated.
    DonationMade => "donation.made", version 1, client;
    /// A donation campaign was opened.
    CampaignCreated => "campaign.created", version 1, client;
    /// A donation campaign was closed.
    CampaignClosed => "campaign.closed", version 1, client;
    /// An event was created.
    EventCreated => "event.created", version 1, client;
    /// An event was updated.
    EventUpdated => "event.updated", version 1, client;
    /// An event was cancelled.
    EventCancelled => "event.cancelled", version 1, client;
    /// The actor answered an event invitation.
    EventRsvp => "event.rsvp", version 1, client;
    /// A job offer was made.
    JobOfferCreated => "job_offer.created", version 1, client;
    /// A job offer was answered.
    JobOfferAnswered => "job_offer.answered", version 1, client;
    /// A job offer was withdrawn.
    JobOfferWithdrawn => "job_offer.withdrawn", version 1, client;
    /// The actor's profile changed.
    ProfileUpdated => "profile.updated", version 1, client;
    /// The actor's resume changed.
    ResumeUpdated => "resume.updated", version 1, client;
    /// An image was stored (server-emitted by the upload endpoint).
    ImageUploaded => "image.uploaded", version 1, server;
    /// The actor read their notifications up to one.
    NotificationsRead => "notifications.read", version 1, client;
    /// The actor changed which notifications they get.
    NotificationPreferencesUpdated => "notifications.preferences_updated", version 1, client;
    /// Explore items were shown to the actor.
    ExploreViewed => "explore.viewed", version 1, client;
    /// The actor opened an explore item.
    ExploreClicked => "explore.clicked", version 1, client;
    /// The actor dismissed an explore item.
    ExploreDismissed => "explore.dismissed", version 1, client;
    /// An account was registered (server-emitted).
    UserRegistered => "user.registered", version 1, server;
    /// The actor logged in (server-emitted).
    UserLoggedIn => "user.logged_in", version 1, server;
    /// The actor logged out (server-emitted).
    UserLoggedOut => "user.logged_out", version 1, server;
    /// The actor's account was erased (server-emitted).
    AccountErased => "account.erased", version 1, server;
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// The schema version of this action's kind (what the envelope records).
    pub fn schema_version(&self) -> u16 {
        self.kind().schema_version()
    }

    /// Decodes untrusted bytes. Never panics; see [`DecodeError`] for the codes.
    pub fn from_json(bytes: &[u8]) -> Result<Action, DecodeError> {
        decode::from_json(bytes)
    }

    /// Decodes an already parsed JSON value (e.g. one member of a batch request). The value
    /// should come from `serde_json`'s parser, whose nesting limit keeps decoding shallow.
    pub fn from_value(value: Value) -> Result<Action, DecodeError> {
        decode::from_value(value)
    }

    /// Checks the vocabulary's rules, `now` being the injected clock's reading.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationError> {
        self.payload().validate(now)
    }

    /// Ids of other entities this action points at (post, approach, comment, user, event,
    /// campaign, offer, explore item), for consumers that check references. Never includes the
    /// id of what the action itself creates (the envelope id, or `image.uploaded`'s `image_id`).
    pub fn referenced_ids(&self) -> Vec<Uuid> {
        self.payload().referenced_ids()
    }
}

/// One JSON Schema per kind:
///
/// ```json
/// {"kinds": {"post.created": {"schema_version": 1, "client_submittable": true, "schema": {…}}, …}}
/// ```
///
/// Each schema describes the whole wire object of its kind: a required `"type"` property whose
/// `const` is the kind, the payload's properties, and `"additionalProperties": false`. Sub-types
/// (currency, salary band, enums) live in the schema's own `$defs`.
pub fn json_schemas() -> Value {
    cached_schemas().clone()
}

fn cached_schemas() -> &'static Value {
    static SCHEMAS: OnceLock<Value> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let kinds: Map<String, Value> = ActionKind::ALL
            .iter()
            .map(|&kind| {
                let entry = serde_json::json!({
                    "schema_version": kind.schema_version(),
                    "client_submittable": kind.client_submittable(),
                    "schema": kind_schema(kind),
                });
                (kind.as_str().to_owned(), entry)
            })
            .collect();
        serde_json::json!({ "kinds": kinds })
    })
}

/// The top-level property names of `kind`'s wire object, `"type"` included.
fn property_names(kind: ActionKind) -> impl Iterator<Item = &'static str> {
    cached_schemas()["kinds"][kind.as_str()]["schema"]["properties"]
        .as_object()
        .into_iter()
        .flat_map(|props| props.keys().map(String::as_str))
}

/// The payload's schema plus the `"type"` member.
fn kind_schema(kind: ActionKind) -> Value {
    let mut schema = kind.payload_schema().to_value();
    if let Value::Object(obj) = &mut schema {
        obj.insert("title".into(), kind.as_str().into());
        let props = obj
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(props) = props {
            let tag = serde_json::json!({"type": "string", "const": kind.as_str()});
            props.insert("type".into(), tag);
        }
        let required = obj
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(required) = required {
            required.insert(0, "type".into());
        }
        obj.insert("additionalProperties".into(), false.into());
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_parse_back() {
        let mut names: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        for &kind in ActionKind::ALL {
            assert_eq!(ActionKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(kind.schema_version(), 1);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ActionKind::ALL.len());
        assert_eq!(ActionKind::ALL.len(), 36);
        assert_eq!(ActionKind::parse("post.Created"), None);
        assert_eq!(ActionKind::parse(""), None);
    }

    #[test]
    fn server_emitted_kinds() {
        let server: Vec<&str> = ActionKind::ALL
            .iter()
            .filter(|k| !k.client_submittable())
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            server,
            [
                "image.uploaded",
                "user.registered",
                "user.logged_in",
                "user.logged_out",
                "account.erased"
            ]
        );
    }

    #[test]
    fn wire_type_matches_kind_for_empty_payloads() {
        let action = Action::from(UserLoggedIn {});
        assert_eq!(
            serde_json::to_value(&action).unwrap(),
            serde_json::json!({"type": "user.logged_in"})
        );
        assert_eq!(action.kind(), ActionKind::UserLoggedIn);
        assert_eq!(action.schema_version(), 1);
        assert!(action.referenced_ids().is_empty());
    }

    #[test]
    fn schemas_carry_the_type_member() {
        let all = json_schemas();
        for &kind in ActionKind::ALL {
            let entry = &all["kinds"][kind.as_str()];
            let schema = &entry["schema"];
            assert_eq!(schema["properties"]["type"]["const"], kind.as_str());
            assert_eq!(schema["required"][0], "type");
            assert_eq!(schema["additionalProperties"], false);
            assert_eq!(entry["client_submittable"], kind.client_submittable());
            assert!(property_names(kind).any(|p| p == "type"));
        }
        let post = &all["kinds"]["post.created"]["schema"];
        assert_eq!(post["properties"]["title"]["maxLength"], 200);
        assert_eq!(
            post["required"],
            serde_json::json!(["type", "title", "body"])
        );
    }
}
