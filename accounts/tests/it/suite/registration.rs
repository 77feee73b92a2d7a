//! Registration, login and admin creation.

use philo_accounts::{AccountsError, Clock, Role};
use serde_json::json;
use uuid::Uuid;

use super::{PW, actions, code};
use crate::harness::{Fixture, new_user, secret};

pub async fn register_returns_user_and_working_tokens(f: Fixture) {
    let (user, pair) = f.register("Alice_1", "Alice@Example.com", PW).await;
    assert_eq!(user.username, "Alice_1", "stored as typed");
    assert_eq!(user.email, "Alice@Example.com");
    assert_eq!(user.role, Role::User);
    assert_eq!(user.created_at, f.clock.now());
    assert_eq!(user.id.get_version_num(), 7);
    assert_eq!(pair.expires_in, 900);
    assert_ne!(pair.access_token, pair.refresh_token);

    let claims = f.accounts.verify_access(&pair.access_token).unwrap();
    assert_eq!(claims.sub, user.id);
    assert_eq!(claims.role, Role::User);
    assert_eq!(claims.iss, "philo");
    assert_eq!(claims.exp - claims.iat, 900);

    assert_eq!(f.accounts.user(user.id).await.unwrap(), Some(user.clone()));

    let (procurer, _) = f
        .accounts
        .register(new_user("buyer", "buyer@corp.example", PW, Role::Procurer))
        .await
        .unwrap();
    assert_eq!(procurer.role, Role::Procurer);
}

pub async fn register_validates_input(f: Fixture) {
    let cases = [
        (
            new_user("1abc", "a@b.co", PW, Role::User),
            "invalid_username",
            "username",
        ),
        (
            new_user("abc", "not-an-email", PW, Role::User),
            "invalid_email",
            "email",
        ),
        (
            new_user("abc", "a@b.co", "short", Role::User),
            "password_too_short",
            "password",
        ),
    ];
    for (new, want_code, want_field) in cases {
        match f.accounts.register(new).await {
            Err(AccountsError::Invalid {
                code,
                field,
                message,
            }) => {
                assert_eq!((code, field), (want_code, want_field), "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected Invalid {want_code}, got {other:?}"),
        }
    }
    assert!(actions(&f.accounts).await.is_empty());
}

pub async fn duplicates_are_refused_case_insensitively(f: Fixture) {
    f.register("Alice", "alice@example.com", PW).await;
    let dup_name = f
        .accounts
        .register(new_user("aLiCe", "other@example.com", PW, Role::User))
        .await;
    match dup_name {
        Err(AccountsError::Conflict { code, field }) => {
            assert_eq!((code, field), ("username_taken", "username"));
        }
        other => panic!("expected username_taken, got {other:?}"),
    }
    let dup_mail = f
        .accounts
        .register(new_user("bob", "ALICE@Example.COM", PW, Role::Procurer))
        .await;
    match dup_mail {
        Err(AccountsError::Conflict { code, field }) => {
            assert_eq!((code, field), ("email_taken", "email"));
        }
        other => panic!("expected email_taken, got {other:?}"),
    }
    // Refusals left no rows behind: still one registration in the outbox, and bob is free.
    assert_eq!(actions(&f.accounts).await.len(), 1);
    f.register("bob", "bob@example.com", PW).await;
}

pub async fn concurrent_duplicate_registrations_yield_exactly_one_success(f: Fixture) {
    const N: usize = 6;
    // Same username (different case), different emails; then same email, different usernames.
    for round in 0..2 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
        let mut tasks = Vec::new();
        for i in 0..N {
            let accounts = f.accounts.clone();
            let barrier = barrier.clone();
            let new = if round == 0 {
                let name = if i % 2 == 0 { "Racer" } else { "rACER" };
                new_user(name, &format!("racer{i}@example.com"), PW, Role::User)
            } else {
                new_user(&format!("mailer{i}"), "Same@Example.com", PW, Role::User)
            };
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                accounts.register(new).await
            }));
        }
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => {
                    let want = if round == 0 {
                        "username_taken"
                    } else {
                        "email_taken"
                    };
                    assert_eq!(e.code(), want, "round {round}: {e:?}");
                }
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one registration must win");
    }
    let registered = actions(&f.accounts)
        .await
        .into_iter()
        .filter(|a| a["type"] == "user.registered")
        .count();
    assert_eq!(registered, 2);
}

pub async fn login_by_username_or_email_case_insensitively(f: Fixture) {
    let (user, first) = f.register("Carol", "Carol@Example.com", PW).await;
    let first_sid = f.accounts.verify_access(&first.access_token).unwrap().sid;
    let mut sids = vec![first_sid];
    for login in [
        "Carol",
        "carol",
        "CAROL",
        "carol@example.com",
        "CAROL@EXAMPLE.COM",
    ] {
        let (who, pair) = f.accounts.login(login, &secret(PW)).await.unwrap();
        assert_eq!(who, user, "{login}");
        let claims = f.accounts.verify_access(&pair.access_token).unwrap();
        assert_eq!(claims.sub, user.id);
        assert!(
            !sids.contains(&claims.sid),
            "each login opens a new session"
        );
        sids.push(claims.sid);
    }
    let logged_in = actions(&f.accounts)
        .await
        .into_iter()
        .filter(|a| *a == json!({"type": "user.logged_in"}))
        .count();
    assert_eq!(logged_in, 5);
}

pub async fn wrong_password_and_unknown_login_look_the_same(f: Fixture) {
    f.register("dave", "dave@example.com", PW).await;
    let wrong = f.accounts.login("dave", &secret("wrong password!")).await;
    let unknown = f.accounts.login("nobody", &secret(PW)).await;
    let empty = f.accounts.login("", &secret(PW)).await;
    let wrong = wrong.unwrap_err();
    let unknown = unknown.unwrap_err();
    assert!(
        matches!(wrong, AccountsError::InvalidCredentials),
        "{wrong:?}"
    );
    assert!(
        matches!(unknown, AccountsError::InvalidCredentials),
        "{unknown:?}"
    );
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(code(empty), "invalid_credentials");
    assert!(!wrong.is_retryable());
    // Failed logins write nothing.
    assert_eq!(actions(&f.accounts).await.len(), 1);
}

pub async fn admin_is_refused_via_register(f: Fixture) {
    let refused = f
        .accounts
        .register(new_user("root", "root@example.com", PW, Role::Admin))
        .await;
    match refused {
        Err(AccountsError::Forbidden { code, message }) => {
            assert_eq!(code, "role_forbidden");
            assert!(!message.is_empty());
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert_eq!(
        code(f.accounts.login("root", &secret(PW)).await),
        "invalid_credentials"
    );
    assert!(actions(&f.accounts).await.is_empty());
    // Nothing was stored: the name is still free.
    f.register("root", "root@example.com", PW).await;
}

pub async fn create_admin_works(f: Fixture) {
    let admin = f
        .accounts
        .create_admin(new_user("Boss", "boss@example.com", PW, Role::User))
        .await
        .unwrap();
    assert_eq!(
        admin.role,
        Role::Admin,
        "create_admin always makes an admin"
    );
    assert_eq!(
        actions(&f.accounts).await,
        vec![serde_json::json!({"type": "user.registered", "username": "Boss", "role": "admin"})],
        "create_admin announces the account like any other"
    );
    let (who, pair) = f.accounts.login("boss", &secret(PW)).await.unwrap();
    assert_eq!(who, admin);
    assert_eq!(
        f.accounts.verify_access(&pair.access_token).unwrap().role,
        Role::Admin
    );
    let dup = f
        .accounts
        .create_admin(new_user("BOSS", "boss2@example.com", PW, Role::Admin))
        .await;
    assert_eq!(code(dup), "username_taken");
    let invalid = f
        .accounts
        .create_admin(new_user(
            "ok_name",
            "boss3@example.com",
            "short",
            Role::Admin,
        ))
        .await;
    assert_eq!(code(invalid), "password_too_short");
}

pub async fn reconnect_keeps_data_and_migrations_are_idempotent(f: Fixture) {
    let (user, pair) = f.register("mona", "mona@example.com", PW).await;
    let again = f.another_process().await;
    assert_eq!(again.user(user.id).await.unwrap(), Some(user.clone()));
    // Tokens minted by one process are accepted by another with the same secret.
    again.verify_access(&pair.access_token).unwrap();
    let (_, rotated) = again.refresh(&pair.refresh_token).await.unwrap();
    f.accounts.refresh(&rotated.refresh_token).await.unwrap();
    again.close().await;
}

pub async fn ping_and_unknown_user(f: Fixture) {
    f.accounts.ping().await.unwrap();
    assert_eq!(f.accounts.user(Uuid::now_v7()).await.unwrap(), None);
    assert!(f.accounts.pending_outbox(0).await.unwrap().is_empty());
}
