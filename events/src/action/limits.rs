//! The size and range limits [`Action::validate`](super::Action::validate) enforces.
//!
//! Text lengths count Unicode scalar values (`char`s), never bytes, exactly like JSON Schema's
//! `minLength`/`maxLength` — the published schemas carry the same numbers.

/// Post, approach and job-offer titles, in characters.
pub const TITLE_MAX_CHARS: usize = 200;
/// Post and approach bodies, in characters.
pub const BODY_MAX_CHARS: usize = 20_000;
/// Comment bodies, in characters.
pub const COMMENT_MAX_CHARS: usize = 5_000;
/// Tags on one post.
pub const TAGS_MAX: usize = 10;
/// One tag, in characters (`[a-z0-9-]`).
pub const TAG_MAX_CHARS: usize = 32;
/// Event and job-offer descriptions, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;
/// Profile display names, in characters.
pub const DISPLAY_NAME_MAX_CHARS: usize = 64;
/// Profile descriptions ("about me"), in characters; may be empty.
pub const PROFILE_DESCRIPTION_MAX_CHARS: usize = 2_000;
/// Resume text, in characters.
pub const RESUME_MAX_CHARS: usize = 50_000;
/// Skills on one resume or job offer.
pub const SKILLS_MAX: usize = 50;
/// One skill, in characters.
pub const SKILL_MAX_CHARS: usize = 50;
/// A payment reference, in printable ASCII characters.
pub const PAYMENT_REF_MAX_CHARS: usize = 128;
/// An event's physical location, in characters.
pub const LOCATION_MAX_CHARS: usize = 200;
/// An event's online URL, in characters.
pub const URL_MAX_CHARS: usize = 2_048;
/// An event cancellation reason, in characters.
pub const REASON_MAX_CHARS: usize = 500;
/// Usernames, shortest, in characters.
pub const USERNAME_MIN_CHARS: usize = 3;
/// Usernames, longest, in characters.
pub const USERNAME_MAX_CHARS: usize = 32;
/// The largest amount of money one action may carry, in minor units (10^12).
pub const AMOUNT_MAX_MINOR: i64 = 1_000_000_000_000;
/// The largest event capacity.
pub const CAPACITY_MAX: u32 = 1_000_000;
/// Item ids in one `explore.viewed`.
pub const EXPLORE_ITEMS_MAX: usize = 100;
/// An image MIME type, in characters.
pub const CONTENT_TYPE_MAX_CHARS: usize = 100;
/// An object-storage key, in characters.
pub const STORAGE_KEY_MAX_CHARS: usize = 512;
/// An image side, in pixels.
pub const IMAGE_SIDE_MAX_PX: u32 = 65_535;
