//! The anonymizer job over a real embedded log landing real Delta tables on local disk: every
//! action exactly once (across restarts, partial progress and racing writers), erasure that
//! removes rows and files, and the `users` dimension.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::Int64Type;
use philo_events::log::{Durability, EmbeddedLog, EmbeddedLogConfig, Log, Record};
use philo_events::{Envelope, KIND_HEADER};
use philo_lake::anonymize::{Anonymizer, TABLES, USERS};
use philo_lake::job::{Lake, LakeJob, LakeJobConfig};
use philo_lake::pseudonym::Pseudonymizer;
use philo_lake::storage::Location;
use philo_streams::workload::{Workload, WorkloadConfig};
use uuid::Uuid;

const KEY: &[u8] = b"the lake's pseudonym key, thirty-two bytes or more";
const TOPIC: &str = "actions";
const PARTITIONS: u32 = 4;

fn anonymizer() -> Anonymizer {
    Anonymizer::new(Pseudonymizer::new("k1", KEY).unwrap())
}

fn config(batch: usize) -> LakeJobConfig {
    LakeJobConfig {
        batch_max_actions: batch,
        batch_max_wait: Duration::from_millis(0),
        optimize_every: None,
        vacuum_every: None,
        ..Default::default()
    }
}

async fn log_in(dir: &std::path::Path) -> Arc<dyn Log> {
    let mut c = EmbeddedLogConfig::new(dir.join("log"));
    c.durability = Durability::Buffered;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(c).unwrap());
    log.create_topic(TOPIC, PARTITIONS).await.unwrap();
    log
}

/// Appends `envelopes`, every other one with the kind header ingest writes: a restarted job
/// catches up by that header where there is one and by decoding where there is not, and the
/// restart tests below need both ways to agree.
async fn append(log: &Arc<dyn Log>, envelopes: &[Envelope]) {
    for chunk in envelopes.chunks(1_000) {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let record = Record::new(
                    e.key().to_vec(),
                    e.to_json(),
                    e.received_at.timestamp_millis(),
                );
                if i % 2 == 0 {
                    record.with_header(KIND_HEADER, e.action.kind().as_str())
                } else {
                    record
                }
            })
            .collect();
        log.append(TOPIC, records).await.unwrap();
    }
}

/// What Philo should have written: every envelope through a fresh anonymizer in per-partition
/// log order, with every erasure in the log known up front (as a job starting cold knows it).
async fn expected(log: &Arc<dyn Log>) -> BTreeMap<&'static str, u64> {
    let mut anon = anonymizer();
    let mut envs = Vec::new();
    for p in 0..PARTITIONS {
        let high = log.watermarks(TOPIC, p).await.unwrap().high;
        let records = log.read(TOPIC, p, 0, high as usize + 1).await.unwrap();
        envs.extend(
            records
                .iter()
                .map(|r| Envelope::from_json(&r.value).unwrap()),
        );
    }
    for e in &envs {
        if matches!(e.action, philo_events::Action::AccountErased(_)) {
            anon.mark_erased(e.actor_id);
        }
    }
    let mut counts: BTreeMap<&'static str, u64> = TABLES.iter().map(|t| (t.name, 0)).collect();
    for e in &envs {
        for row in anon.anonymize(e) {
            if !anon.names_erased(&row) {
                *counts.get_mut(row.table).unwrap() += 1;
            }
        }
    }
    counts
}

async fn counts(lake: &mut Lake) -> BTreeMap<&'static str, u64> {
    let ctx = lake.session().await.unwrap();
    let mut out = BTreeMap::new();
    for t in TABLES {
        let batches = ctx
            .sql(&format!("SELECT count(*) FROM {}", t.name))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        out.insert(
            t.name,
            batches[0].column(0).as_primitive::<Int64Type>().value(0) as u64,
        );
    }
    out
}

async fn run_to_end(job: &mut LakeJob) -> usize {
    let mut actions = 0;
    loop {
        let r = job.step().await.unwrap();
        if r.actions == 0 {
            return actions;
        }
        actions += r.actions;
    }
}

fn workload(seed: u64, n: usize) -> (Vec<Envelope>, Workload) {
    let mut w = Workload::new(WorkloadConfig::small(seed));
    let envs: Vec<Envelope> = w.by_ref().take(n).collect();
    (envs, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_lands_once_across_restarts_and_partial_progress() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path()).await;
    let location = Location::local(&dir.path().join("lake")).unwrap();
    let (envs, _) = workload(11, 6_000);
    append(&log, &envs[..4_000]).await;

    // Small batches, stopped part-way: tables end at different positions.
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(700))
        .await
        .unwrap();
    for _ in 0..3 {
        job.step().await.unwrap();
    }
    drop(job);

    // A restarted job finishes the first part, then more arrives.
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(1_500))
        .await
        .unwrap();
    run_to_end(&mut job).await;
    append(&log, &envs[4_000..]).await;
    run_to_end(&mut job).await;
    drop(job);

    // A third start reads nothing new.
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(50_000))
        .await
        .unwrap();
    let again = job.step().await.unwrap();
    assert_eq!(again.rows, 0, "a restart rewrote rows");

    let want = expected(&log).await;
    let got = counts(job.lake_mut()).await;
    assert_eq!(got, want);
    assert!(want.values().sum::<u64>() > 3_000, "{want:?}");

    // Every commit records the policy version and key id; progress is recorded per partition.
    let posts = job.lake().table("posts").unwrap().delta().clone();
    let history: Vec<_> = futures::StreamExt::collect(posts.history(Some(3))).await;
    for commit in history.into_iter().map(Result::unwrap) {
        if commit.operation.as_deref() == Some("WRITE") {
            assert_eq!(
                commit.info.get("philo.policy_version"),
                Some(&serde_json::json!(1))
            );
            assert_eq!(
                commit.info.get("philo.key_id"),
                Some(&serde_json::json!("k1"))
            );
        }
    }
    let positions = job
        .lake()
        .table("posts")
        .unwrap()
        .positions(PARTITIONS)
        .await
        .unwrap();
    let mut highs = Vec::new();
    for p in 0..PARTITIONS {
        highs.push(log.watermarks(TOPIC, p).await.unwrap().high);
    }
    assert!(positions.iter().zip(&highs).all(|(got, high)| got <= high));
    assert!(positions.iter().any(|p| *p > 0));
}

/// `LakeJob::run`'s path: each batch commits while the next is read. Small batches, an
/// erasure mid-stream and a restart with a batch in flight still land every action once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_steps_land_every_action_once_with_an_erasure_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path()).await;
    let location = Location::local(&dir.path().join("lake")).unwrap();
    let (envs, _) = workload(17, 6_000);
    append(&log, &envs[..3_000]).await;
    let victim = envs[2_000].actor_id;
    let erased = Envelope::new(
        victim,
        philo_events::Action::from_json(br#"{"type":"account.erased"}"#).unwrap(),
        envs[2_999].received_at,
    );
    append(&log, std::slice::from_ref(&erased)).await;
    append(&log, &envs[3_000..4_500]).await;

    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(500))
        .await
        .unwrap();
    // Stop with a batch in flight: its commits finish or not, the restart sorts it out.
    let mut batches = 0;
    while batches < 4 {
        batches += job.step_pipelined().await.unwrap().batches;
    }
    assert!(job.committing(), "a batch is in flight");
    drop(job);
    // The dropped batch's commit tasks stop at their next await.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(500))
        .await
        .unwrap();
    append(&log, &envs[4_500..]).await;
    let mut erasures = 0;
    loop {
        let r = job.step_pipelined().await.unwrap();
        erasures += r.erasures.len();
        if r.actions == 0 && !job.committing() {
            break;
        }
    }
    assert!(erasures <= 1, "the erasure is carried out once per start");
    assert!(job.lake().receipt(erased.id).await.unwrap().is_some());
    let want = expected(&log).await;
    assert_eq!(counts(job.lake_mut()).await, want);
    assert!(want.values().sum::<u64>() > 3_000, "{want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_on_one_lake_land_each_action_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path()).await;
    let location = Location::local(&dir.path().join("lake")).unwrap();
    let (envs, _) = workload(12, 5_000);
    append(&log, &envs).await;
    let (l1, l2) = (log.clone(), log.clone());
    let (loc1, loc2) = (location.clone(), location.clone());
    let writer = |log: Arc<dyn Log>, loc: Location| async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let job = LakeJob::start(log, &loc, anonymizer(), config(400))
            .await
            .unwrap();
        let token = stop.clone();
        let run = tokio::spawn(job.run(token));
        tokio::time::sleep(Duration::from_secs(6)).await;
        stop.cancel();
        run.await.unwrap().unwrap();
    };
    tokio::join!(writer(l1, loc1), writer(l2, loc2));
    let mut lake = Lake::open(&location, &Default::default()).await.unwrap();
    assert_eq!(counts(&mut lake).await, expected(&log).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_deletes_and_vacuums_every_row_and_a_replay_does_not_bring_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path()).await;
    let location = Location::local(&dir.path().join("lake")).unwrap();
    let (envs, w) = workload(13, 5_000);
    append(&log, &envs).await;
    // Uncompressed pages, so a byte scan sees every value.
    let mut plain = config(2_000);
    plain.settings.compression = deltalake::parquet::basic::Compression::UNCOMPRESSED;
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), plain.clone())
        .await
        .unwrap();
    run_to_end(&mut job).await;
    job.write_users().await.unwrap();

    // The most active ordinary user no one mentions (mentions of a user in other users' text
    // keep the pseudonym, which links to nothing once the user's rows are gone).
    let mut celebrities: HashSet<Uuid> = w.celebrities().iter().copied().collect();
    let texts: Vec<String> = envs
        .iter()
        .map(|e| String::from_utf8(e.to_json()).unwrap().to_lowercase())
        .collect();
    for (user, name) in w.users().iter().zip(w.usernames()) {
        let at = format!("@{}", name.to_lowercase());
        if texts.iter().any(|t| t.contains(&at)) {
            celebrities.insert(*user);
        }
    }
    let mut by_actor: BTreeMap<Uuid, usize> = BTreeMap::new();
    for e in &envs {
        *by_actor.entry(e.actor_id).or_default() += 1;
    }
    let (victim, _) = by_actor
        .iter()
        .filter(|(u, _)| !celebrities.contains(u))
        .max_by_key(|(_, n)| **n)
        .unwrap();
    let pseudonym = anonymizer().user_pseudonym(*victim);
    let mentions = |lake_dir: &std::path::Path| -> usize {
        let mut hits = 0;
        for entry in walk(lake_dir) {
            let bytes = std::fs::read(&entry).unwrap();
            if bytes.windows(32).any(|w| w == pseudonym.as_bytes()) {
                hits += 1;
            }
        }
        hits
    };
    let lake_dir = dir.path().join("lake");
    assert!(mentions(&lake_dir) > 0, "the victim has no rows to erase");

    let erased = Envelope::new(
        *victim,
        philo_events::Action::from_json(br#"{"type":"account.erased"}"#).unwrap(),
        envs.last().unwrap().received_at,
    );
    append(&log, std::slice::from_ref(&erased)).await;
    let report = job.step().await.unwrap();
    assert_eq!(report.erasures.len(), 1);
    let receipt = &report.erasures[0];
    assert_eq!(receipt.action_id, erased.id);
    let removed: u64 = receipt.tables.iter().map(|t| t.rows_removed).sum();
    assert!(removed > 0, "{receipt:?}");
    assert!(
        receipt
            .tables
            .iter()
            .any(|t| t.table == "users" && t.rows_removed == 1)
    );
    for t in &receipt.tables {
        assert_eq!(t.version.is_some(), t.rows_removed > 0, "{t:?}");
        if t.rows_removed > 0 {
            assert!(t.files_deleted > 0, "{t:?}");
        }
    }
    // The stored receipt is the one reported.
    assert_eq!(
        job.lake().receipt(erased.id).await.unwrap().as_ref(),
        Some(receipt)
    );

    // No file under the lake holds the pseudonym any more (data, logs, checkpoints)…
    assert_eq!(mentions(&lake_dir), 0);
    // …and the users dimension is rewritten without them.
    job.write_users().await.unwrap();
    assert_eq!(mentions(&lake_dir), 0);
    let want = expected(&log).await;
    assert_eq!(counts(job.lake_mut()).await, want);

    // A replay into a fresh lake never writes the victim's rows.
    drop(job);
    let fresh = Location::local(&dir.path().join("replayed")).unwrap();
    let mut replay = LakeJob::start(log.clone(), &fresh, anonymizer(), plain)
        .await
        .unwrap();
    run_to_end(&mut replay).await;
    replay.write_users().await.unwrap();
    assert_eq!(mentions(&dir.path().join("replayed")), 0);
    assert_eq!(counts(replay.lake_mut()).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_dimension_is_k_anonymous_and_excludes_opted_out_users() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path()).await;
    let location = Location::local(&dir.path().join("lake")).unwrap();
    let (mut envs, w) = workload(14, 3_000);
    let opted = w.users()[7];
    envs.push(Envelope::new(
        opted,
        philo_events::Action::from_json(br#"{"type":"profile.updated","sale_opt_out":true}"#)
            .unwrap(),
        envs.last().unwrap().received_at,
    ));
    append(&log, &envs).await;
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(50_000))
        .await
        .unwrap();
    run_to_end(&mut job).await;
    job.write_users().await.unwrap();
    let ctx = job.lake_mut().session().await.unwrap();
    let smallest = ctx
        .sql(
            "SELECT min(n) FROM (SELECT count(*) AS n FROM users \
             GROUP BY signup_period, role, has_display_name, description, array_to_string(skills, ',')) c",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(smallest[0].column(0).as_primitive::<Int64Type>().value(0) >= 5);
    let pseudonym = anonymizer().user_pseudonym(opted);
    let found = ctx
        .sql(&format!(
            "SELECT count(*) FROM users WHERE \"user\" = '{pseudonym}'"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(found[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    let opt_outs = ctx
        .sql(&format!(
            "SELECT opted_out FROM opt_outs WHERE \"user\" = '{pseudonym}'"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(opt_outs[0].column(0).as_boolean().value(0));
    assert_eq!(USERS.user_columns, &["user"]);
    let rows = ctx
        .sql("SELECT count(*) FROM users")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(rows[0].column(0).as_primitive::<Int64Type>().value(0) > 400);
    assert!(!rows[0].column(0).is_null(0));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_land_once_and_daily_aggregates_match_the_facts() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path()).await;
    log.create_topic("actions.failed", 2).await.unwrap();
    let location = Location::local(&dir.path().join("lake")).unwrap();
    let (envs, _) = workload(15, 20_000);
    append(&log, &envs).await;
    // Failures as the stream jobs publish them, at least once: every third one twice.
    let failure = |e: &Envelope| {
        Record::new(
            e.key().to_vec(),
            serde_json::to_vec(&serde_json::json!({
                "action_id": e.id, "actor_id": e.actor_id, "kind": e.action.kind().as_str(),
                "reason": "unknown_target", "position": "0:0"}))
            .unwrap(),
            e.received_at.timestamp_millis(),
        )
        .with_header("philo-job", "social")
    };
    let failed: Vec<&Envelope> = envs.iter().skip(6_000).step_by(37).take(40).collect();
    let mut records: Vec<Record> = failed.iter().map(|e| failure(e)).collect();
    records.extend(failed.iter().step_by(3).map(|e| failure(e)));
    let (first, second) = records.split_at(30);
    log.append("actions.failed", first.to_vec()).await.unwrap();

    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(1_000))
        .await
        .unwrap();
    run_to_end(&mut job).await;
    drop(job);
    // The rest (with the duplicates) arrives while the job is down.
    log.append("actions.failed", second.to_vec()).await.unwrap();
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), config(1_000))
        .await
        .unwrap();
    run_to_end(&mut job).await;
    assert!(job.write_daily().await.unwrap() > 0);
    let ctx = job.lake_mut().session().await.unwrap();
    let one = |sql: String| {
        let ctx = ctx.clone();
        async move {
            let b = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            b[0].column(0).as_primitive::<Int64Type>().value(0)
        }
    };
    assert_eq!(one("SELECT count(*) FROM failed_actions".into()).await, 40);
    assert_eq!(
        one("SELECT count(DISTINCT action) FROM failed_actions WHERE reason = 'unknown_target' AND job = 'social'".into()).await,
        40
    );
    for t in ["posts", "comments", "follows", "reactions"] {
        let facts = one(format!("SELECT count(*) FROM {t}")).await;
        let daily = one(format!(
            "SELECT CAST(sum(actions) AS BIGINT) FROM daily_activity WHERE source = '{t}'"
        ))
        .await;
        assert_eq!(daily, facts, "{t}");
        assert!(facts > 0, "the workload has no {t}");
    }
    let donated = one("SELECT CAST(sum(amount_minor) AS BIGINT) FROM donations".into()).await;
    let daily = one("SELECT CAST(sum(amount_minor) AS BIGINT) FROM daily_donations".into()).await;
    assert_eq!(daily, donated);
    assert!(donated > 0);
}

static EVOLVING_V1: philo_lake::anonymize::TableSchema = philo_lake::anonymize::TableSchema {
    name: "evolving",
    columns: &[
        ("day", philo_lake::anonymize::ColType::Day, false),
        ("user", philo_lake::anonymize::ColType::Str, false),
    ],
    user_columns: &["user"],
};

static EVOLVING_V2: philo_lake::anonymize::TableSchema = philo_lake::anonymize::TableSchema {
    name: "evolving",
    columns: &[
        ("day", philo_lake::anonymize::ColType::Day, false),
        ("user", philo_lake::anonymize::ColType::Str, false),
        ("score", philo_lake::anonymize::ColType::I64, true),
    ],
    user_columns: &["user"],
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_column_is_added_and_older_rows_read_as_null() {
    use philo_lake::anonymize::{Row, Value};
    use philo_lake::table::LakeTable;
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let day = Value::Day(chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
    let mut v1 = LakeTable::open(&location, &EVOLVING_V1, &Default::default())
        .await
        .unwrap();
    let old = Row {
        table: "evolving",
        values: vec![day.clone(), Value::Str("a".into())],
    };
    v1.append(&[old.clone(), old], &Default::default(), "k1")
        .await
        .unwrap();
    // The next version of the code knows one more column.
    let mut v2 = LakeTable::open(&location, &EVOLVING_V2, &Default::default())
        .await
        .unwrap();
    let new = Row {
        table: "evolving",
        values: vec![day, Value::Str("b".into()), Value::I64(7)],
    };
    v2.append(&[new], &Default::default(), "k1").await.unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    v2.delta().update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("evolving", v2.delta().table_provider().await.unwrap())
        .unwrap();
    let b = ctx
        .sql("SELECT count(*), count(score), sum(score) FROM evolving")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = |i: usize| b[0].column(i).as_primitive::<Int64Type>().value(0);
    assert_eq!((col(0), col(1), col(2)), (3, 1, 7));
    // The older code refuses a table that has a column it does not know.
    assert!(
        LakeTable::open(&location, &EVOLVING_V1, &Default::default())
            .await
            .is_err()
    );
}

/// A restarted job still knows what the log taught it before its resume point — a username
/// for mentions, an opt-out — whether it learns it from a record's kind header or by decoding
/// the record (the helper writes every other record without the header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_job_remembers_what_the_log_taught_before_its_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path()).await;
    let location = Location::local(&dir.path().join("lake")).unwrap();
    let now = chrono::Utc::now();
    let env = |actor: Uuid, json: String| {
        Envelope::new(
            actor,
            philo_events::Action::from_json(json.as_bytes()).unwrap(),
            now,
        )
    };
    let post = |actor: Uuid, body: &str| {
        env(
            actor,
            serde_json::json!({"type": "post.created", "title": "t", "body": body, "tags": []})
                .to_string(),
        )
    };
    // Twice over, so each fact is taught once with the header and once without.
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut mentioned = Vec::new();
    for i in 0..2 {
        let (opted, named, writer) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        if i == 1 {
            // Shifts the second round by one record: what had the header now has none.
            before.push(env(
                Uuid::new_v4(),
                r#"{"type":"user.registered","username":"filler","role":"user"}"#.to_owned(),
            ));
        }
        for (user, name) in [(opted, "opted"), (named, "named"), (writer, "writer")] {
            before.push(env(
                user,
                format!(r#"{{"type":"user.registered","username":"{name}_{i}","role":"user"}}"#),
            ));
        }
        before.push(env(
            opted,
            r#"{"type":"profile.updated","sale_opt_out":true}"#.to_owned(),
        ));
        after.push(post(opted, "an opted-out user's post"));
        after.push(post(writer, &format!("ask @named_{i} about it")));
        mentioned.push(named);
    }
    append(&log, &before).await;
    // Every table records its progress at every batch, rows or not, so the restart resumes
    // past everything above and learns it only by catching up.
    let every_batch = LakeJobConfig {
        progress_every: 1,
        ..config(1_000)
    };
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), every_batch.clone())
        .await
        .unwrap();
    run_to_end(&mut job).await;
    drop(job);

    let mut highs = Vec::new();
    for p in 0..PARTITIONS {
        highs.push(log.watermarks(TOPIC, p).await.unwrap().high);
    }
    append(&log, &after).await;
    let mut job = LakeJob::start(log.clone(), &location, anonymizer(), every_batch)
        .await
        .unwrap();
    assert_eq!(job.positions(), highs, "the restart resumes past `before`");
    run_to_end(&mut job).await;
    let ctx = job.lake_mut().session().await.unwrap();
    let batches = ctx
        .sql("SELECT body FROM posts ORDER BY body")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let bodies: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let col = deltalake::arrow::compute::cast(
                b.column(0),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let col = col.as_string::<i32>();
            (0..col.len())
                .map(|i| col.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut want: Vec<String> = mentioned
        .iter()
        .map(|named| {
            let pseudonym = anonymizer().user_pseudonym(*named);
            format!("ask @{pseudonym} about it")
        })
        .collect();
    want.sort();
    assert_eq!(
        bodies, want,
        "opted-out posts left out, mentions pseudonymised"
    );
}
