//! Server-emitted actions: image uploads and account lifecycle. Clients cannot submit these
//! (see [`ActionKind::client_submittable`](super::ActionKind::client_submittable)); the server
//! builds them and still validates them, so a server bug cannot write garbage into the log.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Payload;
use super::limits::{
    CONTENT_TYPE_MAX_CHARS, IMAGE_SIDE_MAX_PX, STORAGE_KEY_MAX_CHARS, USERNAME_MAX_CHARS,
    USERNAME_MIN_CHARS,
};
use super::validate::{self as rule, Check, Lines, ValidationError};

/// What an image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImagePurpose {
    /// A profile picture.
    Avatar,
    /// Embedded in a post.
    Post,
    /// Embedded in an approach.
    Approach,
    /// An event's picture.
    Event,
    /// Attached to a resume.
    Resume,
    /// Anything else.
    Other,
}

/// `image.uploaded`: emitted by the image upload endpoint once the image and its thumbnail are
/// stored. `image_id` is the image's own id (not a reference to something else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageUploaded {
    /// The stored image's id.
    pub image_id: Uuid,
    /// What the image is for.
    pub purpose: ImagePurpose,
    /// MIME type, `image/<subtype>`.
    #[schemars(length(min = 1, max = CONTENT_TYPE_MAX_CHARS))]
    pub content_type: String,
    /// Width in pixels, 1..=65 535.
    #[schemars(range(min = 1, max = IMAGE_SIDE_MAX_PX))]
    pub width: u32,
    /// Height in pixels, 1..=65 535.
    #[schemars(range(min = 1, max = IMAGE_SIDE_MAX_PX))]
    pub height: u32,
    /// Size of the stored original, at least 1 byte.
    #[schemars(range(min = 1))]
    pub size_bytes: u64,
    /// Object-storage key of the thumbnail, 1..=512 characters, no whitespace.
    #[schemars(length(min = 1, max = STORAGE_KEY_MAX_CHARS))]
    pub thumbnail_key: String,
}

impl Payload for ImageUploaded {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("image_id", &self.image_id)?;
        rule::text(
            "content_type",
            &self.content_type,
            CONTENT_TYPE_MAX_CHARS,
            Lines::Single,
        )?;
        let subtype = self.content_type.strip_prefix("image/").unwrap_or("");
        let subtype_ok = |b: u8| b.is_ascii_alphanumeric() || b"+-.".contains(&b);
        if subtype.is_empty() || !subtype.bytes().all(subtype_ok) {
            return Err(ValidationError::at(
                "invalid_value",
                "content_type",
                "`content_type` must be an image MIME type such as `image/png`",
            ));
        }
        rule::in_range("width", self.width, 1..=IMAGE_SIDE_MAX_PX)?;
        rule::in_range("height", self.height, 1..=IMAGE_SIDE_MAX_PX)?;
        rule::in_range("size_bytes", self.size_bytes, 1..=u64::MAX)?;
        rule::text(
            "thumbnail_key",
            &self.thumbnail_key,
            STORAGE_KEY_MAX_CHARS,
            Lines::Single,
        )?;
        if self.thumbnail_key.chars().any(char::is_whitespace) {
            return Err(ValidationError::at(
                "invalid_value",
                "thumbnail_key",
                "`thumbnail_key` must not contain whitespace",
            ));
        }
        Ok(())
    }
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// A member of the platform.
    User,
    /// A data procurer.
    Procurer,
    /// An administrator.
    Admin,
}

/// `user.registered`: a new account; the actor is the new user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    /// 3..=32 characters, no whitespace or control characters.
    #[schemars(length(min = USERNAME_MIN_CHARS, max = USERNAME_MAX_CHARS))]
    pub username: String,
    /// The account's role.
    pub role: UserRole,
}

impl Payload for UserRegistered {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::text(
            "username",
            &self.username,
            USERNAME_MAX_CHARS,
            Lines::Single,
        )?;
        if self.username.chars().any(char::is_whitespace) {
            return Err(ValidationError::at(
                "invalid_value",
                "username",
                "`username` must not contain whitespace",
            ));
        }
        let n = self.username.chars().count();
        if n < USERNAME_MIN_CHARS {
            return Err(ValidationError::at(
                "too_short",
                "username",
                format!("`username` has {n} characters, at least {USERNAME_MIN_CHARS} are needed"),
            ));
        }
        Ok(())
    }
}

/// Defines an empty payload `{}` (only `"type"` on the wire).
macro_rules! empty_payload {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {}

        impl Payload for $name {
            fn validate(&self, _now: DateTime<Utc>) -> Check {
                Ok(())
            }
        }
    };
}

empty_payload!(
    /// `user.logged_in`: a session was opened for the actor.
    UserLoggedIn
);
empty_payload!(
    /// `user.logged_out`: the actor's session was closed.
    UserLoggedOut
);
empty_payload!(
    /// `account.erased`: the actor's account was erased; every view forgets them.
    AccountErased
);
