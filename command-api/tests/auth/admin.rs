//! The admin endpoints: roles (and the last admin), disable (every session and token ends),
//! enable, revoke sessions, mail a reset link; refused to everyone but admins; audited.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

fn admin_path(id: impl std::fmt::Display, action: &str) -> String {
    format!("/api/v1/admin/accounts/{id}/{action}")
}

async fn put_roles(
    api: &Instance,
    token: &str,
    id: impl std::fmt::Display,
    roles: Value,
) -> Answer {
    api.send_as(
        Call::put(&admin_path(id, "roles")).json(&json!({ "roles": roles })),
        Some(token),
    )
    .await
}

async fn admin_id(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, Uuid>("SELECT account_id FROM auth_credentials WHERE email = $1")
        .bind(ADMIN_EMAIL)
        .fetch_one(pool)
        .await
        .unwrap()
        .to_string()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn admin_routes_refuse_anonymous_callers_and_non_admins_before_anything_else(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let (api, admin) = with_admin(&pool).await;
    let email = address("user");
    let user_id = registered(&api, &mut mailbox, &email).await;
    let user = api.login(&email, PASSWORD).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();

    let calls = |id: &str| {
        vec![
            Call::put(&admin_path(id, "roles")).json(&json!({ "roles": ["admin"] })),
            Call::post(&admin_path(id, "disable")).json(&json!({})),
            Call::post(&admin_path(id, "enable")),
            Call::post(&admin_path(id, "sessions/revoke")),
            Call::post(&admin_path(id, "password-reset")),
        ]
    };
    for call in calls(&user_id) {
        api.send_as(call, None)
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    // A user, even on their own account, and even with a malformed id: 403 first.
    for id in [user_id.as_str(), "nope"] {
        for call in calls(id) {
            let answer = api.send_as(call, Some(&user.access)).await;
            assert_eq!(
                answer.problem(StatusCode::FORBIDDEN)["type"],
                "/problems/forbidden"
            );
        }
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, before, "a refused call writes nothing");
    // An admin: a malformed id is 422, an unknown account 404.
    for call in calls("nope") {
        api.send_as(call, Some(&admin.access))
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    for call in calls(&Uuid::now_v7().to_string()) {
        api.send_as(call, Some(&admin.access))
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    put_roles(&api, &admin.access, &user_id, json!(["root"]))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    put_roles(&api, &admin.access, &user_id, json!(["admin", "admin"]))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_last_admin_keeps_admin_and_a_removed_role_stops_its_tokens(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let (api, admin) = with_admin(&pool).await;
    let admin_id = admin_id(&pool).await;

    let alone = put_roles(&api, &admin.access, &admin_id, json!(["auditor"])).await;
    alone.problem(StatusCode::CONFLICT);
    api.send_as(
        Call::post(&admin_path(&admin_id, "disable")).json(&json!({})),
        Some(&admin.access),
    )
    .await
    .problem(StatusCode::CONFLICT);

    let email = address("second");
    let second_id = registered(&api, &mut mailbox, &email).await;
    let granted = put_roles(&api, &admin.access, &second_id, json!(["admin", "auditor"])).await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.text());
    // Roles are read at issue: a login now carries them.
    let second = api.login(&email, PASSWORD).await;
    let roles = api
        .post("login", &json!({ "email": email, "password": PASSWORD }))
        .await
        .json()["roles"]
        .clone();
    assert_eq!(roles, json!(["user", "admin", "auditor"]));

    // Now the first admin may step down; the second holds admin.
    let stepped = put_roles(&api, &admin.access, &admin_id, json!([])).await;
    assert_eq!(stepped.status, StatusCode::OK, "{}", stepped.text());
    // The token issued with `admin` stops working at once on this replica.
    put_roles(&api, &admin.access, &second_id, json!(["admin"]))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // And now the second is the last admin.
    put_roles(&api, &second.access, &second_id, json!(["auditor"]))
        .await
        .problem(StatusCode::CONFLICT);

    let changes: Vec<Value> = sqlx::query_scalar(
        "SELECT payload->'RolesChanged' FROM events \
          WHERE event_type = 'RolesChanged' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&admin_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(changes.last().unwrap()["previous"], json!(["admin"]));
    assert_eq!(changes.last().unwrap()["roles"], json!([]));
    assert_eq!(
        actors(&pool, "Account", &second_id).await.last().unwrap(),
        &admin_id,
        "the admin is the actor of the grant"
    );
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn disabling_ends_every_session_and_token_until_enabled(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let (api, admin) = with_admin(&pool).await;
    let admin_id = admin_id(&pool).await;
    let email = address("bad");
    let user_id = registered(&api, &mut mailbox, &email).await;
    let sessions = [
        api.login(&email, PASSWORD).await,
        api.login(&email, PASSWORD).await,
    ];

    let disabled = api
        .send_as(
            Call::post(&admin_path(&user_id, "disable")).json(&json!({ "reason": "abuse" })),
            Some(&admin.access),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text());
    for session in &sessions {
        api.refresh(&session.refresh)
            .await
            .problem(StatusCode::UNAUTHORIZED);
        api.post_as(
            Some(&session.access),
            "/api/v1/auth/sessions/revoke-others",
            &json!({ "password": PASSWORD }),
        )
        .await
        .problem(StatusCode::UNAUTHORIZED);
        let revoked = stream(&pool, "Session", &session.id.to_string()).await;
        assert_eq!(revoked, ["LoginSucceeded", "SessionRevoked"]);
        assert_eq!(
            actors(&pool, "Session", &session.id.to_string()).await[1],
            admin_id
        );
    }
    let login = api
        .post("login", &json!({ "email": email, "password": PASSWORD }))
        .await;
    assert_eq!(
        login.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/account-disabled"
    );
    let reason: String = sqlx::query_scalar(
        "SELECT payload->'AccountDisabled'->>'reason' FROM events \
          WHERE event_type = 'AccountDisabled'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reason, "abuse");

    let enabled = api
        .send_as(
            Call::post(&admin_path(&user_id, "enable")),
            Some(&admin.access),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.text());
    let again = api.login(&email, PASSWORD).await;
    assert_eq!(api.refresh(&again.refresh).await.status, StatusCode::OK);
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_admin_revokes_every_session_and_mails_a_reset_link(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let (api, admin) = with_admin(&pool).await;
    let email = address("lost");
    let user_id = registered(&api, &mut mailbox, &email).await;
    let sessions = [
        api.login(&email, PASSWORD).await,
        api.login(&email, PASSWORD).await,
    ];

    let revoked = api
        .send_as(
            Call::post(&admin_path(&user_id, "sessions/revoke")),
            Some(&admin.access),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(revoked.json()["revoked"], 2);
    for session in &sessions {
        api.refresh(&session.refresh)
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }

    let reset = api
        .send_as(
            Call::post(&admin_path(&user_id, "password-reset")),
            Some(&admin.access),
        )
        .await;
    assert_eq!(reset.status, StatusCode::ACCEPTED, "{}", reset.text());
    assert_eq!(reset.json(), json!({ "status": "accepted" }));
    let mail = mailbox.take(&email, "password_reset").await;
    let done = api
        .post(
            "password/reset",
            &json!({ "token": token_of(&mail), "new_password": "another long passphrase here" }),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let by: String = sqlx::query_scalar(
        "SELECT payload->'PasswordResetRequested'->>'by' FROM events \
          WHERE event_type = 'PasswordResetRequested' AND aggregate_id = $1",
    )
    .bind(&user_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(by, "admin");
    // No secret in any event: the mailed token is nowhere in the log.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%' \
            OR metadata::text LIKE '%' || $1 || '%'",
    )
    .bind(token_of(&mail))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    relay.stop().await;
}
