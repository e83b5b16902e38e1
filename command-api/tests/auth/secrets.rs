//! No secret anywhere: not in any event's payload or metadata, not in any outbox row but the
//! one mail that carries a link, not in any log line (everything logged at TRACE, captured).

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

/// Log output collected in memory.
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn no_secret_reaches_the_log_the_outbox_or_a_log_line(pool: PgPool) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on one thread, so every task it spawns logs here too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("secret");
    let mut secrets = vec![PASSWORD.to_owned()];

    let answer = api
        .post("register", &json!({ "email": email, "password": PASSWORD }))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    api.drain().await;
    let verify = mailbox.take(&email, "verify_email").await;
    secrets.push(token_of(&verify));
    api.post("verify-email", &json!({ "token": token_of(&verify) }))
        .await;
    let session = api.login(&email, PASSWORD).await;
    secrets.extend([session.access.clone(), session.refresh.clone()]);
    let rotated = Session::of(&api.refresh(&session.refresh).await);
    secrets.extend([rotated.access.clone(), rotated.refresh.clone()]);
    api.refresh(&session.refresh).await; // the race
    api.post(
        "login",
        &json!({ "email": email, "password": "wrong password, surely" }),
    )
    .await;
    secrets.push("wrong password, surely".to_owned());
    api.post("password/forgot", &json!({ "email": email }))
        .await;
    api.drain().await;
    let reset = mailbox.take(&email, "password_reset").await;
    secrets.push(token_of(&reset));
    let new_password = "another fine passphrase";
    secrets.push(new_password.to_owned());
    let answer = api
        .post(
            "password/reset",
            &json!({ "token": token_of(&reset), "new_password": new_password }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let last = api.login(&email, new_password).await;
    secrets.extend([last.access.clone(), last.refresh.clone()]);
    api.call(
        "logout",
        &json!({}),
        &[("authorization", &format!("Bearer {}", last.access))],
    )
    .await;
    mailbox.take(&email, "password_changed").await;
    relay.stop().await;

    // Hashes are secrets too: the stored PHC strings and the token hashes, hex or not.
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM auth_credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    secrets.push(hash);
    secrets.push("$argon2".to_owned());
    let token_hashes: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT token_hash FROM auth_refresh_tokens UNION ALL SELECT token_hash FROM auth_mail_tokens",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!token_hashes.is_empty());
    for hash in token_hashes {
        secrets.push(hash.iter().map(|byte| format!("{byte:02x}")).collect());
    }

    let events: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || ' ' || metadata::text FROM events")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(events.len() > 10, "{events:?}");
    let outbox: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(o)::text FROM auth_mail_outbox o")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(outbox.is_empty(), "confirmed mail is deleted: {outbox:?}");
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("INFO") || logs.contains("DEBUG"),
        "logs were captured"
    );
    for secret in &secrets {
        for event in &events {
            assert!(
                !event.contains(secret.as_str()),
                "{secret} in event {event}"
            );
        }
        assert!(!logs.contains(secret.as_str()), "{secret} in the logs");
    }
    // Only mails with a link carry a token, and only their own.
    for mail in mailbox.to(&email) {
        let template = mail["template"].as_str().unwrap();
        assert_eq!(
            mail.get("token").is_some(),
            matches!(template, "verify_email" | "password_reset"),
            "{mail}"
        );
    }
}
