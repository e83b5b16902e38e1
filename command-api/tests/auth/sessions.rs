//! Revoking one's own sessions: one, or every other one, each behind a step-up password;
//! 401 -> 403 -> shape -> 404 -> step-up order; revoked sessions' tokens stop at once.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

fn revoke_path(id: impl std::fmt::Display) -> String {
    format!("/api/v1/auth/sessions/{id}/revoke")
}

const REVOKE_OTHERS: &str = "/api/v1/auth/sessions/revoke-others";

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn revoke_others_leaves_the_current_session_and_ends_the_rest(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("multi");
    let account_id = registered(&api, &mut mailbox, &email).await;
    let current = api.login(&email, PASSWORD).await;
    let others = [
        api.login(&email, PASSWORD).await,
        api.login(&email, PASSWORD).await,
    ];

    let wrong = api
        .post_as(
            Some(&current.access),
            REVOKE_OTHERS,
            &json!({ "password": "not the password at all" }),
        )
        .await;
    assert_eq!(
        wrong.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/step-up-failed"
    );
    // A wrong step-up counts as a failed login, and revokes nothing.
    let failures: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(hits), 0)::bigint FROM auth_rate_limits \
          WHERE limit_name = 'login_address' AND email = $1",
    )
    .bind(&email)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failures, 1);
    assert_eq!(count(&pool, "SessionRevoked").await, 0);

    let answer = api
        .post_as(
            Some(&current.access),
            REVOKE_OTHERS,
            &json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["revoked"], 2);
    assert_eq!(
        answer.header("x-consistency-token"),
        body["consistency_token"].as_str()
    );
    for other in &others {
        api.refresh(&other.refresh)
            .await
            .problem(StatusCode::UNAUTHORIZED);
        // Their access tokens stop at once on this replica.
        api.post_as(
            Some(&other.access),
            REVOKE_OTHERS,
            &json!({ "password": PASSWORD }),
        )
        .await
        .problem(StatusCode::UNAUTHORIZED);
        assert_eq!(
            stream(&pool, "Session", &other.id.to_string()).await,
            ["LoginSucceeded", "SessionRevoked"]
        );
        assert_eq!(
            actors(&pool, "Session", &other.id.to_string()).await[1],
            account_id
        );
    }
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT payload->'SessionRevoked'->>'reason' FROM events \
          WHERE event_type = 'SessionRevoked'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(reasons, ["others", "others"]);
    let kept = api.refresh(&current.refresh).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text());
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn one_session_is_revoked_by_id_and_anothers_is_404(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let (ada, bob) = (address("ada"), address("bob"));
    registered(&api, &mut mailbox, &ada).await;
    registered(&api, &mut mailbox, &bob).await;
    let current = api.login(&ada, PASSWORD).await;
    let phone = api.login(&ada, PASSWORD).await;
    let bobs = api.login(&bob, PASSWORD).await;
    let step_up = json!({ "password": PASSWORD });

    // 401: no token, or a bad one.
    api.post_as(None, &revoke_path(phone.id), &step_up)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    api.post_as(Some("not-a-token"), &revoke_path(phone.id), &step_up)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // Shape before existence: a malformed id or body is 422/400 whatever the session.
    api.post_as(Some(&current.access), &revoke_path("nope"), &step_up)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    api.post_as(
        Some(&current.access),
        &revoke_path(phone.id),
        &json!({ "pw": PASSWORD }),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    // 404 before the step-up: another account's session, or none, even with a wrong password.
    for id in [bobs.id, Uuid::now_v7()] {
        for password in [PASSWORD, "not the password at all"] {
            let answer = api
                .post_as(
                    Some(&current.access),
                    &revoke_path(id),
                    &json!({ "password": password }),
                )
                .await;
            answer.problem(StatusCode::NOT_FOUND);
        }
    }
    assert_eq!(count(&pool, "SessionRevoked").await, 0);
    // Step-up: a wrong password on the caller's own session is 403.
    let wrong = api
        .post_as(
            Some(&current.access),
            &revoke_path(phone.id),
            &json!({ "password": "not the password at all" }),
        )
        .await;
    assert_eq!(
        wrong.problem(StatusCode::FORBIDDEN)["type"],
        "/problems/step-up-failed"
    );

    let answer = api
        .post_as(Some(&current.access), &revoke_path(phone.id), &step_up)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["id"], phone.id.to_string());
    assert_eq!(body["version"], 2);
    api.refresh(&phone.refresh)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // Once revoked it is no live session of the caller's: 404.
    api.post_as(Some(&current.access), &revoke_path(phone.id), &step_up)
        .await
        .problem(StatusCode::NOT_FOUND);
    // Bob's session is untouched.
    assert_eq!(api.refresh(&bobs.refresh).await.status, StatusCode::OK);
    relay.stop().await;
}
