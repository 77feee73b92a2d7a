//! Golden test: a file of actions in, the expected views out.
//!
//! `tests/golden/social.actions.jsonl` holds one action per line: `actor` (a name), optional
//! `as` (a name for the entity the action creates) and the `action`, in which `"@name"` stands
//! for a user's id and `"$name"` for a named entity's id (an unknown name is a fresh id). The
//! views are rendered with ids mapped back to names and compared with
//! `tests/golden/social.expected.json`. After a deliberate change, regenerate it with
//! `PHILO_UPDATE_GOLDEN=1 cargo test -p philo-streams --test it golden` and review the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::world::World;

struct Names {
    ids: BTreeMap<String, Uuid>,
}

impl Names {
    fn id(&mut self, name: &str) -> Uuid {
        *self.ids.entry(name.to_owned()).or_insert_with(Uuid::now_v7)
    }

    fn name(&self, id: &Uuid) -> String {
        self.ids
            .iter()
            .find(|(_, v)| *v == id)
            .map_or_else(|| format!("?{id}"), |(k, _)| k.clone())
    }

    fn resolve(&mut self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(n) = s.strip_prefix('@').or_else(|| s.strip_prefix('$')) {
                    *s = self.id(n).to_string();
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.resolve(x)),
            Value::Object(o) => o.values_mut().for_each(|x| self.resolve(x)),
            _ => {}
        }
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[tokio::test]
async fn social_views_match_the_golden_file() {
    let mut w = World::new().await;
    let mut names = Names {
        ids: BTreeMap::new(),
    };
    let input = std::fs::read_to_string(dir().join("social.actions.jsonl")).unwrap();
    let mut users = Vec::new();
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let mut step: Value = serde_json::from_str(line).unwrap();
        let actor_name = step["actor"].as_str().unwrap().to_owned();
        let actor = names.id(&actor_name);
        if !users.contains(&actor_name) {
            users.push(actor_name);
        }
        let mut action = step["action"].take();
        names.resolve(&mut action);
        let id = w.act(actor, action).await;
        if let Some(n) = step["as"].as_str() {
            names.ids.insert(n.to_owned(), id);
        }
    }
    let stats = w.sync().await;
    assert_eq!(stats.undecodable, 0);

    let mut out = serde_json::Map::new();
    let mut feeds = serde_json::Map::new();
    let mut graph = serde_json::Map::new();
    let mut notifications = serde_json::Map::new();
    for u in &users {
        let id = names.id(u);
        let feed: Vec<String> = w.feed(id).iter().map(|i| names.name(i)).collect();
        feeds.insert(u.clone(), json!(feed));
        let p = w.views.profile(&id).unwrap();
        let followers: Vec<String> = w
            .views
            .followers(&id, None, 100)
            .unwrap()
            .items
            .iter()
            .map(|s| names.name(&s.user_id))
            .collect();
        graph.insert(
            u.clone(),
            json!({"followers": followers, "counts": [p.followers, p.following]}),
        );
        let notes: Vec<Value> = w
            .views
            .notifications(&id, None, 100)
            .unwrap()
            .items
            .iter()
            .map(|n| {
                json!({
                    "kind": n.kind,
                    "actors": n.actors.iter().map(|a| a.username.clone()).collect::<Vec<_>>(),
                    "actor_count": n.actor_count,
                    "target": n.target_id.map(|t| names.name(&t)),
                })
            })
            .collect();
        notifications.insert(u.clone(), json!(notes));
    }
    out.insert("feeds".into(), Value::Object(feeds));
    out.insert("graph".into(), Value::Object(graph));
    out.insert("notifications".into(), Value::Object(notifications));

    let post1 = names.id("post1");
    let t = w.views.post(&post1, None, None, 50).unwrap();
    out.insert(
        "post1".into(),
        json!({
            "approaches": t.approaches.items.iter().map(|i| names.name(&i.id)).collect::<Vec<_>>(),
            "comments": t.comments.items.iter().map(|i| names.name(&i.id)).collect::<Vec<_>>(),
            "stats": [t.item.stats.reactions, t.item.stats.comments, t.item.stats.approaches],
        }),
    );
    let post2 = w.views.post(&names.id("post2"), None, None, 10).unwrap();
    out.insert("post2_title".into(), post2.item.fields()["title"].clone());
    let camp = w.views.campaign(&names.id("camp1")).unwrap();
    out.insert(
        "camp1".into(),
        json!({"raised_minor": camp.raised_minor, "goal_reached": camp.goal_reached, "donations": camp.item.stats.donations}),
    );
    let offer = w
        .views
        .job_offers(
            &names.id("bob"),
            philo_streams::read::OfferBox::Received,
            None,
            10,
        )
        .unwrap();
    out.insert(
        "offers_received_by_bob".into(),
        json!(
            offer
                .items
                .iter()
                .map(|i| json!([names.name(&i.id), i.state]))
                .collect::<Vec<_>>()
        ),
    );
    let mut failed: Vec<(String, String)> = w
        .failed()
        .into_iter()
        .map(|(id, reason)| (names.name(&id), reason))
        .collect();
    failed.sort();
    out.insert("failed".into(), json!(failed));

    let got = serde_json::to_string_pretty(&Value::Object(out)).unwrap() + "\n";
    let path = dir().join("social.expected.json");
    if std::env::var_os("PHILO_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .expect("expected file missing: run with PHILO_UPDATE_GOLDEN=1 once and review it");
    assert_eq!(got, expected, "views differ from {}", path.display());
}
