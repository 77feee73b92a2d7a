//! Refresh rotation and reuse, expiry, logout and revocation, the outbox.

use std::time::Duration;

use philo_accounts::{Clock, Role};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{PW, code};
use crate::harness::{Fixture, new_user, secret};

pub async fn refresh_rotates_within_the_session(f: Fixture) {
    let (user, p1) = f.register("erin", "erin@example.com", PW).await;
    let sid = f.accounts.verify_access(&p1.access_token).unwrap().sid;
    f.clock.advance(Duration::from_secs(60));

    let (who, p2) = f.accounts.refresh(&p1.refresh_token).await.unwrap();
    assert_eq!(who, user);
    assert_ne!(p2.refresh_token, p1.refresh_token);
    assert_ne!(p2.access_token, p1.access_token);
    let c2 = f.accounts.verify_access(&p2.access_token).unwrap();
    assert_eq!((c2.sub, c2.sid), (user.id, sid), "same session");

    let (_, p3) = f.accounts.refresh(&p2.refresh_token).await.unwrap();
    assert_eq!(f.accounts.verify_access(&p3.access_token).unwrap().sid, sid);
    // The old access tokens stay valid until they expire.
    f.accounts.verify_access(&p1.access_token).unwrap();
}

pub async fn refresh_reuse_revokes_the_whole_session(f: Fixture) {
    let (_, p1) = f.register("frank", "frank@example.com", PW).await;
    let (_, other) = f.accounts.login("frank", &secret(PW)).await.unwrap();
    let (_, p2) = f.accounts.refresh(&p1.refresh_token).await.unwrap();

    assert_eq!(
        code(f.accounts.refresh(&p1.refresh_token).await),
        "refresh_token_reused"
    );
    // The newer token of the same family is dead too, and so are its access tokens.
    assert_eq!(
        code(f.accounts.refresh(&p2.refresh_token).await),
        "session_revoked"
    );
    assert_eq!(
        code(f.accounts.verify_access(&p2.access_token)),
        "session_revoked"
    );
    assert_eq!(
        code(f.accounts.verify_access(&p1.access_token)),
        "session_revoked"
    );
    // Presenting the reused token again still finds a revoked session.
    assert_eq!(
        code(f.accounts.refresh(&p1.refresh_token).await),
        "session_revoked"
    );
    // Another session of the same user is untouched.
    f.accounts.verify_access(&other.access_token).unwrap();
    f.accounts.refresh(&other.refresh_token).await.unwrap();
}

pub async fn concurrent_refreshes_of_one_token_cannot_both_succeed(f: Fixture) {
    let (_, pair) = f.register("gina", "gina@example.com", PW).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let accounts = f.accounts.clone();
        let token = pair.refresh_token.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            accounts.refresh(&token).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(
                matches!(e.code(), "refresh_token_reused" | "session_revoked"),
                "{e:?}"
            ),
        }
    }
    assert_eq!(ok, 1, "exactly one refresh of a token may succeed");
}

pub async fn expired_tokens_are_refused(f: Fixture) {
    let (_, pair) = f.register("hank", "hank@example.com", PW).await;
    f.clock.advance(Duration::from_secs(899));
    f.accounts.verify_access(&pair.access_token).unwrap();
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(
        code(f.accounts.verify_access(&pair.access_token)),
        "token_expired"
    );

    // Refresh tokens last 30 days.
    let (_, fresh) = f.accounts.refresh(&pair.refresh_token).await.unwrap();
    f.clock.advance(Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        code(f.accounts.refresh(&fresh.refresh_token).await),
        "refresh_token_expired"
    );
}

pub async fn unknown_refresh_tokens_are_refused(f: Fixture) {
    let (_, pair) = f.register("ivan", "ivan@example.com", PW).await;
    let mut altered = pair.refresh_token.clone();
    altered.replace_range(0..1, if altered.starts_with('A') { "B" } else { "A" });
    for token in [
        altered.as_str(),
        "",
        "garbage",
        &"x".repeat(10_000),
        &pair.access_token,
    ] {
        assert_eq!(
            code(f.accounts.refresh(token).await),
            "invalid_token",
            "{token:.20}"
        );
    }
    assert_eq!(
        code(f.accounts.verify_access(&pair.refresh_token)),
        "invalid_token"
    );
}

pub async fn logout_revokes_refresh_and_access_tokens(f: Fixture) {
    let (user, pair) = f.register("judy", "judy@example.com", PW).await;
    let (_, other) = f.accounts.login("judy", &secret(PW)).await.unwrap();
    let claims = f.accounts.verify_access(&pair.access_token).unwrap();

    f.accounts.logout(&claims).await.unwrap();
    assert_eq!(
        code(f.accounts.verify_access(&pair.access_token)),
        "session_revoked"
    );
    assert_eq!(
        code(f.accounts.refresh(&pair.refresh_token).await),
        "session_revoked"
    );
    // Idempotent, and the other session lives on.
    f.accounts.logout(&claims).await.unwrap();
    f.accounts.verify_access(&other.access_token).unwrap();
    f.accounts.refresh(&other.refresh_token).await.unwrap();

    let outbox = f.accounts.pending_outbox(100).await.unwrap();
    let logged_out: Vec<_> = outbox
        .iter()
        .filter(|e| e.action_json.contains("user.logged_out"))
        .collect();
    assert_eq!(logged_out.len(), 1, "one logged_out action per session");
    assert_eq!(logged_out[0].actor_id, user.id);
}

pub async fn other_processes_learn_revocations_on_sync(f: Fixture) {
    let other = f.another_process().await;
    let (_, pair) = f.register("kate", "kate@example.com", PW).await;
    let claims = other.verify_access(&pair.access_token).unwrap();

    f.accounts.logout(&claims).await.unwrap();
    // The other process has not synced yet: its cache does not know (documented staleness)...
    other.verify_access(&pair.access_token).unwrap();
    // ...but the database does.
    assert_eq!(
        code(other.refresh(&pair.refresh_token).await),
        "session_revoked"
    );

    let (_, pair2) = f.accounts.login("kate", &secret(PW)).await.unwrap();
    let claims2 = f.accounts.verify_access(&pair2.access_token).unwrap();
    f.accounts.logout(&claims2).await.unwrap();
    other.sync_revocations().await.unwrap();
    assert_eq!(
        code(other.verify_access(&pair2.access_token)),
        "session_revoked"
    );

    // Long after every access token died, the revocation is forgotten; the token is expired.
    f.clock.advance(Duration::from_secs(3600));
    other.sync_revocations().await.unwrap();
    assert_eq!(
        code(other.verify_access(&pair2.access_token)),
        "token_expired"
    );
    other.close().await;
}

pub async fn outbox_rows_follow_their_transaction_and_ack_deletes_them(f: Fixture) {
    let t0 = f.clock.now();
    let (user, pair) = f.register("Lena_X", "lena@example.com", PW).await;
    f.clock.advance(Duration::from_millis(5));
    let (_, _) = f.accounts.login("lena_x", &secret(PW)).await.unwrap();
    f.clock.advance(Duration::from_millis(5));
    let claims = f.accounts.verify_access(&pair.access_token).unwrap();
    f.accounts.logout(&claims).await.unwrap();
    // A refused registration (duplicate) and a refused login leave no trace.
    assert!(
        f.accounts
            .register(new_user("lena_x", "l2@example.com", PW, Role::User))
            .await
            .is_err()
    );
    assert!(
        f.accounts
            .login("lena_x", &secret("wrong password"))
            .await
            .is_err()
    );

    let pending = f.accounts.pending_outbox(10).await.unwrap();
    let bodies: Vec<Value> = pending
        .iter()
        .map(|e| serde_json::from_str(&e.action_json).unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({"type": "user.registered", "username": "Lena_X", "role": "user"}),
            json!({"type": "user.logged_in"}),
            json!({"type": "user.logged_out"}),
        ]
    );
    for (i, entry) in pending.iter().enumerate() {
        assert_eq!(entry.actor_id, user.id);
        assert_eq!(entry.id.get_version_num(), 7);
        let offset = chrono::TimeDelta::milliseconds(5 * i as i64);
        assert_eq!(entry.created_at, t0 + offset);
    }
    let ids: Vec<Uuid> = pending.iter().map(|e| e.id).collect();
    let distinct: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "distinct ids");

    assert_eq!(
        f.accounts.pending_outbox(2).await.unwrap(),
        pending[..2].to_vec()
    );
    f.accounts
        .ack_outbox(&[pending[0].id, Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(
        f.accounts.pending_outbox(10).await.unwrap(),
        pending[1..].to_vec()
    );
    f.accounts.ack_outbox(&ids).await.unwrap();
    f.accounts.ack_outbox(&[]).await.unwrap();
    assert!(f.accounts.pending_outbox(10).await.unwrap().is_empty());
}

pub async fn erase_revokes_everything_frees_the_names_and_writes_account_erased(f: Fixture) {
    let (user, pair) = f.register("erin", "erin@example.com", PW).await;
    let (_, other) = f.accounts.login("erin", &secret(PW)).await.unwrap();
    let erasure = f.accounts.erase(user.id).await.unwrap();
    let action_id = erasure.action_id.expect("a first erasure writes an action");
    assert_eq!(erasure.user_id, user.id);

    // Every session is gone, in this process at once.
    for p in [&pair, &other] {
        assert_eq!(
            code(f.accounts.verify_access(&p.access_token)),
            "session_revoked"
        );
        assert_eq!(
            code(f.accounts.refresh(&p.refresh_token).await),
            "session_revoked"
        );
    }
    // The password stops working; the name and address are free for someone else.
    assert_eq!(
        code(f.accounts.login("erin", &secret(PW)).await),
        "invalid_credentials"
    );
    let stored = f.accounts.user(user.id).await.unwrap().unwrap();
    assert!(!stored.username.contains("erin") && !stored.email.contains("erin"));
    f.register("Erin", "ERIN@example.com", PW).await;

    // One `account.erased` with the erasure's id; erasing again writes nothing.
    let outbox = f.accounts.pending_outbox(100).await.unwrap();
    let erased: Vec<_> = outbox
        .iter()
        .filter(|e| e.action_json.contains("account.erased"))
        .collect();
    assert_eq!(erased.len(), 1);
    assert_eq!((erased[0].id, erased[0].actor_id), (action_id, user.id));
    assert_eq!(f.accounts.erase(user.id).await.unwrap().action_id, None);
    assert_eq!(code(f.accounts.erase(Uuid::now_v7()).await), "unknown_user");
}
