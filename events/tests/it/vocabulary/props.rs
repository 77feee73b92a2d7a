//! Property tests: the decoder never panics, valid actions roundtrip and validate, and what
//! they serialise to matches their kind's published schema.

use chrono::{DateTime, TimeDelta, Utc};
use philo_events::action::{
    self, Action, ActionKind, CommentCreated, Currency, DonationMade, EventCreated, ExploreViewed,
    FollowCreated, JobOfferCreated, PostCreated, ProfileUpdated, SalaryBand, SalaryPeriod,
};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::string::string_regex;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{good, now};

/// Member names that occur in the vocabulary, so random objects hit real fields.
const FIELDS: &[&str] = &[
    "title",
    "body",
    "tags",
    "post_id",
    "approach_id",
    "target_id",
    "parent_id",
    "comment_id",
    "kind",
    "user_id",
    "amount_minor",
    "currency",
    "payment_ref",
    "goal_minor",
    "ends_at",
    "starts_at",
    "campaign_id",
    "description",
    "location",
    "online_url",
    "capacity",
    "event_id",
    "reason",
    "status",
    "to_user_id",
    "skills",
    "salary_band",
    "min_minor",
    "max_minor",
    "period",
    "offer_id",
    "answer",
    "display_name",
    "text",
    "image_id",
    "purpose",
    "content_type",
    "width",
    "height",
    "size_bytes",
    "thumbnail_key",
    "item_ids",
    "item_id",
    "username",
    "role",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        any::<u128>().prop_map(|n| Value::from(Uuid::from_u128(n).to_string())),
        Just(Value::from(Uuid::nil().to_string())),
        (0i64..4_000_000_000)
            .prop_map(|s| Value::from(DateTime::from_timestamp(s, 0).unwrap().to_rfc3339())),
        select(
            &[
                "EUR",
                "like",
                "going",
                "year",
                "accepted",
                "avatar",
                "user",
                "image/png",
                "https://x.io"
            ][..]
        )
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![select(FIELDS).prop_map(str::to_owned), "[a-z_]{1,8}"];
    json_leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with a real `"type"` and members drawn from the vocabulary's field names.
fn action_shaped() -> impl Strategy<Value = Value> {
    let members = btree_map(select(FIELDS), json_value(), 0..8);
    (select(ActionKind::ALL), members).prop_map(|(kind, members)| {
        let mut obj: Map<String, Value> = members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        obj.insert("type".into(), kind.as_str().into());
        Value::Object(obj)
    })
}

/// Whatever `from_value` accepts must validate without panicking and roundtrip exactly.
fn exercise(value: Value) -> Result<(), TestCaseError> {
    if let Ok(action) = Action::from_value(value) {
        let _ = action.validate(now());
        let _ = action.referenced_ids();
        let bytes = serde_json::to_vec(&action).unwrap();
        prop_assert_eq!(Action::from_json(&bytes).unwrap(), action);
    }
    Ok(())
}

/// `value`'s members as JSON text, rotated left by `by`: `"type"` lands at every position
/// over the cases (`Value`'s own text sorts members by name).
fn rotated(value: &Value, by: usize) -> String {
    let obj = value.as_object().expect("an object");
    let mut members: Vec<String> = obj
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    let n = members.len().max(1);
    members.rotate_left(by % n);
    format!("{{{}}}", members.join(","))
}

// ---- valid actions ----

fn id() -> impl Strategy<Value = Uuid> {
    (1..=u128::MAX).prop_map(Uuid::from_u128)
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

fn line(max: usize) -> impl Strategy<Value = String> {
    let pattern = format!("[A-Za-z0-9éß漢🙂][A-Za-z0-9éß漢🙂 .,!?'-]{{0,{}}}", max - 1);
    string_regex(&pattern).expect("valid regex")
}

fn multiline(max: usize) -> impl Strategy<Value = String> {
    let pattern = format!("[A-Za-z0-9é漢][A-Za-z0-9é漢 .,\\n\\t\\r-]{{0,{}}}", max - 1);
    string_regex(&pattern).expect("valid regex")
}

fn currency() -> impl Strategy<Value = Currency> {
    select(Currency::ACTIVE).prop_map(Currency::new)
}

fn amount() -> impl Strategy<Value = i64> {
    1..=action::limits::AMOUNT_MAX_MINOR
}

fn skills() -> impl Strategy<Value = Vec<String>> {
    btree_set("[a-z][a-z0-9+#.]{0,20}", 0..8).prop_map(|s| s.into_iter().collect())
}

fn valid_action() -> impl Strategy<Value = Action> {
    let post = (
        line(200),
        multiline(300),
        btree_set("[a-z0-9-]{1,32}", 0..=10),
    )
        .prop_map(|(title, body, tags)| {
            PostCreated {
                title,
                body,
                tags: tags.into_iter().collect(),
            }
            .into()
        });
    let comment = (id(), multiline(300), proptest::option::of(id())).prop_map(
        |(target_id, body, parent_id)| {
            CommentCreated {
                target_id,
                body,
                parent_id,
            }
            .into()
        },
    );
    let donation = (id(), amount(), currency(), "[!-~][ -~]{0,127}").prop_map(
        |(target_id, amount_minor, currency, payment_ref)| {
            DonationMade {
                target_id,
                amount_minor,
                currency,
                payment_ref,
            }
            .into()
        },
    );
    let venue = prop_oneof![
        line(200).prop_map(|l| (Some(l), None)),
        "https?://[a-z0-9]{1,20}(\\.[a-z]{2,5})?(:[0-9]{1,5})?(/[a-zA-Z0-9_?=&%-]{0,40})?"
            .prop_map(|u| (None, Some(u))),
    ];
    let event = (
        line(200),
        multiline(300),
        time(),
        1i64..10_000_000,
        venue,
        proptest::option::of(1..=action::limits::CAPACITY_MAX),
    )
        .prop_map(
            |(title, description, starts_at, secs, (location, online_url), capacity)| {
                let ends_at = starts_at + TimeDelta::seconds(secs);
                EventCreated {
                    title,
                    description,
                    starts_at,
                    ends_at,
                    location,
                    online_url,
                    capacity,
                }
                .into()
            },
        );
    let band = (
        amount(),
        amount(),
        currency(),
        select(&[SalaryPeriod::Year, SalaryPeriod::Month, SalaryPeriod::Hour][..]),
    )
        .prop_map(|(a, b, currency, period)| SalaryBand {
            min_minor: a.min(b),
            max_minor: a.max(b),
            currency,
            period,
        });
    let job = (
        proptest::option::of(id()),
        line(200),
        multiline(300),
        skills(),
        proptest::option::of(band),
    )
        .prop_map(|(to_user_id, title, description, skills, salary_band)| {
            JobOfferCreated {
                to_user_id,
                title,
                description,
                skills,
                salary_band,
            }
            .into()
        });
    let follow = id().prop_map(|user_id| FollowCreated { user_id }.into());
    let explore = btree_set(id(), 1..=100).prop_map(|ids| {
        ExploreViewed {
            item_ids: ids.into_iter().collect(),
        }
        .into()
    });
    let profile = (
        proptest::option::of(line(64)),
        proptest::option::of(multiline(200)),
        proptest::option::of(proptest::bool::ANY),
    )
        .prop_filter("at least one change", |(n, d, o)| {
            n.is_some() || d.is_some() || o.is_some()
        })
        .prop_map(|(display_name, description, sale_opt_out)| {
            ProfileUpdated {
                display_name,
                description,
                sale_opt_out,
            }
            .into()
        });
    prop_oneof![
        post, comment, donation, event, job, follow, explore, profile
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(action) = Action::from_json(&bytes) {
            let _ = action.validate(now());
        }
    }

    #[test]
    fn mutated_good_json_never_panics(
        sample in select(good()),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = serde_json::to_vec(&sample).unwrap();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => bytes[i] = byte,
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        if let Ok(action) = Action::from_json(&bytes) {
            let _ = action.validate(now());
            let again = serde_json::to_vec(&action).unwrap();
            prop_assert_eq!(Action::from_json(&again).unwrap(), action);
        }
    }

    #[test]
    fn arbitrary_json_values_never_panic(value in json_value()) {
        exercise(value)?;
    }

    #[test]
    fn action_shaped_values_never_panic(value in action_shaped()) {
        let _ = Action::from_json(value.to_string().as_bytes());
        exercise(value)?;
    }

    #[test]
    fn member_order_does_not_change_the_decoding(value in action_shaped(), by in 0usize..9) {
        let text = rotated(&value, by);
        // The tree is parsed from the same text: serde_json's float parsing need not give back
        // the very `f64` the generator drew, and error messages quote it.
        let tree: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(Action::from_json(text.as_bytes()), Action::from_value(tree), "{}", text);
    }

    #[test]
    fn valid_actions_decode_whatever_their_member_order(action in valid_action(), by in 0usize..9) {
        let text = rotated(&serde_json::to_value(&action).unwrap(), by);
        prop_assert_eq!(Action::from_json(text.as_bytes()), Ok(action), "{}", text);
    }

    #[test]
    fn valid_actions_roundtrip_and_validate(action in valid_action()) {
        let bytes = serde_json::to_vec(&action).unwrap();
        let decoded = Action::from_json(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&action));
        prop_assert_eq!(action.validate(now()), Ok(()));
    }

    #[test]
    fn valid_actions_match_their_schema(action in valid_action()) {
        let schemas = action::json_schemas();
        let schema = &schemas["kinds"][action.kind().as_str()]["schema"];
        let value = serde_json::to_value(&action).unwrap();
        let keys = value.as_object().unwrap();
        let props = schema["properties"].as_object().unwrap();
        for key in keys.keys() {
            prop_assert!(props.contains_key(key), "{} not in the {} schema", key, action.kind());
        }
        for required in schema["required"].as_array().unwrap() {
            prop_assert!(keys.contains_key(required.as_str().unwrap()), "{} missing", required);
        }
        prop_assert_eq!(&value["type"], &props["type"]["const"]);
        if let Some(band) = keys.get("salary_band") {
            let band_props = schema["$defs"]["SalaryBand"]["properties"].as_object().unwrap();
            let band_keys = band.as_object().unwrap();
            prop_assert!(band_keys.keys().all(|k| band_props.contains_key(k)));
            prop_assert_eq!(band_keys.len(), band_props.len());
        }
    }
}
