//! [`ValidationError`] and the field rules every payload's `validate` is built from.
//!
//! Each rule checks one field and names it by its JSON path (`title`, `tags[2]`,
//! `salary_band.currency`). A payload checks its fields in declaration order and reports the
//! first failure.

use std::collections::HashSet;

use uuid::Uuid;

use super::currency::Currency;
use super::limits::{AMOUNT_MAX_MINOR, SKILL_MAX_CHARS, SKILLS_MAX, TAG_MAX_CHARS, TAGS_MAX};

/// A well-formed action that breaks a rule of the vocabulary (user input: a 4xx, never retried).
///
/// | `code` | meaning |
/// |---|---|
/// | `required` | a text field is empty or whitespace only |
/// | `too_long` | a text or URL is longer than its limit (in characters) |
/// | `too_short` | a text or list is shorter than its minimum (`username`, `item_ids`) |
/// | `too_many` | a list has more items than allowed (`tags`, `skills`, `item_ids`) |
/// | `invalid_value` | nil UUID, bad tag, control character, bad URL, min > max, duplicate item, ends before it starts |
/// | `invalid_currency` | not an active ISO 4217 code |
/// | `out_of_range` | a number outside its range (amounts 1..=10^12 minor units, capacity 1..=1 000 000, image sizes) |
/// | `in_the_past` | a campaign that ends at or before now |
/// | `no_changes` | an edit or update that sets nothing |
/// | `conflicting_fields` | both or neither of `location` / `online_url` on an event |
///
/// `field` is the JSON path of the offending field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// Stable machine-readable code (see the table above).
    pub code: &'static str,
    /// JSON path of the offending field, if one field is to blame.
    pub field: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

impl ValidationError {
    /// An error blaming `field`.
    pub(crate) fn at(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// An error about the action as a whole.
    pub(crate) fn whole(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            field: None,
            message: message.into(),
        }
    }
}

/// The result of one rule.
pub(crate) type Check = Result<(), ValidationError>;

/// Ids point at something: never the nil UUID.
pub(crate) fn id(field: &str, id: &Uuid) -> Check {
    if id.is_nil() {
        return Err(ValidationError::at(
            "invalid_value",
            field,
            format!("`{field}` must not be the nil UUID"),
        ));
    }
    Ok(())
}

/// [`id`] when present.
pub(crate) fn opt_id(field: &str, value: Option<&Uuid>) -> Check {
    value.map_or(Ok(()), |v| id(field, v))
}

/// Which control characters a text may hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    /// Titles and names: no control characters at all.
    Single,
    /// Bodies and descriptions: `\n`, `\r` and `\t` are allowed.
    Multi,
}

/// A text that must say something: not blank, at most `max` characters, no forbidden controls.
pub(crate) fn text(field: &str, s: &str, max: usize, lines: Lines) -> Check {
    if s.trim().is_empty() {
        return Err(ValidationError::at(
            "required",
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    text_may_be_empty(field, s, max, lines)
}

/// [`text`] when present.
pub(crate) fn opt_text(field: &str, s: Option<&String>, max: usize, lines: Lines) -> Check {
    s.map_or(Ok(()), |s| text(field, s, max, lines))
}

/// A text that may be empty (clearing it): at most `max` characters, no forbidden controls.
pub(crate) fn text_may_be_empty(field: &str, s: &str, max: usize, lines: Lines) -> Check {
    max_chars(field, s, max)?;
    if !may_hold_control(s, lines) {
        return Ok(());
    }
    if let Some(c) = s.chars().find(|&c| forbidden_control(c, lines)) {
        return Err(ValidationError::at(
            "invalid_value",
            field,
            format!(
                "`{field}` contains the control character U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// A control character (`Cc`: U+0000–U+001F, U+007F–U+009F) that `lines` does not allow.
fn forbidden_control(c: char, lines: Lines) -> bool {
    c.is_control() && !(lines == Lines::Multi && matches!(c, '\n' | '\r' | '\t'))
}

/// Whether `s` may hold a [`forbidden_control`] character: a byte-level superset check without
/// an early exit, which the compiler vectorises, so the char-by-char search runs only on text
/// with a control byte, `0x7F`, or a `0xC2` lead byte (U+0080–U+00BF, the C1 controls among
/// them). Every text a client sends goes through it.
fn may_hold_control(s: &str, lines: Lines) -> bool {
    let multi = lines == Lines::Multi;
    s.bytes().fold(false, |hit, b| {
        let allowed = multi & ((b == b'\n') | (b == b'\r') | (b == b'\t'));
        hit | ((b < 0x20) & !allowed) | (b == 0x7f) | (b == 0xc2)
    })
}

/// At most `max` characters (counted as `char`s).
pub(crate) fn max_chars(field: &str, s: &str, max: usize) -> Check {
    // A string of at most `max` bytes has at most `max` chars: skip counting the common case.
    if s.len() > max {
        let n = s.chars().count();
        if n > max {
            return Err(ValidationError::at(
                "too_long",
                field,
                format!("`{field}` has {n} characters, at most {max} are allowed"),
            ));
        }
    }
    Ok(())
}

/// Post tags: at most [`TAGS_MAX`], each 1..=[`TAG_MAX_CHARS`] of `[a-z0-9-]`, no duplicates.
pub(crate) fn tags(field: &str, tags: &[String]) -> Check {
    if tags.len() > TAGS_MAX {
        return Err(ValidationError::at(
            "too_many",
            field,
            format!(
                "`{field}` has {} tags, at most {TAGS_MAX} are allowed",
                tags.len()
            ),
        ));
    }
    // The happy path allocates nothing: paths are built only for an error, and with at most
    // TAGS_MAX tags a linear duplicate scan beats hashing.
    for (i, tag) in tags.iter().enumerate() {
        let path = || format!("{field}[{i}]");
        if tag.is_empty() {
            let path = path();
            return Err(ValidationError::at(
                "required",
                &path,
                format!("`{path}` is empty"),
            ));
        }
        if tag.chars().count() > TAG_MAX_CHARS {
            max_chars(&path(), tag, TAG_MAX_CHARS)?;
        }
        if !tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            let path = path();
            return Err(ValidationError::at(
                "invalid_value",
                &path,
                format!("`{path}` may only hold lowercase letters a-z, digits and `-`"),
            ));
        }
        if tags[..i].contains(tag) {
            return Err(duplicate(&path(), tag));
        }
    }
    Ok(())
}

/// Skills: at most [`SKILLS_MAX`], each a single-line text of 1..=[`SKILL_MAX_CHARS`], no
/// duplicates (compared case-insensitively, after trimming).
pub(crate) fn skills(field: &str, skills: &[String]) -> Check {
    if skills.len() > SKILLS_MAX {
        return Err(ValidationError::at(
            "too_many",
            field,
            format!(
                "`{field}` has {} skills, at most {SKILLS_MAX} are allowed",
                skills.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, skill) in skills.iter().enumerate() {
        let path = format!("{field}[{i}]");
        text(&path, skill, SKILL_MAX_CHARS, Lines::Single)?;
        if !seen.insert(skill.trim().to_lowercase()) {
            return Err(duplicate(&path, skill));
        }
    }
    Ok(())
}

fn duplicate(path: &str, item: &str) -> ValidationError {
    ValidationError::at("invalid_value", path, format!("`{path}` repeats `{item}`"))
}

/// Distinct ids, none nil.
pub(crate) fn distinct_ids(field: &str, ids: &[Uuid]) -> Check {
    let mut seen = HashSet::new();
    for (i, v) in ids.iter().enumerate() {
        let path = format!("{field}[{i}]");
        id(&path, v)?;
        if !seen.insert(v) {
            return Err(duplicate(&path, &v.to_string()));
        }
    }
    Ok(())
}

/// Money: 1..=[`AMOUNT_MAX_MINOR`] minor units.
pub(crate) fn amount(field: &str, minor: i64) -> Check {
    if !(1..=AMOUNT_MAX_MINOR).contains(&minor) {
        return Err(ValidationError::at(
            "out_of_range",
            field,
            format!("`{field}` must be between 1 and {AMOUNT_MAX_MINOR} minor units, got {minor}"),
        ));
    }
    Ok(())
}

/// An active ISO 4217 code.
pub(crate) fn currency(field: &str, c: &Currency) -> Check {
    if !c.is_active() {
        // Debug-quote the code: it is untrusted and may hold anything.
        return Err(ValidationError::at(
            "invalid_currency",
            field,
            format!(
                "`{field}`: {:?} is not an active ISO 4217 currency code",
                truncate(c.as_str())
            ),
        ));
    }
    Ok(())
}

/// A number in `range`, else `out_of_range`.
pub(crate) fn in_range<T>(field: &str, value: T, range: std::ops::RangeInclusive<T>) -> Check
where
    T: PartialOrd + std::fmt::Display,
{
    if !range.contains(&value) {
        return Err(ValidationError::at(
            "out_of_range",
            field,
            format!(
                "`{field}` must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(())
}

/// An absolute `http`/`https` URL with a non-empty host, no whitespace or control characters,
/// at most `max` characters. A deliberately simple check, not a full RFC 3986 parser.
pub(crate) fn http_url(field: &str, s: &str, max: usize) -> Check {
    max_chars(field, s, max)?;
    let bad = |why: &str| {
        Err(ValidationError::at(
            "invalid_value",
            field,
            format!("`{field}` is not a valid http(s) URL: {why}"),
        ))
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or control characters");
    }
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return bad("the scheme must be http or https");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(end) => &host_port[1..end],
            None => return bad("an unclosed IPv6 literal"),
        }
    } else {
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, ""));
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad("the port is not a number");
        }
        host
    };
    if host.is_empty() {
        return bad("the host is empty");
    }
    Ok(())
}

/// The `no_changes` error of edits and updates that set nothing.
pub(crate) fn no_changes(what: &str) -> ValidationError {
    ValidationError::whole(
        "no_changes",
        format!("nothing to change: set at least one of {what}"),
    )
}

/// At most 64 characters of untrusted input, for messages.
pub(crate) fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Check) -> Option<(&'static str, Option<String>)> {
        r.err().map(|e| (e.code, e.field))
    }

    /// The byte prefilter never passes a text holding a forbidden control: every char, alone
    /// and between others, in both line modes.
    #[test]
    fn the_control_prefilter_misses_no_control_character() {
        for lines in [Lines::Single, Lines::Multi] {
            for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
                if forbidden_control(c, lines) {
                    for text in [c.to_string(), format!("ab{c}cd"), format!("é{c}")] {
                        assert!(may_hold_control(&text, lines), "{c:?} in {text:?}");
                        assert!(text_may_be_empty("f", &text, 100, lines).is_err());
                    }
                }
            }
            assert!(!may_hold_control("plain text, ünïcödé ✓", lines));
        }
        assert!(!may_hold_control("two\nlines\r\n\tand a tab", Lines::Multi));
        assert!(may_hold_control("two\nlines", Lines::Single));
        assert!(text_may_be_empty("f", "© 2026\u{a0}ok", 100, Lines::Single).is_ok());
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn ids() {
        assert_eq!(
            code(id("post_id", &Uuid::nil())),
            Some(("invalid_value", Some("post_id".into())))
        );
        assert_eq!(code(id("post_id", &Uuid::from_u128(1))), None);
        assert_eq!(code(opt_id("parent_id", None)), None);
        let dup = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(1)];
        assert_eq!(
            code(distinct_ids("item_ids", &dup)),
            Some(("invalid_value", Some("item_ids[2]".into())))
        );
        assert_eq!(
            code(distinct_ids("item_ids", &[Uuid::from_u128(1), Uuid::nil()])),
            Some(("invalid_value", Some("item_ids[1]".into())))
        );
    }

    #[test]
    fn texts() {
        let single = |v: &str| code(text("title", v, 5, Lines::Single)).map(|c| c.0);
        let multi = |v: &str| code(text("body", v, 5, Lines::Multi)).map(|c| c.0);
        assert_eq!(single("hello"), None);
        assert_eq!(single(""), Some("required"));
        assert_eq!(single(" \n\t "), Some("required"));
        assert_eq!(single("héllo"), None, "chars, not bytes");
        assert_eq!(single("ééééé"), None);
        assert_eq!(single("éééééé"), Some("too_long"));
        assert_eq!(single("a\nb"), Some("invalid_value"));
        assert_eq!(multi("a\r\nb\t"), None);
        assert_eq!(multi("a\u{0}b"), Some("invalid_value"));
        assert_eq!(multi("a\u{1b}b"), Some("invalid_value"));
        assert_eq!(multi("a\u{85}b"), Some("invalid_value"), "C1 controls too");
        assert_eq!(
            code(text_may_be_empty("description", "", 5, Lines::Multi)),
            None
        );
        assert_eq!(
            code(opt_text("title", Some(&String::new()), 5, Lines::Single)).map(|c| c.0),
            Some("required")
        );
    }

    #[test]
    fn tag_rules() {
        assert_eq!(code(tags("tags", &s(&["rust", "data-lake", "k8s"]))), None);
        assert_eq!(code(tags("tags", &[])), None);
        assert_eq!(
            code(tags("tags", &s(&["ok", "Bad"]))),
            Some(("invalid_value", Some("tags[1]".into())))
        );
        assert_eq!(
            code(tags("tags", &s(&["a b"]))),
            Some(("invalid_value", Some("tags[0]".into())))
        );
        assert_eq!(
            code(tags("tags", &s(&["a", ""]))),
            Some(("required", Some("tags[1]".into())))
        );
        assert_eq!(
            code(tags("tags", &s(&["x", "y", "x"]))),
            Some(("invalid_value", Some("tags[2]".into())))
        );
        assert_eq!(
            code(tags("tags", &s(&[&"a".repeat(33)]))),
            Some(("too_long", Some("tags[0]".into())))
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert_eq!(
            code(tags("tags", &eleven)),
            Some(("too_many", Some("tags".into())))
        );
    }

    #[test]
    fn skill_rules() {
        assert_eq!(code(skills("skills", &s(&["Rust", "SQL"]))), None);
        assert_eq!(
            code(skills("skills", &s(&["Rust", " rust "]))),
            Some(("invalid_value", Some("skills[1]".into())))
        );
        assert_eq!(
            code(skills("skills", &s(&["  "]))),
            Some(("required", Some("skills[0]".into())))
        );
        let many: Vec<String> = (0..51).map(|i| format!("s{i}")).collect();
        assert_eq!(
            code(skills("skills", &many)),
            Some(("too_many", Some("skills".into())))
        );
    }

    #[test]
    fn money() {
        assert_eq!(code(amount("amount_minor", 1)), None);
        assert_eq!(code(amount("amount_minor", AMOUNT_MAX_MINOR)), None);
        for bad in [0, -1, i64::MIN, AMOUNT_MAX_MINOR + 1, i64::MAX] {
            assert_eq!(
                code(amount("amount_minor", bad)).map(|c| c.0),
                Some("out_of_range")
            );
        }
        assert_eq!(code(currency("currency", &Currency::new("EUR"))), None);
        assert_eq!(
            code(currency("salary_band.currency", &Currency::new("eur"))),
            Some(("invalid_currency", Some("salary_band.currency".into())))
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(code(in_range("capacity", 1u32, 1..=10)), None);
        assert_eq!(
            code(in_range("capacity", 0u32, 1..=10)).map(|c| c.0),
            Some("out_of_range")
        );
        assert_eq!(
            code(in_range("capacity", 11u32, 1..=10)).map(|c| c.0),
            Some("out_of_range")
        );
    }

    #[test]
    fn urls() {
        let ok = |u: &str| code(http_url("online_url", u, 100)).is_none();
        assert!(ok("https://meet.example.com/abc?x=1#y"));
        assert!(ok("http://example.com"));
        assert!(ok("HTTPS://Example.com:8443/path"));
        assert!(ok("https://user@host/"));
        assert!(ok("https://[::1]:8080/"));
        assert!(!ok("ftp://example.com"));
        assert!(!ok("https://"));
        assert!(!ok("https:///path"));
        assert!(!ok("https://:80/"));
        assert!(!ok("https://host:port/"));
        assert!(!ok("https://exa mple.com"));
        assert!(!ok("https://[::1/"));
        assert!(!ok("javascript:alert(1)"));
        assert!(!ok("é"));
        assert_eq!(
            code(http_url(
                "online_url",
                &format!("https://x.io/{}", "a".repeat(100)),
                100
            ))
            .map(|c| c.0),
            Some("too_long")
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc"), "abc");
        assert_eq!(truncate(&"é".repeat(100)).chars().count(), 64);
    }
}
