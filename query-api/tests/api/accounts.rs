//! `GET /auth/me`, `GET /auth/sessions` and `GET /admin/accounts`: the accounts' read models,
//! served to their owner (or an admin), honouring `X-Consistency-Token`.

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use events::ConsistencyToken;
use sqlx::PgPool;
use test_support::Call;
use test_support::auth::TestAccount;
use uuid::Uuid;

use crate::helpers::{append_event, at, bare_app, bare_app_and_state, set_checkpoint, waiting};

/// Inserts an account row as the projector would.
async fn insert_account(pool: &PgPool, id: Uuid, email: &str, roles: &[&str], disabled: bool) {
    sqlx::query(
        "INSERT INTO auth_accounts \
             (account_id, email, roles, disabled, verified, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, true, $5, $5, 3)",
    )
    .bind(id)
    .bind(email)
    .bind(roles.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>())
    .bind(disabled)
    .bind(Utc::now())
    .execute(pool)
    .await
    .expect("account inserted");
}

/// Where a test session stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    Live,
    Revoked,
    /// Past its end.
    Expired,
    /// Its refresh token lapsed unused.
    Lapsed,
    /// Opened before the lapse was recorded: live until its end.
    Unrecorded,
}

/// Inserts a session row as the projector would.
async fn insert_session(pool: &PgPool, id: Uuid, account: Uuid, minutes: i64, standing: Standing) {
    let past = Utc::now() - Duration::minutes(1);
    let expires_at = match standing {
        Standing::Expired => past,
        _ => Utc::now() + Duration::days(30),
    };
    let refresh_expires_at = match standing {
        Standing::Lapsed => Some(past),
        Standing::Unrecorded => None,
        _ => Some(Utc::now() + Duration::days(14)),
    };
    sqlx::query(
        "INSERT INTO auth_sessions \
             (id, account_id, created_at, last_used_at, expires_at, ip, user_agent, method, amr, \
              revoked_at, version, refresh_expires_at) \
         VALUES ($1, $2, $3, $3, $4, '203.0.113.7', 'curl/8', 'password', '{pwd}', $5, 1, $6)",
    )
    .bind(id)
    .bind(account)
    .bind(at(minutes))
    .bind(expires_at)
    .bind((standing == Standing::Revoked).then(Utc::now))
    .bind(refresh_expires_at)
    .execute(pool)
    .await
    .expect("session inserted");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn me_is_the_callers_account_with_its_session(pool: PgPool) {
    let caller = TestAccount::user();
    insert_account(&pool, caller.id, "ada@example.com", &["user"], false).await;
    insert_account(&pool, Uuid::now_v7(), "bob@example.com", &["user"], false).await;
    let app = bare_app(&pool).await;

    let answer = Call::get("/api/v1/auth/me")
        .as_account(&caller)
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["account_id"], caller.id.to_string());
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["roles"], serde_json::json!(["user"]));
    assert_eq!(body["totp_enabled"], false);
    assert_eq!(body["recovery_codes_remaining"], 0);
    assert_eq!(body["passkeys"], serde_json::json!([]));
    assert_eq!(body["session_id"], caller.session.to_string());
    assert!(body["created_at"].is_string());
    assert_eq!(answer.header("cache-control"), Some("private, no-cache"));

    let anonymous = Call::get("/api/v1/auth/me").send(&app).await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn me_and_credentials_list_the_callers_passkeys_only(pool: PgPool) {
    let caller = TestAccount::user();
    let other = Uuid::now_v7();
    insert_account(&pool, caller.id, "ada@example.com", &["user"], false).await;
    insert_account(&pool, other, "bob@example.com", &["user"], false).await;
    for (id, account, label, minutes, used) in [
        ("Y3JlZC1h", caller.id, "laptop", 2, None),
        ("Y3JlZC1i", caller.id, "phone", 1, Some(at(4))),
        ("Y3JlZC1j", other, "bob's", 3, None),
    ] {
        sqlx::query(
            "INSERT INTO auth_account_passkeys \
                 (credential_id, account_id, label, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(account)
        .bind(label)
        .bind(at(minutes))
        .bind(used)
        .execute(&pool)
        .await
        .expect("passkey inserted");
    }
    let app = bare_app(&pool).await;
    let listed = Call::get("/api/v1/auth/webauthn/credentials")
        .as_account(&caller)
        .send(&app)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    assert_eq!(listed.header("cache-control"), Some("private, no-cache"));
    let items = listed.json()["items"].clone();
    let ids: Vec<&str> = items
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["Y3JlZC1i", "Y3JlZC1h"], "the caller's, oldest first");
    assert_eq!(items[0]["last_used_at"], serde_json::json!(at(4)));
    assert_eq!(items[1]["last_used_at"], serde_json::Value::Null);

    let me = Call::get("/api/v1/auth/me")
        .as_account(&caller)
        .send(&app)
        .await;
    assert_eq!(me.json()["passkeys"], items);
    let anonymous = Call::get("/api/v1/auth/webauthn/credentials")
        .send(&app)
        .await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn sessions_lists_live_ones_newest_first_and_flags_the_current(pool: PgPool) {
    // Live: neither revoked, nor past its end, nor with its refresh token lapsed.
    let caller = TestAccount::user();
    let (older, newer) = (Uuid::now_v7(), caller.session);
    insert_session(&pool, older, caller.id, 1, Standing::Unrecorded).await;
    insert_session(&pool, newer, caller.id, 5, Standing::Live).await;
    insert_session(&pool, Uuid::now_v7(), caller.id, 7, Standing::Revoked).await;
    insert_session(&pool, Uuid::now_v7(), caller.id, 8, Standing::Expired).await;
    insert_session(&pool, Uuid::now_v7(), caller.id, 9, Standing::Lapsed).await;
    insert_session(&pool, Uuid::now_v7(), Uuid::now_v7(), 10, Standing::Live).await;
    let app = bare_app(&pool).await;

    let answer = Call::get("/api/v1/auth/sessions")
        .as_account(&caller)
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let items = answer.json()["items"].as_array().expect("items").clone();
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [newer.to_string(), older.to_string()]);
    assert_eq!(items[0]["current"], true);
    assert_eq!(items[1]["current"], false);
    assert_eq!(items[0]["ip"], "203.0.113.7");
    assert_eq!(items[0]["user_agent"], "curl/8");
    assert_eq!(items[0]["amr"], serde_json::json!(["pwd"]));
    for field in ["created_at", "last_used_at", "expires_at"] {
        assert!(items[0][field].is_string(), "{field}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn me_and_sessions_wait_for_a_consistency_token(pool: PgPool) {
    let caller = TestAccount::user();
    // A read waits only for events its projection reads: one of each stream.
    append_event(&pool, "Account", &caller.id.to_string(), 1).await;
    let position = append_event(&pool, "Session", &caller.session.to_string(), 1).await;
    let token = ConsistencyToken::at(position).encode();
    let (app, _) = bare_app_and_state(&pool, waiting(std::time::Duration::from_millis(200))).await;

    for path in ["/api/v1/auth/me", "/api/v1/auth/sessions"] {
        let behind = Call::get(path)
            .as_account(&caller)
            .header("x-consistency-token", &token)
            .send(&app)
            .await;
        assert_eq!(behind.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    insert_account(&pool, caller.id, "ada@example.com", &["user"], false).await;
    set_checkpoint(&pool, "auth_accounts", position).await;
    set_checkpoint(&pool, "auth_sessions", position).await;
    for path in ["/api/v1/auth/me", "/api/v1/auth/sessions"] {
        let caught_up = Call::get(path)
            .as_account(&caller)
            .header("x-consistency-token", &token)
            .send(&app)
            .await;
        assert_eq!(
            caught_up.status,
            StatusCode::OK,
            "{path}: {}",
            caught_up.text()
        );
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn admins_list_accounts_filtered_and_paginated_and_nobody_else_does(pool: PgPool) {
    let admin = TestAccount::admin();
    insert_account(
        &pool,
        admin.id,
        "admin@example.com",
        &["user", "admin"],
        false,
    )
    .await;
    for n in 0..3 {
        let email = format!("user{n}@example.com");
        insert_account(&pool, Uuid::now_v7(), &email, &["user"], n == 2).await;
    }
    insert_account(
        &pool,
        Uuid::now_v7(),
        "audit@example.com",
        &["user", "auditor"],
        false,
    )
    .await;
    let app = bare_app(&pool).await;
    let list = |query: &str| Call::get(&format!("/api/v1/admin/accounts{query}"));

    let all = list("?page_size=2").as_account(&admin).send(&app).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    let body = all.json();
    assert_eq!(
        (body["total"].as_i64(), body["pages"].as_i64()),
        (Some(5), Some(3))
    );
    assert_eq!(body["items"].as_array().expect("items").len(), 2);
    assert!(all.header("link").expect("link").contains("page=2"));
    let item = &body["items"][0];
    for field in [
        "account_id",
        "email",
        "roles",
        "disabled",
        "totp_enabled",
        "created_at",
        "version",
    ] {
        assert!(!item[field].is_null(), "{field} in {item}");
    }

    let emails = |answer: test_support::Answer| -> Vec<String> {
        answer.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["email"].as_str().expect("email").to_owned())
            .collect()
    };
    let auditors = list("?role=auditor").as_account(&admin).send(&app).await;
    assert_eq!(emails(auditors), ["audit@example.com"]);
    let disabled = list("?disabled=true").as_account(&admin).send(&app).await;
    assert_eq!(emails(disabled), ["user2@example.com"]);
    let one = list("?email=USER1@example.com")
        .as_account(&admin)
        .send(&app)
        .await;
    assert_eq!(emails(one), ["user1@example.com"]);
    list("?role=root")
        .as_account(&admin)
        .send(&app)
        .await
        .problem(StatusCode::BAD_REQUEST);
    list("?disabled=maybe")
        .as_account(&admin)
        .send(&app)
        .await
        .problem(StatusCode::BAD_REQUEST);

    list("").send(&app).await.problem(StatusCode::UNAUTHORIZED);
    for refused in [TestAccount::user(), TestAccount::auditor()] {
        let answer = list("").as_account(&refused).send(&app).await;
        assert_eq!(
            answer.problem(StatusCode::FORBIDDEN)["type"],
            "/problems/forbidden"
        );
        // 403 comes before the shape: a bad filter still says forbidden.
        list("?role=root")
            .as_account(&refused)
            .send(&app)
            .await
            .problem(StatusCode::FORBIDDEN);
    }
}
