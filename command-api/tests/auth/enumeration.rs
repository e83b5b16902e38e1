//! No enumeration: register, resend, forgot and login answer the same bytes for known and
//! unknown addresses (apart from `request_id`), after the same hashing work.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

/// The answer with its request id taken out of body and headers.
fn comparable(answer: &Answer) -> (StatusCode, Vec<(String, String)>, Value) {
    let mut body = answer.value();
    if let Some(object) = body.as_object_mut() {
        object.remove("request_id");
    }
    let mut headers: Vec<(String, String)> = answer
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "x-request-id")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (answer.status, headers, body)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn known_and_unknown_addresses_get_the_same_answers_after_the_same_work(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let known = address("known");
    let unknown = address("unknown");
    registered(&api, &mut mailbox, &known).await;

    for (path, body) in [
        ("register", json!({ "password": PASSWORD })),
        ("resend-verification", json!({})),
        ("password/forgot", json!({})),
        ("login", json!({ "password": "not the password at all" })),
    ] {
        let mut answers = Vec::new();
        for email in [&known, &unknown] {
            let mut body = body.clone();
            body["email"] = json!(email);
            let work = api.auth.crypto.hash_work();
            let answer = api.post(path, &body).await;
            answers.push((comparable(&answer), api.auth.crypto.hash_work() - work));
        }
        assert_eq!(answers[0], answers[1], "{path}");
        let expected_work = u64::from(matches!(path, "register" | "login"));
        assert_eq!(answers[0].1, expected_work, "{path}: hashes per request");
        for (answer, _) in &answers {
            assert!(
                ["set-cookie", "location", "etag", "x-consistency-token"]
                    .iter()
                    .all(|name| !answer.1.iter().any(|(header, _)| header == name)),
                "{path}: {:?}",
                answer.1
            );
        }
    }
    assert_eq!(
        count(&pool, "LoginFailed").await,
        2,
        "one LoginFailed per failure"
    );
    let login = comparable(
        &api.post("login", &json!({ "email": unknown, "password": PASSWORD }))
            .await,
    );
    assert_eq!(login.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login.2["type"], "/problems/invalid-credentials");
    assert_eq!(login.2["detail"], "The email or password is incorrect.");

    // What the worker then did: the known address got `account_exists` and a reset link, the
    // unknown one got nothing (its registration made a new account, and nothing else).
    api.drain().await;
    mailbox.take(&known, "account_exists").await;
    mailbox.take(&known, "password_reset").await;
    mailbox.take(&unknown, "verify_email").await;
    assert!(
        mailbox
            .to(&unknown)
            .iter()
            .all(|mail| mail["template"] != "password_reset"),
        "{:?}",
        mailbox.to(&unknown)
    );
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn registration_refuses_weak_passwords_and_bad_addresses(pool: PgPool) {
    let api = instance(&pool, auth_settings());
    let email = address("weak");
    for (body, field) in [
        (json!({ "email": email, "password": "short" }), "password"),
        (json!({ "email": email, "password": email }), "password"),
        (
            json!({ "email": "no-at-sign", "password": PASSWORD }),
            "email",
        ),
    ] {
        let answer = api.post("register", &body).await;
        let problem = answer.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let unknown_field = api
        .post(
            "register",
            &json!({ "email": email, "password": PASSWORD, "admin": true }),
        )
        .await;
    unknown_field.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_requests")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queued, 0);
}
