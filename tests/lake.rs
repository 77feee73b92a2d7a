//! The lake end to end: `philo up` lands what users do as Delta tables (local disk and a real S3
//! API), outside readers (Python `deltalake`, `polars`, DuckDB's Delta extension) see exactly
//! what Philo wrote, 1,000 planted PII strings are nowhere under the lake, an erased user's rows
//! are gone for every reader, and kill -9 during commits and during compaction loses or doubles
//! nothing.

#[allow(dead_code)] // each test binary uses its own subset of the helpers
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use philo_lake::pseudonym::{Domain, Pseudonymizer};
use serde_json::{Value, json};

const KEY: &str = "lake test pseudonym key: thirty-two bytes or more";

fn lake_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PHILO__LAKE__PSEUDONYM_KEY", KEY),
        ("PHILO__LAKE__COMPRESSION", "none"),
        ("PHILO__LAKE__BATCH_MAX_WAIT_MS", "200"),
        ("PHILO__INGEST__RATE_LIMIT_PER_SECOND", "1000000"),
        ("PHILO__INGEST__RATE_LIMIT_BURST", "1000000"),
        ("PHILO__INGEST__AUTH_ATTEMPTS_PER_MINUTE", "100000"),
    ]
}

fn pseudo() -> Pseudonymizer {
    Pseudonymizer::new("k1", KEY.as_bytes()).unwrap()
}

fn item(id: &str) -> String {
    pseudo().pseudonym(Domain::Item, id.parse().unwrap())
}

fn user(id: &str) -> String {
    pseudo().pseudonym(Domain::User, id.parse().unwrap())
}

/// The Python interpreter of the test venv (scripts/test.sh installs the readers there).
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("PHILO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/philo/venv/bin/python")
        });
    let ok = path.exists()
        && Command::new(&path)
            .args(["-c", "import deltalake, polars, duckdb_extension_delta"])
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return Some(path);
    }
    let skip = std::env::var("PHILO_SKIP_PYTHON").is_ok_and(|v| v == "1")
        && std::env::var_os("CI").is_none();
    assert!(
        skip,
        "the lake readers are not installed in {} (run scripts/test.sh, or set PHILO_SKIP_PYTHON=1 outside CI)",
        path.display()
    );
    None
}

/// Runs scripts/check_lake.py on `expect`; returns its report (panics on a mismatch).
fn check_lake(python: &Path, dir: &Path, expect: &Value) -> Value {
    let file = dir.join(format!(
        "expect-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&file, serde_json::to_vec(expect).unwrap()).unwrap();
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check_lake.py"
        ))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_lake.py failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap()
}

/// `philo lake catch-up` on `data`: lands whatever the log holds; returns its summary.
fn catch_up(data: &Path, env: &[(&str, &str)]) -> Value {
    let out = common::philo_with(env)
        .args(["lake", "catch-up", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "catch-up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A 16-digit Visa-like number passing Luhn, grouped 4-4-4-4.
fn card(i: usize) -> String {
    let body: Vec<u32> = format!("4000{i:011}")
        .chars()
        .map(|c| c.to_digit(10).unwrap())
        .collect();
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(k, d)| {
            if k % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    let digits: String = body
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .chain(std::iter::once(char::from_digit(check, 10).unwrap()))
        .collect();
    format!(
        "{} {} {} {}",
        &digits[0..4],
        &digits[4..8],
        &digits[8..12],
        &digits[12..16]
    )
}

/// A German IBAN with valid mod-97 check digits.
fn iban(i: usize) -> String {
    let bban = format!("37040044{i:010}");
    // Move "DE00" to the end, letters as numbers (D=13, E=14).
    let numeric = format!("{bban}131400");
    let rem = numeric
        .chars()
        .fold(0u64, |r, c| (r * 10 + c.to_digit(10).unwrap() as u64) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

async fn post_json(client: &reqwest::Client, base: &str, token: &str, v: Value) -> String {
    common::act(client, base, token, v).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn admin_token(client: &reqwest::Client, base: &str, data: &Path) -> String {
    let out = common::create_admin(data, &[], "lakeadmin", "an admin passphrase");
    assert!(out.status.success());
    let r: Value = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"login": "lakeadmin", "password": "an admin passphrase"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_holds_what_users_did_scrubbed_erased_and_outside_readers_agree() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("data");
    let env = lake_env();
    let (child, base) = common::start(&data, &env);
    let server = common::Guard::new(child);
    let client = reqwest::Client::new();

    // 100 users whose usernames are mentioned; an author; a user who will be erased.
    let mut mentioned = Vec::new();
    for i in 0..100 {
        let name = format!("canary_user{i:03}");
        let (id, _) = common::register_user(&client, &base, &name).await;
        mentioned.push((name, id));
    }
    let (author, token) = common::register_user(&client, &base, "lake_author").await;
    let (leaver, leaver_token) = common::register_user(&client, &base, "lake_leaver").await;

    // 1,000 distinct PII strings: 250 e-mails, 250 phones, 200 cards, 200 IBANs, 100 usernames
    // (mentioned two or three times each), in every free-text field the lake keeps.
    let mut canaries: Vec<String> = Vec::new();
    let mut posts: Vec<(String, String, String)> = Vec::new(); // (id, title, scrubbed body)
    for i in 0..250 {
        let email = format!("canary{i}.person@mailbox{i}.example.net");
        let phone = format!("+44 20 7946 {i:04}");
        let (name, mentioned_id) = &mentioned[i % 100];
        let (pay, pay_token) = if i < 200 {
            (card(i), "[card]")
        } else {
            (iban(i), "[iban]")
        };
        let title = format!("Post {i} lake-canary-control");
        let body = format!("write {email} or call {phone}, pay {pay}, ask @{name}");
        let scrubbed = format!(
            "write [email] or call [phone], pay {pay_token}, ask @{}",
            user(mentioned_id)
        );
        canaries.extend([email, phone, pay, name.clone()]);
        let id = post_json(
            &client,
            &base,
            &token,
            json!({"type": "post.created", "title": title, "body": body, "tags": ["lake", format!("t{}", i % 3)]}),
        )
        .await;
        posts.push((id, title, scrubbed));
    }
    for i in 0..150 {
        let iban = iban(1_000 + i);
        canaries.push(iban.clone());
        let target = &posts[i % posts.len()].0;
        let kind = i % 3;
        let v = match kind {
            0 => {
                json!({"type": "comment.created", "target_id": target, "body": format!("IBAN {iban} please")})
            }
            1 => {
                json!({"type": "approach.created", "post_id": target, "title": "An approach", "body": format!("send to {iban}")})
            }
            _ => {
                json!({"type": "resume.updated", "text": format!("Paid to {iban}"), "skills": ["rust"]})
            }
        };
        common::act(&client, &base, &token, v).await;
    }
    canaries.sort();
    canaries.dedup();
    assert_eq!(canaries.len(), 1_000, "the canaries are distinct");

    // The user who leaves: posts, a follow, a comment — all of it must go.
    for i in 0..3 {
        common::act(
            &client,
            &base,
            &leaver_token,
            json!({"type": "post.created", "title": format!("leaving {i}"), "body": "b", "tags": []}),
        )
        .await;
    }
    common::act(
        &client,
        &base,
        &leaver_token,
        json!({"type": "follow.created", "user_id": author}),
    )
    .await;
    common::act(
        &client,
        &base,
        &token,
        json!({"type": "follow.created", "user_id": leaver}),
    )
    .await;
    common::act(
        &client,
        &base,
        &leaver_token,
        json!({"type": "comment.created", "target_id": posts[0].0, "body": "bye"}),
    )
    .await;

    // Erasure through the admin API; the receipt appears once the lake has deleted and vacuumed.
    let admin = admin_token(&client, &base, &data).await;
    let erase = |id: String, token: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .delete(format!("{base}/v1/admin/users/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let bad = erase("not-a-uuid".into(), admin.clone()).await;
    assert_eq!(bad.status(), 400);
    let not_admin = erase(leaver.clone(), token.clone()).await;
    assert_eq!(not_admin.status(), 403);
    let unknown = erase(uuid::Uuid::now_v7().to_string(), admin.clone()).await;
    assert_eq!(unknown.status(), 404);
    let accepted = erase(leaver.clone(), admin.clone()).await;
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    let receipt_url = format!("{base}{}", accepted["receipt"].as_str().unwrap());
    let started = Instant::now();
    let receipt: Value = loop {
        let r = client
            .get(&receipt_url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 404, "waiting for the receipt");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no erasure receipt"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let removed: BTreeMap<String, u64> = receipt["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                t["rows_removed"].as_u64().unwrap(),
            )
        })
        .collect();
    // Whatever the lake had landed of the leaver when the erasure came is removed; nothing of
    // theirs is written afterwards (checked below by every reader).
    assert!(removed.values().sum::<u64>() <= 7, "{receipt}");
    // The erased account cannot log in and a second erasure says so.
    let again: Value = erase(leaver.clone(), admin.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "already_erased");
    server.terminate();
    let summary = catch_up(&data, &env);
    assert_eq!(
        summary["rows"], 0,
        "the graceful stop had landed everything: {summary}"
    );

    // Compaction and vacuum keep every row.
    for args in [vec!["optimize"], vec!["vacuum", "--retention-hours", "0"]] {
        let out = common::philo_with(&env)
            .arg("lake")
            .args(&args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let lake = data.join("lake");
    let samples: Vec<Value> = posts
        .iter()
        .step_by(25)
        .map(|(id, title, body)| {
            json!({"post": item(id), "author": user(&author), "title": title, "body": body,
                   "event": "created", "key_id": "k1", "policy_version": 1})
        })
        .collect();
    let expect = json!({
        "lake": lake.to_string_lossy(),
        "readers": ["deltalake", "polars", "duckdb"],
        "tables": {
            "posts": {"rows": 250, "key": "post", "samples": samples},
            "comments": {"rows": 50, "key": "author"},
            "approaches": {"rows": 50, "key": "author"},
            "resumes": {"rows": 50, "key": "user"},
            "follows": {"rows": 0, "key": "follower"},
            "users": {"rows": 101, "key": "user"},
            "failed_actions": {"rows": null},
            "daily_activity": {"rows": null},
            "daily_donations": {"rows": 0},
        },
        "absent": {"values": [user(&leaver)]},
    });
    let report = check_lake(&python, dir.path(), &expect);
    assert_eq!(report["counts"]["duckdb"]["posts"], 250, "{report}");
    // posts, comments, approaches and resumes, on one day or two (around midnight).
    assert!(
        report["counts"]["duckdb"]["daily_activity"].as_u64() >= Some(4),
        "{report}"
    );

    // Nothing planted survives anywhere under the lake; the control string does.
    let mut control = 0;
    for f in files(&lake) {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for c in &canaries {
            assert!(!text.contains(c.as_str()), "{c} found in {}", f.display());
        }
        assert!(
            !text.contains(&user(&leaver)),
            "erased user in {}",
            f.display()
        );
        if text.contains("lake-canary-control") {
            control += 1;
        }
    }
    assert!(control > 0, "the byte scan would not see plain strings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_on_a_real_s3_api_commits_with_conditional_puts_and_reads_back() {
    let Some(python) = python() else { return };
    let Some(moto) = common::moto_binary() else {
        return;
    };
    let (_moto, endpoint) = common::start_moto(&moto, "philo-lake").await;
    let client = reqwest::Client::new();

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("data");
    let mut env = lake_env();
    let endpoint_static: &'static str = Box::leak(endpoint.clone().into_boxed_str());
    env.extend([
        ("PHILO__LAKE__URL", "s3://philo-lake/lake"),
        ("PHILO__LAKE__STORAGE__ENDPOINT", endpoint_static),
        ("PHILO__LAKE__STORAGE__ALLOW_HTTP", "true"),
        ("PHILO__LAKE__STORAGE__REGION", "us-east-1"),
        ("PHILO__LAKE__STORAGE__ACCESS_KEY_ID", "test"),
        ("PHILO__LAKE__STORAGE__SECRET_ACCESS_KEY", "test"),
    ]);
    let (child, base) = common::start(&data, &env);
    let server = common::Guard::new(child);
    let (author, token) = common::register_user(&client, &base, "s3_author").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            post_json(
                &client,
                &base,
                &token,
                json!({"type": "post.created", "title": format!("on s3 {i}"), "body": "b", "tags": []}),
            )
            .await,
        );
    }
    server.terminate();
    catch_up(&data, &env);
    // Nothing of the lake on local disk: it is all in the bucket.
    assert!(!data.join("lake").join("posts").exists());
    let expect = json!({
        "lake": "s3://philo-lake/lake",
        "storage_options": {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true",
                            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
                            "AWS_SECRET_ACCESS_KEY": "test"},
        "readers": ["deltalake", "polars"],
        "tables": {
            "posts": {"rows": 30, "key": "post", "samples": [
                {"post": item(&ids[7]), "author": user(&author), "title": "on s3 7"}]},
            // One user is a class of one: k-anonymity (k = 5) suppresses them.
            "users": {"rows": 0, "key": "user"},
        },
    });
    check_lake(&python, dir.path(), &expect);
}

/// How many `post.created` the log holds, read with the log itself.
async fn logged_posts(data: &Path) -> usize {
    use philo_events::log::{ACTIONS_TOPIC, EmbeddedLog, EmbeddedLogConfig, Log};
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(data.join("log"))).unwrap();
    let mut n = 0;
    for p in 0..log.partitions(ACTIONS_TOPIC).await.unwrap() {
        let high = log.watermarks(ACTIONS_TOPIC, p).await.unwrap().high;
        let mut at = 0;
        while at < high {
            let records = log.read(ACTIONS_TOPIC, p, at, 10_000).await.unwrap();
            let Some(last) = records.last() else { break };
            at = last.offset + 1;
            n += records
                .iter()
                .filter(|r| {
                    philo_events::Envelope::from_json(&r.value)
                        .is_ok_and(|e| e.action.kind().as_str() == "post.created")
                })
                .count();
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_commits_and_compaction_leaves_every_action_exactly_once() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("data");
    let mut env = lake_env();
    // Tiny batches and frequent checkpoints: many commits to be killed in the middle of.
    env.extend([
        ("PHILO__LAKE__BATCH_MAX_ACTIONS", "40"),
        ("PHILO__LAKE__BATCH_MAX_WAIT_MS", "20"),
        ("PHILO__LAKE__CHECKPOINT_INTERVAL", "3"),
    ]);
    let client = reqwest::Client::new();
    let mut token = String::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    println!("kill delays seeded with {seed}");
    for round in 0..3u64 {
        let (mut child, base) = common::start(&data, &env);
        if round == 0 {
            token = common::register_user(&client, &base, "killed_author")
                .await
                .1;
        }
        // Load in the background; kill -9 somewhere in it.
        let load = {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            tokio::spawn(async move {
                // Until the server dies under it.
                for i in 0..100_000 {
                    let body = json!({"type": "post.created", "title": format!("r{round} {i}"), "body": "x", "tags": []});
                    let sent = client
                        .post(format!("{base}/v1/actions"))
                        .bearer_auth(&token)
                        .json(&body)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
            })
        };
        let delay = 300 + (seed.wrapping_mul(round + 7) % 1_200);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = load.await;
    }
    // Land the rest, then compaction killed part-way, twice.
    catch_up(&data, &env);
    for (i, delay) in [150u64, 400].into_iter().enumerate() {
        let mut optimize = common::philo_with(&env)
            .args(["lake", "optimize", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay + 97 * i as u64)).await;
        let _ = optimize.kill();
        optimize.wait().unwrap();
    }
    let summary = catch_up(&data, &env);
    assert_eq!(summary["rows"], 0, "{summary}");

    let logged = logged_posts(&data).await;
    println!("{logged} posts logged over the killed rounds");
    assert!(logged > 100, "the rounds logged only {logged} posts");
    let expect = json!({
        "lake": data.join("lake").to_string_lossy(),
        "readers": ["deltalake", "polars", "duckdb"],
        "tables": {"posts": {"rows": logged, "key": "post"}},
    });
    check_lake(&python, dir.path(), &expect);

    // Exactly once, by the Delta reader in Rust too: as many distinct posts as rows.
    let location = philo_lake::storage::Location::local(&data.join("lake")).unwrap();
    let mut lake = philo_lake::job::Lake::open(&location, &Default::default())
        .await
        .unwrap();
    let ctx = lake.session().await.unwrap();
    let batches = ctx
        .sql("SELECT count(*), count(DISTINCT post) FROM posts")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    use philo_lake::deltalake::arrow::array::AsArray;
    use philo_lake::deltalake::arrow::datatypes::Int64Type;
    let rows = batches[0].column(0).as_primitive::<Int64Type>().value(0);
    let distinct = batches[0].column(1).as_primitive::<Int64Type>().value(0);
    assert_eq!((rows as usize, distinct as usize), (logged, logged));
}
