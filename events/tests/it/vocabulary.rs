//! The action vocabulary, data-driven: good JSON per kind, bad JSON per error code, schemas, and
//! property tests (in `vocabulary/props.rs`).

use chrono::{DateTime, Utc};
use philo_events::action::{self, Action, ActionKind};
use serde_json::{Value, json};

mod props;

/// The injected clock every validation here runs against.
pub(crate) fn now() -> DateTime<Utc> {
    "2025-06-01T12:00:00Z".parse().expect("valid time")
}

const U1: &str = "0190a5c4-1a2b-7c3d-8e4f-5a6b7c8d9e01";
const U2: &str = "0190a5c4-1a2b-7c3d-8e4f-5a6b7c8d9e02";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// `{"type": kind, ...fields}`.
fn act(kind: &str, fields: Value) -> Value {
    let mut obj = fields.as_object().cloned().expect("fields are an object");
    obj.insert("type".into(), kind.into());
    Value::Object(obj)
}

/// One valid action per kind (two for kinds with alternative shapes), in canonical form: what
/// serialising the decoded action gives back.
pub(crate) fn good() -> Vec<Value> {
    vec![
        act(
            "post.created",
            json!({"title": "Cold chain for small farms", "body": "Milk spoils.\nWhat now?", "tags": ["logistics", "farming-2"]}),
        ),
        act(
            "post.edited",
            json!({"post_id": U1, "title": "Cold chain, revisited"}),
        ),
        act("post.edited", json!({"post_id": U1, "tags": []})),
        act("post.deleted", json!({"post_id": U1})),
        act(
            "approach.created",
            json!({"post_id": U1, "title": "Solar fridges", "body": "Rent them per litre."}),
        ),
        act(
            "approach.created",
            json!({"title": "Standalone idea", "body": "No post needed."}),
        ),
        act(
            "approach.edited",
            json!({"approach_id": U1, "body": "Rent them per day."}),
        ),
        act("approach.deleted", json!({"approach_id": U1})),
        act(
            "comment.created",
            json!({"target_id": U1, "body": "Nice 👍", "parent_id": U2}),
        ),
        act("comment.deleted", json!({"comment_id": U1})),
        act(
            "reaction.added",
            json!({"target_id": U1, "kind": "insightful"}),
        ),
        act("reaction.removed", json!({"target_id": U1, "kind": "like"})),
        act("follow.created", json!({"user_id": U1})),
        act("follow.removed", json!({"user_id": U1})),
        act("block.created", json!({"user_id": U1})),
        act("block.removed", json!({"user_id": U1})),
        act(
            "donation.made",
            json!({"target_id": U1, "amount_minor": 2500, "currency": "EUR", "payment_ref": "pi_3Nk 42"}),
        ),
        act(
            "campaign.created",
            json!({"target_id": U1, "goal_minor": 1_000_000, "currency": "USD", "ends_at": "2025-07-01T00:00:00Z"}),
        ),
        act("campaign.closed", json!({"campaign_id": U1})),
        act(
            "event.created",
            json!({"title": "Meetup", "description": "Talks\tand pizza", "starts_at": "2025-05-01T18:00:00Z", "ends_at": "2025-05-01T21:00:00Z", "location": "Berlin, Factory", "capacity": 80}),
        ),
        act(
            "event.created",
            json!({"title": "Webinar", "description": "Online", "starts_at": "2025-07-01T18:00:00.250Z", "ends_at": "2025-07-01T19:00:00Z", "online_url": "https://meet.example.com/abc?x=1"}),
        ),
        act(
            "event.updated",
            json!({"event_id": U1, "online_url": "http://example.org"}),
        ),
        act(
            "event.cancelled",
            json!({"event_id": U1, "reason": "Venue flooded"}),
        ),
        act("event.rsvp", json!({"event_id": U1, "status": "not_going"})),
        act(
            "job_offer.created",
            json!({"to_user_id": U1, "title": "Data engineer", "description": "Build the lake.", "skills": ["rust", "sql"], "salary_band": {"min_minor": 6_000_000, "max_minor": 8_000_000, "currency": "CHF", "period": "year"}}),
        ),
        act(
            "job_offer.created",
            json!({"title": "Open offer", "description": "Anyone?", "skills": []}),
        ),
        act(
            "job_offer.answered",
            json!({"offer_id": U1, "answer": "accepted"}),
        ),
        act("job_offer.withdrawn", json!({"offer_id": U1})),
        act("profile.updated", json!({"display_name": "Ada L."})),
        act("profile.updated", json!({"description": ""})),
        act(
            "resume.updated",
            json!({"text": "Ten years of pipelines.", "skills": ["Kafka", "Delta Lake"]}),
        ),
        act(
            "image.uploaded",
            json!({"image_id": U1, "purpose": "avatar", "content_type": "image/png", "width": 512, "height": 512, "size_bytes": 20_480, "thumbnail_key": "thumbs/0190a5c4.webp"}),
        ),
        act("notifications.read", json!({"up_to": U1})),
        act(
            "notifications.preferences_updated",
            json!({"post_by_followed": true, "reaction": false}),
        ),
        act("explore.viewed", json!({"item_ids": [U1, U2]})),
        act("explore.clicked", json!({"item_id": U1})),
        act("explore.dismissed", json!({"item_id": U1})),
        act(
            "user.registered",
            json!({"username": "ada_l", "role": "procurer"}),
        ),
        act("user.logged_in", json!({})),
        act("user.logged_out", json!({})),
        act("account.erased", json!({})),
    ]
}

fn kind_of(v: &Value) -> ActionKind {
    ActionKind::parse(v["type"].as_str().expect("type")).expect("known kind")
}

#[test]
fn good_actions_decode_validate_and_roundtrip() {
    let mut seen = Vec::new();
    for v in good() {
        let bytes = serde_json::to_vec(&v).unwrap();
        let action = Action::from_json(&bytes).unwrap_or_else(|e| panic!("{v}: {e:?}"));
        assert_eq!(action.kind(), kind_of(&v), "{v}");
        assert_eq!(action.kind().as_str(), v["type"], "{v}");
        assert_eq!(action.schema_version(), 1);
        action
            .validate(now())
            .unwrap_or_else(|e| panic!("{v}: {e:?}"));
        assert_eq!(serde_json::to_value(&action).unwrap(), v, "canonical form");
        // The derived deserializer (what the envelope uses) agrees with the decoder.
        assert_eq!(
            serde_json::from_slice::<Action>(&bytes).unwrap(),
            action,
            "{v}"
        );
        assert_eq!(Action::from_value(v.clone()).unwrap(), action);
        assert!(action.referenced_ids().iter().all(|id| !id.is_nil()));
        seen.push(action.kind());
    }
    for kind in ActionKind::ALL {
        assert!(seen.contains(kind), "no good sample for {kind}");
    }
}

#[test]
fn empty_bodied_kinds_decode_from_the_type_alone() {
    for kind in ["user.logged_in", "user.logged_out", "account.erased"] {
        let json = format!(r#"{{"type":"{kind}"}}"#);
        let action = Action::from_json(json.as_bytes()).unwrap();
        assert_eq!(action.kind().as_str(), kind);
        assert_eq!(serde_json::to_string(&action).unwrap(), json);
        assert!(!action.kind().client_submittable());
        let extra = format!(r#"{{"type":"{kind}","x":1}}"#);
        let e = Action::from_json(extra.as_bytes()).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("unknown_field", Some("x")));
        assert!(
            serde_json::from_str::<Action>(&extra).is_err(),
            "derive path too"
        );
    }
}

#[test]
fn every_kind_refuses_unknown_and_requires_its_required_fields() {
    let schemas = action::json_schemas();
    for v in good() {
        let kind = kind_of(&v);
        let mut extra = v.clone();
        extra["zz_unknown"] = json!(1);
        let e = Action::from_value(extra.clone()).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown_field", Some("zz_unknown")),
            "{v}"
        );
        assert!(
            serde_json::from_value::<Action>(extra).is_err(),
            "derive path: {v}"
        );

        let required = schemas["kinds"][kind.as_str()]["schema"]["required"]
            .as_array()
            .unwrap()
            .clone();
        for name in required
            .iter()
            .map(|r| r.as_str().unwrap())
            .filter(|&r| r != "type")
        {
            let mut missing = v.clone();
            missing.as_object_mut().unwrap().remove(name);
            let e = Action::from_value(missing).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("missing_field", Some(name)),
                "{v} without {name}"
            );
        }
    }
}

#[test]
fn referenced_ids_point_at_other_entities() {
    let ids = |v: Value| Action::from_value(v).unwrap().referenced_ids();
    let u1: uuid::Uuid = U1.parse().unwrap();
    let u2: uuid::Uuid = U2.parse().unwrap();
    assert_eq!(
        ids(act(
            "comment.created",
            json!({"target_id": U1, "body": "b", "parent_id": U2})
        )),
        vec![u1, u2]
    );
    assert_eq!(
        ids(act("approach.created", json!({"title": "t", "body": "b"}))),
        Vec::<uuid::Uuid>::new()
    );
    assert_eq!(
        ids(act("explore.viewed", json!({"item_ids": [U2, U1]}))),
        vec![u2, u1]
    );
    assert_eq!(
        ids(good()
            .into_iter()
            .find(|v| v["type"] == "image.uploaded")
            .unwrap()),
        Vec::<uuid::Uuid>::new()
    );
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Decode,
    Validate,
}

/// `(what, json, stage, code, field)`.
type Bad = (
    &'static str,
    String,
    Stage,
    &'static str,
    Option<&'static str>,
);

fn bad_cases() -> Vec<Bad> {
    use Stage::{Decode as D, Validate as V};
    let post = |f: Value| act("post.created", f).to_string();
    let donation = |f: Value| {
        let mut v = act(
            "donation.made",
            json!({"target_id": U1, "amount_minor": 100, "currency": "EUR", "payment_ref": "p"}),
        );
        v.as_object_mut()
            .unwrap()
            .extend(f.as_object().unwrap().clone());
        v.to_string()
    };
    let event = |f: Value| {
        let mut v = act(
            "event.created",
            json!({"title": "t", "description": "d", "starts_at": "2025-05-01T18:00:00Z", "ends_at": "2025-05-01T19:00:00Z"}),
        );
        v.as_object_mut()
            .unwrap()
            .extend(f.as_object().unwrap().clone());
        v.to_string()
    };
    let band = |b: Value| {
        act(
            "job_offer.created",
            json!({"title": "t", "description": "d", "salary_band": b}),
        )
        .to_string()
    };
    let campaign = |ends_at: &str| {
        act(
            "campaign.created",
            json!({"target_id": U1, "goal_minor": 5, "currency": "EUR", "ends_at": ends_at}),
        )
        .to_string()
    };
    let ids = |n: usize| {
        (0..n)
            .map(|i| format!("0190a5c4-1a2b-7c3d-8e4f-{:012x}", i + 1))
            .collect::<Vec<_>>()
    };
    vec![
        ("not json", "post.created".into(), D, "malformed_json", None),
        ("truncated", r#"{"type":"post.created","title":"#.into(), D, "malformed_json", None),
        ("duplicate key", format!(r#"{{"type":"follow.created","user_id":"{U1}","user_id":"{U2}"}}"#), D, "malformed_json", None),
        ("array", "[1,2]".into(), D, "not_an_object", None),
        ("no type", json!({"title": "x"}).to_string(), D, "missing_type", Some("type")),
        ("unknown kind", json!({"type": "post.published"}).to_string(), D, "unknown_kind", Some("type")),
        ("unknown field", post(json!({"title": "t", "body": "b", "colour": "red"})), D, "unknown_field", Some("colour")),
        ("unknown field on empty kind", json!({"type": "user.logged_out", "session": "s"}).to_string(), D, "unknown_field", Some("session")),
        ("missing field", post(json!({"title": "t"})), D, "missing_field", Some("body")),
        ("wrong type", post(json!({"title": 5, "body": "b"})), D, "invalid_type", Some("title")),
        ("string amount", donation(json!({"amount_minor": "100"})), D, "invalid_type", Some("amount_minor")),
        ("bad uuid", json!({"type": "follow.created", "user_id": "not-a-uuid"}).to_string(), D, "invalid_value", Some("user_id")),
        ("bad reaction", act("reaction.added", json!({"target_id": U1, "kind": "angry"})).to_string(), D, "invalid_value", Some("kind")),
        ("bad rsvp", act("event.rsvp", json!({"event_id": U1, "status": "maybe"})).to_string(), D, "invalid_value", Some("status")),
        ("bad time", campaign("2025-13-01T00:00:00Z"), D, "invalid_value", Some("ends_at")),
        ("negative capacity", event(json!({"location": "x", "capacity": -1})), D, "invalid_value", Some("capacity")),
        ("band missing currency", band(json!({"min_minor": 1, "max_minor": 2, "period": "year"})), D, "missing_field", Some("salary_band.currency")),
        ("ids not a list", act("explore.viewed", json!({"item_ids": U1})).to_string(), D, "invalid_type", Some("item_ids")),
        ("empty title", post(json!({"title": "", "body": "b"})), V, "required", Some("title")),
        ("blank title", post(json!({"title": " \t ", "body": "b"})), V, "required", Some("title")),
        ("long title", post(json!({"title": "é".repeat(201), "body": "b"})), V, "too_long", Some("title")),
        ("title newline", post(json!({"title": "a\nb", "body": "b"})), V, "invalid_value", Some("title")),
        ("body bell", post(json!({"title": "t", "body": "ding\u{7}"})), V, "invalid_value", Some("body")),
        ("tag case", post(json!({"title": "t", "body": "b", "tags": ["ok", "Rust"]})), V, "invalid_value", Some("tags[1]")),
        ("tag dup", post(json!({"title": "t", "body": "b", "tags": ["a", "a"]})), V, "invalid_value", Some("tags[1]")),
        ("too many tags", post(json!({"title": "t", "body": "b", "tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()})), V, "too_many", Some("tags")),
        ("edit nothing", act("post.edited", json!({"post_id": U1})).to_string(), V, "no_changes", None),
        ("edit approach nothing", act("approach.edited", json!({"approach_id": U1, "title": null})).to_string(), V, "no_changes", None),
        ("nil uuid", act("post.deleted", json!({"post_id": NIL})).to_string(), V, "invalid_value", Some("post_id")),
        ("nil parent", act("comment.created", json!({"target_id": U1, "body": "b", "parent_id": NIL})).to_string(), V, "invalid_value", Some("parent_id")),
        ("long comment", act("comment.created", json!({"target_id": U1, "body": "x".repeat(5001)})).to_string(), V, "too_long", Some("body")),
        ("zero amount", donation(json!({"amount_minor": 0})), V, "out_of_range", Some("amount_minor")),
        ("huge amount", donation(json!({"amount_minor": 1_000_000_000_001_i64})), V, "out_of_range", Some("amount_minor")),
        ("bad currency", donation(json!({"currency": "EURO"})), V, "invalid_currency", Some("currency")),
        ("lowercase currency", donation(json!({"currency": "eur"})), V, "invalid_currency", Some("currency")),
        ("empty payment ref", donation(json!({"payment_ref": ""})), V, "required", Some("payment_ref")),
        ("campaign ends now", campaign("2025-06-01T12:00:00Z"), V, "in_the_past", Some("ends_at")),
        ("campaign ended", campaign("2024-01-01T00:00:00+02:00"), V, "in_the_past", Some("ends_at")),
        ("both venues", event(json!({"location": "x", "online_url": "https://x.io"})), V, "conflicting_fields", None),
        ("no venue", event(json!({})), V, "conflicting_fields", None),
        ("ends before start", event(json!({"location": "x", "ends_at": "2025-05-01T17:00:00Z"})), V, "invalid_value", Some("ends_at")),
        ("ftp url", event(json!({"online_url": "ftp://x.io"})), V, "invalid_value", Some("online_url")),
        ("zero capacity", event(json!({"location": "x", "capacity": 0})), V, "out_of_range", Some("capacity")),
        ("huge capacity", event(json!({"location": "x", "capacity": 1_000_001})), V, "out_of_range", Some("capacity")),
        ("update nothing", act("event.updated", json!({"event_id": U1})).to_string(), V, "no_changes", None),
        ("update both venues", act("event.updated", json!({"event_id": U1, "location": "x", "online_url": "https://x.io"})).to_string(), V, "conflicting_fields", None),
        ("long reason", act("event.cancelled", json!({"event_id": U1, "reason": "r".repeat(501)})).to_string(), V, "too_long", Some("reason")),
        ("band min > max", band(json!({"min_minor": 3, "max_minor": 2, "currency": "EUR", "period": "month"})), V, "invalid_value", Some("salary_band.max_minor")),
        ("band currency", band(json!({"min_minor": 1, "max_minor": 2, "currency": "XXX", "period": "hour"})), V, "invalid_currency", Some("salary_band.currency")),
        ("too many skills", act("resume.updated", json!({"text": "t", "skills": (0..51).map(|i| format!("s{i}")).collect::<Vec<_>>()})).to_string(), V, "too_many", Some("skills")),
        ("empty resume", act("resume.updated", json!({"text": ""})).to_string(), V, "required", Some("text")),
        ("profile nothing", act("profile.updated", json!({})).to_string(), V, "no_changes", None),
        ("long display name", act("profile.updated", json!({"display_name": "n".repeat(65)})).to_string(), V, "too_long", Some("display_name")),
        ("no items", act("explore.viewed", json!({"item_ids": []})).to_string(), V, "too_short", Some("item_ids")),
        ("too many items", act("explore.viewed", json!({"item_ids": ids(101)})).to_string(), V, "too_many", Some("item_ids")),
        ("dup items", act("explore.viewed", json!({"item_ids": [U1, U1]})).to_string(), V, "invalid_value", Some("item_ids[1]")),
        ("short username", act("user.registered", json!({"username": "ab", "role": "user"})).to_string(), V, "too_short", Some("username")),
        ("spaced username", act("user.registered", json!({"username": "a b c", "role": "admin"})).to_string(), V, "invalid_value", Some("username")),
        ("zero width", act("image.uploaded", json!({"image_id": U1, "purpose": "post", "content_type": "image/png", "width": 0, "height": 1, "size_bytes": 1, "thumbnail_key": "k"})).to_string(), V, "out_of_range", Some("width")),
        ("not an image", act("image.uploaded", json!({"image_id": U1, "purpose": "post", "content_type": "text/html", "width": 1, "height": 1, "size_bytes": 1, "thumbnail_key": "k"})).to_string(), V, "invalid_value", Some("content_type")),
    ]
}

#[test]
fn bad_actions_are_refused_with_stable_codes() {
    for (what, json, stage, code, field) in bad_cases() {
        let got = match Action::from_json(json.as_bytes()) {
            Err(e) => (Stage::Decode, e.code, e.field),
            Ok(action) => match action.validate(now()) {
                Err(e) => (Stage::Validate, e.code, e.field),
                Ok(()) => panic!("{what}: accepted {json}"),
            },
        };
        assert_eq!(
            got,
            (stage, code, field.map(str::to_owned)),
            "{what}: {json}"
        );
    }
}

#[test]
fn json_schemas_list_every_kind() {
    let all = action::json_schemas();
    let kinds = all["kinds"].as_object().unwrap();
    assert_eq!(kinds.len(), ActionKind::ALL.len());
    for kind in ActionKind::ALL {
        let entry = &kinds[kind.as_str()];
        assert_eq!(entry["schema_version"], kind.schema_version());
        assert_eq!(entry["client_submittable"], kind.client_submittable());
        let schema = &entry["schema"];
        assert_eq!(schema["properties"]["type"]["const"], kind.as_str());
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&json!("type"))
        );
        assert_eq!(schema["additionalProperties"], false);
    }
}
