//! The anonymizer over a seeded social workload (every kind the platform has): every row fits
//! its table's schema, no identifier, username or e-mail of the workload reaches a row, times
//! are whole hours, opt-outs and erasures stop a user's rows, mentions become pseudonyms, and
//! the job's column batches hold exactly these rows.

use std::collections::HashSet;

use chrono::{Timelike, Utc};
use philo_events::Envelope;
use philo_events::action::ProfileUpdated;
use philo_lake::anonymize::{Anonymizer, Row, TABLES, Value, schema};
use philo_lake::columnar::{self, FactBatch};
use philo_lake::pseudonym::{Domain, Pseudonymizer};
use philo_streams::workload::{Workload, WorkloadConfig};
use uuid::Uuid;

const KEY: &[u8] = b"the lake's pseudonym key, thirty-two bytes or more";

fn anonymizer() -> Anonymizer {
    Anonymizer::new(Pseudonymizer::new("k1", KEY).unwrap())
}

fn strings(row: &Row) -> Vec<&str> {
    row.values
        .iter()
        .flat_map(|v| match v {
            Value::Str(s) => vec![s.as_str()],
            Value::Strs(list) => list.iter().map(String::as_str).collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn a_workload_becomes_schema_true_rows_without_identifiers() {
    let mut workload = Workload::new(WorkloadConfig::small(7));
    let envelopes: Vec<Envelope> = workload.by_ref().take(8_000).collect();
    let usernames: Vec<String> = workload.usernames().to_vec();
    let mut anon = anonymizer();
    let mut rows = Vec::new();
    let mut raw_ids: HashSet<String> = HashSet::new();
    for env in &envelopes {
        raw_ids.insert(env.id.to_string());
        raw_ids.insert(env.actor_id.to_string());
        raw_ids.insert(env.id.simple().to_string());
        raw_ids.insert(env.actor_id.simple().to_string());
        rows.extend(anon.anonymize(env));
    }
    let tables: HashSet<&str> = rows.iter().map(|r| r.table).collect();
    for t in [
        "posts",
        "comments",
        "reactions",
        "follows",
        "donations",
        "events",
        "job_offers",
    ] {
        assert!(tables.contains(t), "the workload produced no {t} rows");
    }
    for row in &rows {
        let schema = schema(row.table).expect("known table");
        assert_eq!(row.values.len(), schema.columns.len(), "{}", row.table);
        for ((name, ty, nullable), value) in schema.columns.iter().zip(&row.values) {
            assert!(
                value.fits(*ty, *nullable),
                "{}.{name}: {value:?} is not a {ty:?}",
                row.table
            );
            if let Value::Hour(t) = value {
                assert_eq!((t.minute(), t.second(), t.nanosecond()), (0, 0, 0));
            }
        }
        for s in strings(row) {
            // Every window of an id's length in every run of hex digits and dashes.
            for run in s.split(|c: char| !(c.is_ascii_hexdigit() || c == '-')) {
                for len in [32, 36] {
                    for start in 0..=run.len().saturating_sub(len) {
                        let window = run.get(start..start + len).unwrap_or_default();
                        assert!(
                            !raw_ids.contains(window),
                            "{}: raw id {window} in {s:?}",
                            row.table
                        );
                    }
                }
            }
            assert!(
                !s.contains("@example."),
                "{}: an e-mail in {s:?}",
                row.table
            );
        }
    }
    // Usernames of the workload never appear in text (mentions became pseudonyms).
    let texts: Vec<&str> = rows.iter().flat_map(strings).collect();
    let mut leaked = 0;
    for name in usernames.iter().filter(|n| n.len() >= 6) {
        let at = format!("@{name}");
        leaked += texts.iter().filter(|t| t.contains(&at)).count();
    }
    assert_eq!(leaked, 0, "@usernames left in the lake's text");
    for t in TABLES {
        for u in t.user_columns {
            assert!(t.columns.iter().any(|(c, _, _)| c == u), "{}.{u}", t.name);
        }
    }
}

fn env(actor: Uuid, action: impl Into<philo_events::Action>) -> Envelope {
    Envelope::new(actor, action.into(), Utc::now())
}

fn post(title: &str) -> philo_events::action::PostCreated {
    serde_json::from_value(serde_json::json!({"title": title, "body": "b", "tags": []})).unwrap()
}

#[test]
fn opt_outs_stop_fact_rows_and_are_recorded_and_erasure_stops_everything() {
    let mut anon = anonymizer();
    let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(anon.anonymize(&env(ann, post("before"))).len(), 1);
    let opt = |out| ProfileUpdated {
        display_name: None,
        description: None,
        sale_opt_out: Some(out),
    };
    let rows = anon.anonymize(&env(ann, opt(true)));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].table, "opt_outs");
    assert_eq!(rows[0].get("opted_out"), Some(&Value::Bool(true)));
    assert!(anon.anonymize(&env(ann, post("while out"))).is_empty());
    assert_eq!(
        anon.anonymize(&env(bob, post("bob's"))).len(),
        1,
        "others unaffected"
    );
    anon.anonymize(&env(ann, opt(false)));
    assert_eq!(anon.anonymize(&env(ann, post("back in"))).len(), 1);

    let erased: philo_events::Action =
        serde_json::from_value(serde_json::json!({"type": "account.erased"})).unwrap();
    assert!(anon.anonymize(&env(bob, erased)).is_empty());
    assert!(anon.anonymize(&env(bob, post("after erasure"))).is_empty());
    assert!(anon.anonymize(&env(bob, opt(true))).is_empty());
}

#[test]
fn mentions_become_the_mentioned_users_pseudonym() {
    let pseudo = Pseudonymizer::new("k1", KEY).unwrap();
    let mut anon = Anonymizer::new(pseudo.clone());
    let ann = Uuid::now_v7();
    let registered: philo_events::Action = serde_json::from_value(
        serde_json::json!({"type": "user.registered", "username": "Ann_Lee", "role": "user"}),
    )
    .unwrap();
    anon.anonymize(&env(ann, registered));
    let rows = anon.anonymize(&env(
        Uuid::now_v7(),
        post("thanks @ann_lee and @nobody_here"),
    ));
    let Some(Value::Str(title)) = rows[0].get("title") else {
        panic!("{rows:?}")
    };
    let expected = format!("@{}", pseudo.pseudonym(Domain::User, ann));
    assert!(title.contains(&expected), "{title}");
    assert!(!title.to_lowercase().contains("ann_lee"), "{title}");
    assert!(!title.contains("nobody_here"), "{title}");
}

/// The job writes rows straight into column builders ([`FactBatch`]); the rows it gets must be
/// exactly what [`Anonymizer::anonymize`] says, value for value, with a user erased and one
/// opted out along the way, and tables marked as already holding an action get none of it.
#[test]
fn the_jobs_column_batches_hold_exactly_the_anonymizers_rows() {
    let mut workload = Workload::new(WorkloadConfig::small(11));
    let mut envelopes: Vec<Envelope> = workload.by_ref().take(6_000).collect();
    // Someone who acted a lot is erased halfway, someone else opts out.
    let busiest = |from: &[Envelope]| {
        let mut counts = std::collections::HashMap::new();
        for e in from {
            *counts.entry(e.actor_id).or_insert(0) += 1;
        }
        let mut by_count: Vec<(Uuid, i32)> = counts.into_iter().collect();
        by_count.sort_by_key(|(u, n)| (-n, *u));
        (by_count[0].0, by_count[1].0)
    };
    let (erased, opted) = busiest(&envelopes);
    let erasure: philo_events::Action =
        serde_json::from_value(serde_json::json!({"type": "account.erased"})).unwrap();
    let opt_out = ProfileUpdated {
        display_name: None,
        description: None,
        sale_opt_out: Some(true),
    };
    envelopes.insert(3_000, env(erased, erasure));
    envelopes.insert(3_500, env(opted, opt_out));

    let mut by_rows = anonymizer();
    let mut by_columns = anonymizer();
    let mut rows: Vec<Vec<Row>> = vec![Vec::new(); TABLES.len()];
    let mut facts = FactBatch::default();
    let reactions = TABLES.iter().position(|t| t.name == "reactions").unwrap();
    let mut skip = vec![false; TABLES.len()];
    skip[reactions] = true;
    let mut skipped_reactions = 0;
    for (i, e) in envelopes.iter().enumerate() {
        // Every tenth action is taken as already in the reactions table.
        let skipping = i % 10 == 0;
        for row in by_rows.anonymize(e) {
            let t = TABLES.iter().position(|t| t.name == row.table).unwrap();
            if skipping && t == reactions {
                skipped_reactions += 1;
            } else {
                rows[t].push(row);
            }
        }
        facts.start_action(skipping.then_some(skip.as_slice()));
        by_columns.anonymize_into(e, &mut facts);
    }
    assert!(skipped_reactions > 0, "no reaction was skipped");
    let (batches, _) = facts.finish().unwrap();
    let batch_of = |table, rows: Vec<&Row>| {
        (!rows.is_empty()).then(|| {
            columnar::record_batch(table, &columnar::arrow_schema(table), rows.into_iter()).unwrap()
        })
    };
    let (mut compared, mut named_erased) = (0, 0);
    for (t, table) in TABLES.iter().enumerate() {
        assert_eq!(
            batches[t],
            batch_of(table, rows[t].iter().collect()),
            "{}",
            table.name
        );
        compared += rows[t].len();
        // What the job keeps of a batch once a user in it is erased: no row naming them.
        let kept: Vec<&Row> = rows[t]
            .iter()
            .filter(|r| !by_rows.names_erased(r))
            .collect();
        named_erased += rows[t].len() - kept.len();
        let filtered = batches[t]
            .clone()
            .map(|b| columnar::without_users(table, b, by_columns.erased_pseudonyms()).unwrap());
        let filtered = filtered.filter(|b| b.num_rows() > 0);
        assert_eq!(
            filtered,
            batch_of(table, kept),
            "{} without the erased",
            table.name
        );
    }
    assert!(compared > 4_000, "only {compared} rows compared");
    assert!(
        named_erased > 0,
        "the erased user had no rows before the erasure"
    );
}
