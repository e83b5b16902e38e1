//! Password reset and change: a reset ends every session, a change every other one.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

const NEW_PASSWORD: &str = "a much better passphrase";

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_reset_ends_every_session_and_a_refused_password_keeps_the_link(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("reset");
    let account_id = registered(&api, &mut mailbox, &email).await;
    let sessions = [
        api.login(&email, PASSWORD).await,
        api.login(&email, PASSWORD).await,
    ];

    let accepted = api
        .post("password/forgot", &json!({ "email": email }))
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    api.drain().await;
    let mail = mailbox.take(&email, "password_reset").await;
    assert!(
        mail["link"]
            .as_str()
            .unwrap()
            .starts_with("https://app.example/reset-password#token=")
    );
    let token = token_of(&mail);
    let weak = api
        .post(
            "password/reset",
            &json!({ "token": token, "new_password": "short" }),
        )
        .await;
    weak.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let reset = api
        .post(
            "password/reset",
            &json!({ "token": token, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    assert_eq!(reset.json()["id"], account_id.as_str());
    let used = api
        .post(
            "password/reset",
            &json!({ "token": token, "new_password": NEW_PASSWORD }),
        )
        .await;
    used.problem(StatusCode::BAD_REQUEST);

    for session in &sessions {
        api.refresh(&session.refresh)
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    let old = api
        .post("login", &json!({ "email": email, "password": PASSWORD }))
        .await;
    old.problem(StatusCode::UNAUTHORIZED);
    api.login(&email, NEW_PASSWORD).await;
    mailbox.take(&email, "password_changed").await;
    let events = stream(&pool, "Account", &account_id).await;
    assert!(events.contains(&"PasswordReset".to_owned()), "{events:?}");
    let reason: String = sqlx::query_scalar(
        "SELECT payload->'SessionRevoked'->>'reason' FROM events \
          WHERE aggregate_id = $1 AND event_type = 'SessionRevoked'",
    )
    .bind(sessions[0].id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reason, "password_reset");
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_change_needs_the_current_password_and_ends_the_other_sessions(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("change");
    registered(&api, &mut mailbox, &email).await;
    let this = api.login(&email, PASSWORD).await;
    let other = api.login(&email, PASSWORD).await;
    let bearer = format!("Bearer {}", this.access);

    let anonymous = api
        .post(
            "password/change",
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
    let wrong = api
        .call(
            "password/change",
            &json!({ "current_password": "not the password at all", "new_password": NEW_PASSWORD }),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(
        wrong.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/step-up-failed"
    );
    let changed = api
        .call(
            "password/change",
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
    api.refresh(&other.refresh)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(api.refresh(&this.refresh).await.status, StatusCode::OK);
    mailbox.take(&email, "password_changed").await;
    relay.stop().await;
}
