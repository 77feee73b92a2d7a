//! [`Action`]'s `Deserialize`, written by hand.
//!
//! serde's derive for an internally tagged enum (`{"type": "<kind>", ...}`) buffers every object
//! into an intermediate tree before it looks at the tag, then decodes the payload from that tree:
//! an allocation per member and a second pass, on every action every consumer reads. Philo
//! writes `"type"` first (serialization puts the tag first), so this decoder reads the first
//! member and, when it is `"type"`, decodes the rest of the object straight into the kind's
//! payload struct. An object whose `"type"` comes later (a client may write members in any
//! order) is buffered as a JSON tree first, as the derive would; [`decode_tag_anywhere`], for
//! JSON text (what clients send), reads such an object twice instead, with no tree. Every path
//! refuses what the derive refused: unknown kinds, a missing `"type"`, unknown or duplicate
//! members (the payload structs deny unknown fields; a second `"type"` is refused here).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{Action, ActionKind};

/// What the vocabulary macro provides: the wire names, and decoding a kind's payload.
pub(super) trait Payloads: Sized {
    /// Every kind's wire name (for "unknown variant" messages).
    const NAMES: &'static [&'static str];

    /// Decodes `payload` (the object's members other than `"type"`) as this kind's payload.
    fn deserialize_payload<'de, D: Deserializer<'de>>(self, payload: D)
    -> Result<Action, D::Error>;
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ActionVisitor)
    }
}

struct ActionVisitor;

impl<'de> Visitor<'de> for ActionVisitor {
    type Value = Action;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an action object with a \"type\" member")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Action, A::Error> {
        match map.next_key::<Key<'de>>()? {
            None => Err(de::Error::missing_field("type")),
            Some(Key::Type) => {
                let Kind(kind) = map.next_value()?;
                kind.deserialize_payload(MapAccessDeserializer::new(OtherMembers {
                    map,
                    on_type: OnType::Refuse,
                }))
            }
            Some(Key::Other(first)) => buffered(first, map),
        }
    }
}

/// The slow path: `"type"` is not the first member. Collects the members into a tree, then
/// decodes the payload from it.
fn buffered<'de, A: MapAccess<'de>>(first: Cow<'de, str>, mut map: A) -> Result<Action, A::Error> {
    let mut members = Map::new();
    members.insert(first.into_owned(), map.next_value::<Value>()?);
    let mut kind = None;
    while let Some(key) = map.next_key::<Key<'de>>()? {
        match key {
            Key::Type => {
                let Kind(k) = map.next_value()?;
                if kind.replace(k).is_some() {
                    return Err(de::Error::duplicate_field("type"));
                }
            }
            Key::Other(name) => {
                let value = map.next_value::<Value>()?;
                if members.contains_key(name.as_ref()) {
                    return Err(de::Error::custom(format_args!("duplicate field `{name}`")));
                }
                members.insert(name.into_owned(), value);
            }
        }
    }
    let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
    kind.deserialize_payload(Value::Object(members))
        .map_err(de::Error::custom)
}

/// Decodes JSON text whose `"type"` may be any member, without the slow path's tree: a first
/// pass reads only `"type"` (skipping the other members' values unparsed into anything), a
/// second decodes the object straight into that kind's payload, passing over `"type"`.
/// `None` for whatever this way cannot decode — the caller's strict path then finds the error
/// (or, for a struct written as an array, the action).
pub(super) fn decode_tag_anywhere(text: &str) -> Option<Action> {
    /// Only the tag; the derive skips other members and refuses a duplicate `"type"`.
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
    }
    let tag: Tag<'_> = serde_json::from_str(text).ok()?;
    let kind = ActionKind::parse(tag.kind)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let action = kind.deserialize_payload(WithoutType(&mut de)).ok()?;
    de.end().ok()?;
    Some(action)
}

/// A JSON object's deserializer that hands its visitor every member except `"type"`.
struct WithoutType<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithoutType<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(WithoutTypeVisitor(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct WithoutTypeVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for WithoutTypeVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(OtherMembers {
            map,
            on_type: OnType::Skip,
        })
    }
}

/// An object member's name: `"type"` or another, borrowed from the input where it can be.
enum Key<'de> {
    Type,
    Other(Cow<'de, str>),
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(if v == "type" {
            Key::Type
        } else {
            Key::Other(Cow::Borrowed(v))
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(if v == "type" {
            Key::Type
        } else {
            Key::Other(Cow::Owned(v.to_owned()))
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(if v == "type" {
            Key::Type
        } else {
            Key::Other(Cow::Owned(v))
        })
    }
}

/// The `"type"` member's value: a known kind's wire name.
struct Kind(ActionKind);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KindVisitor)
    }
}

struct KindVisitor;

impl Visitor<'_> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an action kind")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        ActionKind::parse(v)
            .map(Kind)
            .ok_or_else(|| E::unknown_variant(v, ActionKind::NAMES))
    }
}

/// What [`OtherMembers`] does with a `"type"` member.
enum OnType {
    /// Refuse it: the leading `"type"` was read already, so this is a second one (the payload
    /// structs would otherwise see it as an unknown field, or not at all if one day one does
    /// not deny them).
    Refuse,
    /// Pass over it: [`decode_tag_anywhere`]'s first pass read it and checked there is one.
    Skip,
}

/// An object's members other than `"type"`, handed to the payload's decoder.
struct OtherMembers<A> {
    map: A,
    on_type: OnType,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OtherMembers<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            match (self.map.next_key::<Key<'de>>()?, &self.on_type) {
                (None, _) => return Ok(None),
                (Some(Key::Type), OnType::Refuse) => {
                    return Err(de::Error::duplicate_field("type"));
                }
                (Some(Key::Type), OnType::Skip) => {
                    self.map.next_value::<de::IgnoredAny>()?;
                }
                (Some(Key::Other(Cow::Borrowed(name))), _) => {
                    return seed
                        .deserialize(BorrowedStrDeserializer::new(name))
                        .map(Some);
                }
                (Some(Key::Other(Cow::Owned(name))), _) => {
                    return seed.deserialize(StringDeserializer::new(name)).map(Some);
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<Action, String> {
        serde_json::from_str::<Action>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn type_first_or_later_decodes_the_same_action() {
        let first = r#"{"type":"post.created","title":"t","body":"b","tags":["x"]}"#;
        let later = r#"{"title":"t","body":"b","type":"post.created","tags":["x"]}"#;
        let a = decode(first).unwrap();
        assert_eq!(a, decode(later).unwrap());
        assert_eq!(serde_json::to_string(&a).unwrap(), first);
        // From a parsed tree too (keys sorted: `type` last).
        let tree: Value = serde_json::from_str(later).unwrap();
        assert_eq!(Action::deserialize(&tree).unwrap(), a);
    }

    #[test]
    fn unknown_kinds_members_and_duplicates_are_refused_on_both_paths() {
        for json in [
            r#"{"type":"post.exploded","title":"t","body":"b"}"#,
            r#"{"title":"t","body":"b","type":"post.exploded"}"#,
            r#"{"type":"post.created","title":"t","body":"b","colour":1}"#,
            r#"{"title":"t","colour":1,"body":"b","type":"post.created"}"#,
            r#"{"type":"post.created","title":"t","title":"u","body":"b"}"#,
            r#"{"title":"t","title":"u","body":"b","type":"post.created"}"#,
            r#"{"type":"post.created","type":"post.created","title":"t","body":"b"}"#,
            r#"{"title":"t","type":"post.created","body":"b","type":"post.created"}"#,
            r#"{"title":"t","body":"b"}"#,
            r#"{}"#,
            r#"{"type":7,"title":"t","body":"b"}"#,
            r#"{"type":"post.created","body":"b"}"#,
            r#"["post.created","t","b"]"#,
        ] {
            assert!(decode(json).is_err(), "{json} decoded");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let unknown = decode(r#"{"type":"post.exploded"}"#).unwrap_err();
        assert!(
            unknown.starts_with("unknown variant `post.exploded`"),
            "{unknown}"
        );
        let missing = decode(r#"{"title":"t"}"#).unwrap_err();
        assert!(missing.starts_with("missing field `type`"), "{missing}");
        let field = decode(r#"{"type":"post.created","colour":1}"#).unwrap_err();
        assert!(field.starts_with("unknown field `colour`"), "{field}");
        let field = decode(r#"{"colour":1,"type":"post.created"}"#).unwrap_err();
        assert!(field.starts_with("unknown field `colour`"), "{field}");
    }
}
