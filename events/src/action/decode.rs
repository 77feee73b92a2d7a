//! The decoder of untrusted bytes: JSON → [`Action`], with stable error codes.
//!
//! Parsing goes through [`serde_json::Value`] first, which lets the `"type"` member be checked
//! by hand (so an unknown kind is always `unknown_kind`) and lets a failing field be located:
//! serde's messages name the problem but not where it is, so the decoder re-runs the payload
//! decoder on the offending object with one member at a time (depth- and count-bounded) until
//! the same message reappears, which pins the JSON path.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::strict_json::StrictValue;
use super::{Action, ActionKind, property_names};

/// Why bytes are not an [`Action`] (user input: a 4xx, never retried).
///
/// | `code` | meaning | `field` |
/// |---|---|---|
/// | `malformed_json` | not JSON: syntax error, truncated input, trailing bytes, nesting deeper than 128, a duplicate object key | — |
/// | `not_an_object` | valid JSON, but not an object | — |
/// | `missing_type` | the object has no `"type"` | `type` |
/// | `unknown_kind` | `"type"` names no kind | `type` |
/// | `unknown_field` | a member the kind does not have | its path, e.g. `colour`, `salary_band.bonus` |
/// | `missing_field` | a required member is absent | its path, e.g. `title`, `salary_band.currency` |
/// | `invalid_type` | a member has the wrong JSON type (also a non-string `"type"`) | its path when found |
/// | `invalid_value` | right JSON type, unacceptable value: bad UUID, bad RFC 3339 time, unknown enum variant, integer out of the field's range | its path when found |
///
/// Messages are for humans, echo at most a few hundred characters of the input, and may change;
/// codes and fields do not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// Stable machine-readable code (see the table above).
    pub code: &'static str,
    /// JSON path of the offending member, when known.
    pub field: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

impl DecodeError {
    fn new(code: &'static str, field: Option<String>, message: impl Into<String>) -> Self {
        let mut message = message.into();
        clip(&mut message, MESSAGE_MAX_CHARS);
        Self {
            code,
            field,
            message,
        }
    }
}

/// Longest message kept (serde echoes offending values, which may be huge).
const MESSAGE_MAX_CHARS: usize = 300;
/// Longest field path kept (unknown member names are attacker-chosen).
const FIELD_MAX_CHARS: usize = 128;
/// How deep the field locator descends.
const LOCATE_MAX_DEPTH: usize = 8;
/// How many trial decodes the field locator may run for one error.
const LOCATE_MAX_PROBES: usize = 2_048;

pub(super) fn from_json(bytes: &[u8]) -> Result<Action, DecodeError> {
    // Fast path for the common, valid input: the typed decoder straight from the bytes (no
    // intermediate tree). It refuses everything the strict path refuses — unknown kinds and
    // members, duplicate members, trailing bytes, wrong types — except a struct written as a
    // positional array, which only `salary_band` could be; those, and every failure, take the
    // strict path below, so error codes and fields always come from one place.
    // The input's UTF-8 is checked once, then the `&str` parser runs (see
    // `Envelope::from_json`). A client may write `"type"` after other members: that object is
    // decoded in two passes instead of through the derive's tree (`wire::decode_tag_anywhere`).
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Some(action) = if text.trim_start().starts_with(r#"{"type""#) {
            serde_json::from_str::<Action>(text).ok()
        } else {
            super::wire::decode_tag_anywhere(text)
        }
        && !matches!(&action, Action::JobOfferCreated(j) if j.salary_band.is_some())
    {
        return Ok(action);
    }
    strict_from_json(bytes)
}

/// The strict decoder: parse to a duplicate-checked tree, check `type` by hand, then decode.
pub(super) fn strict_from_json(bytes: &[u8]) -> Result<Action, DecodeError> {
    let StrictValue(value) = serde_json::from_slice(bytes).map_err(|e| {
        DecodeError::new(
            "malformed_json",
            None,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    from_value(value)
}

pub(super) fn from_value(value: Value) -> Result<Action, DecodeError> {
    let Value::Object(obj) = &value else {
        return Err(DecodeError::new(
            "not_an_object",
            None,
            format!("an action must be a JSON object, got {}", json_type(&value)),
        ));
    };
    let type_field = || Some("type".to_owned());
    let kind = match obj.get("type") {
        None => {
            return Err(DecodeError::new(
                "missing_type",
                type_field(),
                "the action has no `type` member",
            ));
        }
        Some(Value::String(name)) => ActionKind::parse(name).ok_or_else(|| {
            let shown = super::validate::truncate(name);
            DecodeError::new(
                "unknown_kind",
                type_field(),
                format!("unknown action type {shown:?}"),
            )
        })?,
        Some(other) => {
            return Err(DecodeError::new(
                "invalid_type",
                type_field(),
                format!("`type` must be a string, got {}", json_type(other)),
            ));
        }
    };
    Action::deserialize(&value).map_err(|e| classify(kind, obj, &e.to_string()))
}

/// Maps a serde message about `obj` (of `kind`) to a code and a field path.
fn classify(kind: ActionKind, obj: &Map<String, Value>, msg: &str) -> DecodeError {
    let mut prober = Prober {
        tag: &obj["type"],
        msg,
        probes_left: LOCATE_MAX_PROBES,
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        // The name is the client's and may itself hold backticks: prefer an exact top-level key.
        let top = obj.keys().find(|k| {
            rest.strip_prefix(k.as_str())
                .is_some_and(|r| r.starts_with("`,"))
        });
        let field = match top {
            Some(k) => k.clone(),
            None => {
                let name = rest
                    .find("`, expected")
                    .or_else(|| rest.find("`, there are no fields"))
                    .map_or(rest, |end| &rest[..end]);
                join(prober.locate(obj, true), name)
            }
        };
        return DecodeError::new("unknown_field", Some(clipped(field)), msg);
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.strip_suffix('`').unwrap_or(rest);
        let top_level = !obj.contains_key(name) && property_names(kind).any(|p| p == name);
        let field = if top_level {
            name.to_owned()
        } else {
            join(prober.locate(obj, true), name)
        };
        return DecodeError::new("missing_field", Some(clipped(field)), msg);
    }
    let code = if msg.starts_with("invalid type: ") {
        "invalid_type"
    } else {
        // "invalid value: …", "unknown variant `…`", "UUID parsing failed: …", chrono's
        // "input contains invalid characters", …: the JSON type was right, the value was not.
        "invalid_value"
    };
    match prober.locate(obj, false) {
        Some(field) => {
            let field = clipped(field);
            DecodeError::new(code, Some(field.clone()), format!("`{field}`: {msg}"))
        }
        None => DecodeError::new(code, None, msg),
    }
}

/// One step of a JSON path.
#[derive(Clone, Copy)]
enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

/// Finds the member that makes the payload decoder fail with `msg`.
struct Prober<'a> {
    tag: &'a Value,
    msg: &'a str,
    probes_left: usize,
}

impl Prober<'_> {
    /// The path of the deepest member that, alone, reproduces the error; `containers_only`
    /// descends through objects and arrays only (for errors about a member *of* an object).
    fn locate(&mut self, obj: &Map<String, Value>, containers_only: bool) -> Option<String> {
        let mut path = Vec::new();
        let members = obj.iter().filter(|(k, _)| k.as_str() != "type");
        for (key, value) in members {
            if containers_only && !is_container(value) {
                continue;
            }
            path.push(Seg::Key(key.as_str()));
            if self.reproduces(&path, value) {
                self.descend(&mut path, value, containers_only);
                return Some(render(&path));
            }
            path.pop();
        }
        None
    }

    fn descend<'v>(&mut self, path: &mut Vec<Seg<'v>>, value: &'v Value, containers_only: bool) {
        if path.len() >= LOCATE_MAX_DEPTH {
            return;
        }
        let (children, empty): (Vec<(Seg<'v>, &'v Value)>, Value) = match value {
            Value::Object(m) => (
                m.iter().map(|(k, v)| (Seg::Key(k.as_str()), v)).collect(),
                Value::Object(Map::new()),
            ),
            Value::Array(a) => (
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (Seg::Index(i), v))
                    .collect(),
                Value::Array(Vec::new()),
            ),
            _ => return,
        };
        // A probe wraps a child in a container like this one; if even an empty one fails the
        // same way, the container itself is at fault (an array where an object belongs).
        if self.reproduces(path, &empty) {
            return;
        }
        for (seg, child) in children {
            if containers_only && !is_container(child) {
                continue;
            }
            path.push(seg);
            if self.reproduces(path, child) {
                self.descend(path, child, containers_only);
                return;
            }
            path.pop();
        }
    }

    /// Whether the action holding only `leaf` at `path` fails with the same message.
    fn reproduces(&mut self, path: &[Seg<'_>], leaf: &Value) -> bool {
        let Some((Seg::Key(root), inner)) = path.split_first() else {
            return false;
        };
        if self.probes_left == 0 {
            return false;
        }
        self.probes_left -= 1;
        let mut value = leaf.clone();
        for seg in inner.iter().rev() {
            value = match *seg {
                Seg::Key(k) => Value::Object(Map::from_iter([(k.to_owned(), value)])),
                Seg::Index(_) => Value::Array(vec![value]),
            };
        }
        let mut doc = Map::new();
        doc.insert("type".to_owned(), self.tag.clone());
        doc.insert((*root).to_owned(), value);
        let doc = Value::Object(doc);
        matches!(Action::deserialize(&doc), Err(e) if e.to_string() == self.msg)
    }
}

fn render(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn join(parent: Option<String>, name: &str) -> String {
    match parent {
        Some(parent) => format!("{parent}.{name}"),
        None => name.to_owned(),
    }
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::Object(_) | Value::Array(_))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn clip(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
}

fn clipped(mut s: String) -> String {
    clip(&mut s, FIELD_MAX_CHARS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> (&'static str, Option<String>) {
        let e = Action::from_json(json.as_bytes()).expect_err(json);
        (e.code, e.field)
    }

    fn at(code: &'static str, field: &str) -> (&'static str, Option<String>) {
        (code, Some(field.to_owned()))
    }

    const UUID: &str = "0190a5c4-1a2b-7c3d-8e4f-5a6b7c8d9e0f";

    /// The fast typed path must agree with the strict path: same action when both accept, and
    /// it must never accept what the strict path refuses.
    #[test]
    fn fast_path_agrees_with_strict_path() {
        let cases = [
            r#"{"type":"post.created","title":"t","body":"b","tags":["a"]}"#.to_owned(),
            r#"{"type":"post.created","title":"t","title":"u","body":"b"}"#.to_owned(),
            r#"{"type":"post.created","type":"post.created","title":"t","body":"b"}"#.to_owned(),
            r#"{"title":"t","body":"b","type":"post.created"}"#.to_owned(),
            r#"{"type":"post.created","title":"t","body":"b","tags":null}"#.to_owned(),
            r#"{"type":"user.logged_in"}"#.to_owned(),
            r#"{"type":"user.logged_in","x":1}"#.to_owned(),
            format!(r#"{{"type":"follow.created","user_id":"{UUID}"}}"#),
            format!(r#"{{"type":"job_offer.created","title":"t","description":"d","skills":[],"salary_band":[1,2,"EUR","year"],"to_user_id":"{UUID}"}}"#),
            r#"{"type":"job_offer.created","title":"t","description":"d","skills":[],"salary_band":{"min_minor":1,"max_minor":2,"currency":"EUR","period":"year","min_minor":3}}"#.to_owned(),
            r#"{"type":"donation.made","target_id":"x","amount_minor":1.5,"currency":"EUR","payment_ref":"r"}"#.to_owned(),
            r#"{"type":"post.created","title":"t","body":"b"} "#.to_owned(),
            r#"{"title":"t","type":"post.created","body":"b","type":"post.created"}"#.to_owned(),
            r#"{"title":"t","type":"post.created","body":"b","colour":"red"}"#.to_owned(),
            r#"{"title":"t","body":"b","type":"post\u002ecreated"}"#.to_owned(),
            r#"{"title":"t","body":"b","type":"post.created"}x"#.to_owned(),
            r#"{"title":"t","body":"b","type":"post.created","title":"u"}"#.to_owned(),
            r#"{"title":"t","body":"b","type":7}"#.to_owned(),
            r#"{"title":"t","body":"b","type":"post.exploded"}"#.to_owned(),
            r#" { "title" : "t" , "body" : "b" , "type" : "post.created" } "#.to_owned(),
            format!(r#"{{"user_id":"{UUID}","type":"follow.created"}}"#),
            r#"{"title":"t","description":"d","skills":[],"salary_band":[1,2,"EUR","year"],"type":"job_offer.created"}"#.to_owned(),
        ];
        for case in &cases {
            let strict = strict_from_json(case.as_bytes());
            let fast = serde_json::from_slice::<Action>(case.as_bytes());
            match (&strict, &fast) {
                (Ok(s), Ok(f)) => assert_eq!(s, f, "{case}"),
                (Err(_), Ok(f)) => assert!(
                    matches!(f, Action::JobOfferCreated(j) if j.salary_band.is_some()),
                    "fast path accepted what the strict path refuses: {case}"
                ),
                _ => {}
            }
            if let Some(two_pass) = super::super::wire::decode_tag_anywhere(case) {
                assert!(
                    strict.as_ref() == Ok(&two_pass)
                        || matches!(&two_pass, Action::JobOfferCreated(j) if j.salary_band.is_some()),
                    "the two-pass decoder accepted what the strict path refuses: {case}"
                );
            }
            assert_eq!(Action::from_json(case.as_bytes()), strict, "{case}");
        }
    }

    #[test]
    fn structural_errors() {
        assert_eq!(err(""), ("malformed_json", None));
        assert_eq!(err("{\"type\":"), ("malformed_json", None));
        assert_eq!(err("{} x"), ("malformed_json", None));
        assert_eq!(err("\u{feff}{}"), ("malformed_json", None));
        assert_eq!(err(&"[".repeat(10_000)), ("malformed_json", None));
        assert_eq!(err("[]"), ("not_an_object", None));
        assert_eq!(err("\"post.created\""), ("not_an_object", None));
        assert_eq!(err("null"), ("not_an_object", None));
        assert_eq!(err("{}"), at("missing_type", "type"));
        assert_eq!(err(r#"{"type":7}"#), at("invalid_type", "type"));
        assert_eq!(
            err(r#"{"type":"post.exploded"}"#),
            at("unknown_kind", "type")
        );
        assert_eq!(
            err(r#"{"type":"POST.CREATED"}"#),
            at("unknown_kind", "type")
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = Action::from_json(br#"{"type":"follow.created","user_id":"x","user_id":"y"}"#)
            .unwrap_err();
        assert_eq!(e.code, "malformed_json");
        assert!(
            e.message.contains("duplicate key \"user_id\""),
            "{}",
            e.message
        );
        assert_eq!(err(r#"{"type":"a","type":"b"}"#).0, "malformed_json");
    }

    #[test]
    fn member_errors_name_their_field() {
        assert_eq!(
            err(r#"{"type":"post.created","title":"t","body":"b","colour":1}"#),
            at("unknown_field", "colour")
        );
        assert_eq!(
            err(r#"{"type":"user.logged_in","x":null}"#),
            at("unknown_field", "x")
        );
        assert_eq!(
            err(r#"{"type":"post.created","title":"t"}"#),
            at("missing_field", "body")
        );
        assert_eq!(
            err(r#"{"type":"post.created","title":5,"body":"b"}"#),
            at("invalid_type", "title")
        );
        assert_eq!(
            err(r#"{"type":"post.created","title":"t","body":"b","tags":["a",7]}"#),
            at("invalid_type", "tags[1]")
        );
        assert_eq!(
            err(r#"{"type":"post.deleted","post_id":"nope"}"#),
            at("invalid_value", "post_id")
        );
        assert_eq!(
            err(
                r#"{"type":"reaction.added","target_id":"0190a5c4-1a2b-7c3d-8e4f-5a6b7c8d9e0f","kind":"meh"}"#
            ),
            at("invalid_value", "kind")
        );
        assert_eq!(
            err(
                r#"{"type":"event.rsvp","event_id":"0190a5c4-1a2b-7c3d-8e4f-5a6b7c8d9e0f","status":"going","status2":1}"#
            ),
            at("unknown_field", "status2")
        );
        let ts = format!(
            r#"{{"type":"campaign.created","target_id":"{UUID}","goal_minor":5,"currency":"EUR","ends_at":"tomorrow"}}"#
        );
        assert_eq!(err(&ts), at("invalid_value", "ends_at"));
        let cap = format!(r#"{{"type":"event.updated","event_id":"{UUID}","capacity":-3}}"#);
        assert_eq!(err(&cap), at("invalid_value", "capacity"));
        let float = format!(
            r#"{{"type":"donation.made","target_id":"{UUID}","amount_minor":1.5,"currency":"EUR","payment_ref":"p"}}"#
        );
        assert_eq!(err(&float), at("invalid_type", "amount_minor"));
        let ids = format!(r#"{{"type":"explore.viewed","item_ids":["{UUID}","{UUID}","bad"]}}"#);
        assert_eq!(err(&ids), at("invalid_value", "item_ids[2]"));
    }

    #[test]
    fn nested_errors_name_their_path() {
        let offer = |band: &str| {
            format!(
                r#"{{"type":"job_offer.created","title":"t","description":"d","salary_band":{band}}}"#
            )
        };
        assert_eq!(
            err(&offer(r#"{"min_minor":1,"max_minor":2,"period":"year"}"#)),
            at("missing_field", "salary_band.currency")
        );
        assert_eq!(
            err(&offer(
                r#"{"min_minor":1,"max_minor":2,"currency":"EUR","period":"year","bonus":1}"#
            )),
            at("unknown_field", "salary_band.bonus")
        );
        assert_eq!(
            err(&offer(
                r#"{"min_minor":1,"max_minor":2,"currency":"EUR","period":"decade"}"#
            )),
            at("invalid_value", "salary_band.period")
        );
        assert_eq!(
            err(&offer(
                r#"{"min_minor":"1","max_minor":2,"currency":"EUR","period":"year"}"#
            )),
            at("invalid_type", "salary_band.min_minor")
        );
        assert_eq!(err(&offer("[]")), at("invalid_type", "salary_band"));
        assert_eq!(
            err(&offer(r#"[1,2,"EUR","year"]"#)),
            at("invalid_type", "salary_band")
        );
        assert_eq!(err(&offer("7")), at("invalid_type", "salary_band"));
        let ok = offer(r#"{"min_minor":1,"max_minor":2,"currency":"EUR","period":"year"}"#);
        assert!(Action::from_json(ok.as_bytes()).is_ok());
        assert!(Action::from_json(offer("null").as_bytes()).is_ok());
    }

    #[test]
    fn messages_and_fields_are_bounded() {
        let long = "x".repeat(100_000);
        let json = format!(r#"{{"type":"post.deleted","post_id":"{long}"}}"#);
        let e = Action::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(e.code, "invalid_value");
        assert!(e.message.chars().count() <= MESSAGE_MAX_CHARS + 1);
        let json = format!(r#"{{"type":"post.deleted","post_id":"{UUID}","{long}":1}}"#);
        let e = Action::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(e.code, "unknown_field");
        assert!(e.field.unwrap().chars().count() <= FIELD_MAX_CHARS + 1);
    }

    #[test]
    fn unknown_field_names_with_backticks() {
        assert_eq!(
            err(&format!(
                r#"{{"type":"post.deleted","post_id":"{UUID}","a`, expected b":1}}"#
            )),
            at("unknown_field", "a`, expected b")
        );
    }

    #[test]
    fn from_value_matches_from_json() {
        let v = serde_json::json!({"type": "follow.created", "user_id": UUID});
        let a = Action::from_value(v.clone()).unwrap();
        assert_eq!(Action::from_json(v.to_string().as_bytes()).unwrap(), a);
        assert_eq!(
            Action::from_value(serde_json::json!(3)).unwrap_err().code,
            "not_an_object"
        );
    }
}
