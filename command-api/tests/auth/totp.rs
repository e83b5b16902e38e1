//! TOTP and recovery codes end to end (ACCOUNTS.md, "TOTP and recovery codes"): setup, enable,
//! the `mfa-required` login and `login/mfa`, single use of codes, recovery codes, disable and
//! regeneration, step-up failures and the rate limits on wrong codes. Codes are computed from
//! the shown secret as an authenticator app would.

use auth::totp::{TotpSecret, step_of};
use axum::http::StatusCode;
use command_api::auth::settings::Limit;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

/// The current step, as the server counts it.
fn now_step() -> u64 {
    step_of(u64::try_from(chrono::Utc::now().timestamp()).unwrap())
}

/// An account signed in, with its session.
struct Signed {
    email: String,
    account_id: String,
    session: Session,
}

impl Signed {
    fn bearer(&self) -> String {
        format!("Bearer {}", self.session.access)
    }
}

async fn signed_in(api: &Instance, mailbox: &mut Mailbox, tag: &str) -> Signed {
    let email = address(tag);
    let account_id = registered(api, mailbox, &email).await;
    let session = api.login(&email, PASSWORD).await;
    Signed {
        email,
        account_id,
        session,
    }
}

/// POSTs `body` to `/api/v1/auth/<path>` as `who`.
async fn as_account(api: &Instance, who: &Signed, path: &str, body: &Value) -> Answer {
    api.call(path, body, &[("authorization", &who.bearer())])
        .await
}

/// Sets TOTP up and returns the shown secret.
async fn set_up(api: &Instance, who: &Signed) -> TotpSecret {
    let answer = as_account(api, who, "totp/setup", &json!({ "password": PASSWORD })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let body = answer.json();
    let shown = body["secret"].as_str().unwrap();
    assert_eq!(shown.len(), 32, "{body}");
    assert!(!shown.contains('='), "unpadded: {shown}");
    assert_eq!(
        body["otpauth_uri"],
        format!(
            "otpauth://totp/Chronicle:{}?secret={shown}&issuer=Chronicle&algorithm=SHA1&digits=6&period=30",
            who.email
        )
    );
    assert!(body["expires_at"].is_string());
    TotpSecret::from_base32(shown).unwrap()
}

/// Sets TOTP up and enables it with the code of `step`; returns the secret and the codes.
async fn enabled(api: &Instance, who: &Signed, step: u64) -> (TotpSecret, Vec<String>) {
    let secret = set_up(api, who).await;
    let answer = as_account(
        api,
        who,
        "totp/enable",
        &json!({ "code": secret.code_at_step(step) }),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let body = answer.json();
    assert_eq!(body["id"], who.account_id.as_str());
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// Logs in with the password and expects `mfa-required`; returns the `mfa_token`.
async fn mfa_required(api: &Instance, email: &str) -> String {
    let answer = api
        .post("login", &json!({ "email": email, "password": PASSWORD }))
        .await;
    let body = answer.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "/problems/mfa-required", "{body}");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert_eq!(body["expires_in"], 300);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert!(answer.header("set-cookie").is_none(), "no session yet");
    body["mfa_token"].as_str().unwrap().to_owned()
}

fn invalid_credentials(answer: &Answer) {
    let body = answer.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "/problems/invalid-credentials", "{body}");
}

fn step_up_failed(answer: &Answer) {
    let body = answer.problem(StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "/problems/step-up-failed", "{body}");
}

/// Settings whose login limits no test here reaches unless it means to.
fn roomy() -> command_api::auth::settings::AuthSettings {
    let mut settings = auth_settings();
    settings.rate_limits.login_address_ip = Limit::per(100, 900);
    settings.rate_limits.login_address = Limit::per(100, 3600);
    settings
}

async fn login_method(pool: &PgPool, session_id: &str) -> Value {
    sqlx::query_scalar(
        "SELECT payload->'LoginSucceeded' FROM events \
          WHERE aggregate_type = 'Session' AND aggregate_id = $1 AND event_type = 'LoginSucceeded'",
    )
    .bind(session_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn setup_enable_login_with_codes_once_each_then_disable(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, roomy());
    let ada = signed_in(&api, &mut mailbox, "totp").await;

    // A second setup replaces the first secret: only the newer one enables.
    let replaced = set_up(&api, &ada).await;
    let secret = set_up(&api, &ada).await;
    assert_ne!(replaced, secret);
    let step = now_step();
    step_up_failed(
        &as_account(
            &api,
            &ada,
            "totp/enable",
            &json!({ "code": replaced.code_at_step(step) }),
        )
        .await,
    );
    let enable = as_account(
        &api,
        &ada,
        "totp/enable",
        &json!({ "code": secret.code_at_step(step) }),
    )
    .await;
    assert_eq!(enable.status, StatusCode::OK, "{}", enable.text());
    let codes: Vec<String> =
        serde_json::from_value(enable.json()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    for code in &codes {
        assert_eq!(code.len(), 14, "{code}");
        assert!(auth::recovery::normalize(code).is_some(), "{code}");
    }
    mailbox.take(&ada.email, "mfa_changed").await;
    // The secret is sealed at rest: its bytes appear nowhere in the row.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret FROM auth_totp")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!sealed.windows(20).any(|w| w == secret.as_bytes()));
    let hashes: Vec<String> = sqlx::query_scalar("SELECT code_hash FROM auth_recovery_codes")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 10);
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")));

    // On already: neither setup nor enable again.
    for (path, body) in [
        ("totp/setup", json!({ "password": PASSWORD })),
        (
            "totp/enable",
            json!({ "code": secret.code_at_step(step + 1) }),
        ),
    ] {
        let answer = as_account(&api, &ada, path, &body).await;
        assert_eq!(
            answer.problem(StatusCode::CONFLICT)["type"],
            "/problems/totp-already-enabled"
        );
    }

    // The password alone no longer signs in; the code enable used is spent.
    let mfa_token = mfa_required(&api, &ada.email).await;
    let reused = api
        .post(
            "login/mfa",
            &json!({ "mfa_token": mfa_token, "code": secret.code_at_step(step) }),
        )
        .await;
    invalid_credentials(&reused);
    let signed = api
        .post(
            "login/mfa",
            &json!({ "mfa_token": mfa_token, "code": secret.code_at_step(step + 1) }),
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    assert_eq!(signed.header("cache-control"), Some("no-store"));
    let session = Session::of(&signed);
    let succeeded = login_method(&pool, &session.id.to_string()).await;
    assert_eq!(succeeded["method"], "password+totp");
    assert_eq!(succeeded["amr"], json!(["pwd", "otp", "mfa"]));
    // The token is spent, and the older code never works after the newer one.
    invalid_credentials(
        &api.post(
            "login/mfa",
            &json!({ "mfa_token": mfa_token, "code": secret.code_at_step(step + 1) }),
        )
        .await,
    );
    let second = mfa_required(&api, &ada.email).await;
    invalid_credentials(
        &api.post(
            "login/mfa",
            &json!({ "mfa_token": second, "code": secret.code_at_step(step) }),
        )
        .await,
    );

    // A recovery code works once, however it is typed.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let recovered = api
        .post(
            "login/mfa",
            &json!({ "mfa_token": second, "recovery_code": typed }),
        )
        .await;
    assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.text());
    let by_code = Session::of(&recovered);
    assert_eq!(
        login_method(&pool, &by_code.id.to_string()).await["method"],
        "password+recovery_code"
    );
    let remaining: Value = sqlx::query_scalar(
        "SELECT payload->'RecoveryCodeUsed'->'remaining' FROM events \
          WHERE event_type = 'RecoveryCodeUsed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(remaining, 9);
    let third = mfa_required(&api, &ada.email).await;
    invalid_credentials(
        &api.post(
            "login/mfa",
            &json!({ "mfa_token": third, "recovery_code": codes[0] }),
        )
        .await,
    );

    // Disable: the password and a second factor, re-proven.
    let with_used = json!({ "password": PASSWORD, "recovery_code": codes[0] });
    step_up_failed(&as_account(&api, &ada, "totp/disable", &with_used).await);
    let wrong_password =
        json!({ "password": "not the password at all", "recovery_code": codes[1] });
    step_up_failed(&as_account(&api, &ada, "totp/disable", &wrong_password).await);
    let disabled = as_account(
        &api,
        &ada,
        "totp/disable",
        &json!({ "password": PASSWORD, "recovery_code": codes[1] }),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text());
    assert!(disabled.header("x-consistency-token").is_some());
    mailbox.take(&ada.email, "mfa_changed").await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_recovery_codes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "disable deletes the set");
    // The password alone signs in again.
    api.login(&ada.email, PASSWORD).await;
    relay.stop().await;

    assert_eq!(
        stream(&pool, "Account", &ada.account_id).await,
        [
            "AccountRegistered",
            "VerificationRequested",
            "EmailVerified",
            "TotpEnabled",
            "RecoveryCodesGenerated",
            "RecoveryCodeUsed",
            "RecoveryCodeUsed",
            "TotpDisabled",
        ]
    );
    let failed: Vec<Value> = sqlx::query_scalar(
        "SELECT payload->'LoginFailed' FROM events WHERE event_type = 'LoginFailed'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // The reused code, the spent token, the older code, the reused recovery code.
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(
        failed.iter().all(|f| f["reason"] == "mfa_failed"),
        "{failed:?}"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn regenerated_recovery_codes_replace_the_old_set_and_may_end_other_sessions(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, roomy());
    let ada = signed_in(&api, &mut mailbox, "regen").await;
    let other = api.login(&ada.email, PASSWORD).await;
    let step = now_step();
    let (secret, old) = enabled(&api, &ada, step).await;
    let answer = as_account(
        &api,
        &ada,
        "recovery-codes",
        &json!({
            "password": PASSWORD,
            "code": secret.code_at_step(step + 1),
            "revoke_other_sessions": true,
        }),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let fresh: Vec<String> =
        serde_json::from_value(answer.json()["recovery_codes"].clone()).unwrap();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|code| !old.contains(code)));
    // The other session ended; this one goes on.
    invalid_refresh(&api.refresh(&other.refresh).await);
    let token = mfa_required(&api, &ada.email).await;
    invalid_credentials(
        &api.post(
            "login/mfa",
            &json!({ "mfa_token": token, "recovery_code": old[0] }),
        )
        .await,
    );
    let signed = api
        .post(
            "login/mfa",
            &json!({ "mfa_token": token, "recovery_code": fresh[9] }),
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    mailbox.take(&ada.email, "mfa_changed").await;
    mailbox.take(&ada.email, "mfa_changed").await;
    relay.stop().await;
    assert_eq!(
        stream(&pool, "Account", &ada.account_id).await[3..],
        [
            "TotpEnabled",
            "RecoveryCodesGenerated",
            "RecoveryCodesGenerated",
            "RecoveryCodeUsed",
        ]
    );
    assert_eq!(
        stream(&pool, "Session", &other.id.to_string()).await,
        ["LoginSucceeded", "SessionRevoked"]
    );
}

fn invalid_refresh(answer: &Answer) {
    let body = answer.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "/problems/invalid-refresh-token", "{body}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn factor_changes_need_a_session_the_password_and_a_right_code_and_refusals_write_nothing(
    pool: PgPool,
) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, roomy());
    let ada = signed_in(&api, &mut mailbox, "stepup").await;
    let events_before = count_events(&pool).await;

    // No session: 401 for each.
    for path in [
        "totp/setup",
        "totp/enable",
        "totp/disable",
        "recovery-codes",
    ] {
        let answer = api
            .post(path, &json!({ "password": PASSWORD, "code": "123456" }))
            .await;
        assert_eq!(
            answer.problem(StatusCode::UNAUTHORIZED)["type"],
            "/problems/unauthenticated",
            "{path}"
        );
    }
    // Out of order: enable with nothing pending; disable and regenerate with TOTP off.
    let answer = as_account(&api, &ada, "totp/enable", &json!({ "code": "123456" })).await;
    assert_eq!(
        answer.problem(StatusCode::CONFLICT)["type"],
        "/problems/no-pending-totp"
    );
    for path in ["totp/disable", "recovery-codes"] {
        let answer = as_account(
            &api,
            &ada,
            path,
            &json!({ "password": PASSWORD, "code": "123456" }),
        )
        .await;
        assert_eq!(
            answer.problem(StatusCode::CONFLICT)["type"],
            "/problems/no-pending-totp",
            "{path}"
        );
    }
    // Shapes: a code is 6 digits; exactly one factor.
    for body in [
        json!({ "password": PASSWORD, "code": "12345a" }),
        json!({ "password": PASSWORD }),
        json!({ "password": PASSWORD, "code": "123456", "recovery_code": "aaaa-bbbb-cccc" }),
        json!({ "password": PASSWORD, "code": "123456", "extra": true }),
    ] {
        let answer = as_account(&api, &ada, "totp/disable", &body).await;
        answer.problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Wrong password at setup.
    step_up_failed(
        &as_account(
            &api,
            &ada,
            "totp/setup",
            &json!({ "password": "not the password at all" }),
        )
        .await,
    );
    let step = now_step();
    let (secret, codes) = enabled(&api, &ada, step).await;
    let after_enable = count_events(&pool).await;
    // Right password, wrong or spent code; wrong password, right code.
    for body in [
        json!({ "password": PASSWORD, "code": secret.code_at_step(step + 5) }),
        json!({ "password": PASSWORD, "code": secret.code_at_step(step) }),
        json!({ "password": PASSWORD, "recovery_code": "aaaa-bbbb-cccc" }),
        json!({ "password": "not the password at all", "code": secret.code_at_step(step + 1) }),
    ] {
        for path in ["totp/disable", "recovery-codes"] {
            step_up_failed(&as_account(&api, &ada, path, &body).await);
        }
    }
    assert_eq!(
        count_events(&pool).await,
        after_enable,
        "refusals append nothing"
    );
    let scrape = test_support::Call::get("/metrics").send(&api.app).await;
    let step_up = test_support::exposition::value(
        &scrape.text(),
        "chronicle_security_events_total",
        &[("kind", "step_up_failed")],
    );
    assert!(step_up >= Some(9.0), "{step_up:?}");
    assert!(after_enable > events_before);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_recovery_codes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 10);
    assert!(codes.iter().all(|c| auth::recovery::normalize(c).is_some()));
    // TOTP is still on.
    mfa_required(&api, &ada.email).await;
    relay.stop().await;
}

async fn count_events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn wrong_codes_count_as_failed_logins_and_end_the_mfa_token(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    // Default limits: 5 failures per address and IP in 15 minutes.
    let api = instance(&pool, auth_settings());
    let ada = signed_in(&api, &mut mailbox, "wrongcodes").await;
    let step = now_step();
    let (secret, _) = enabled(&api, &ada, step).await;
    let token = mfa_required(&api, &ada.email).await;
    let spare = mfa_required(&api, &ada.email).await;
    for _ in 0..5 {
        invalid_credentials(
            &api.post(
                "login/mfa",
                &json!({ "mfa_token": token, "code": secret.code_at_step(step + 7) }),
            )
            .await,
        );
    }
    // A live token with the right code is refused before the code is checked, and so is the
    // right password: 429, and nothing appended.
    let events_before = count_events(&pool).await;
    let limited = api
        .post(
            "login/mfa",
            &json!({ "mfa_token": spare, "code": secret.code_at_step(step + 1) }),
        )
        .await;
    assert_eq!(
        limited.problem(StatusCode::TOO_MANY_REQUESTS)["type"],
        "/problems/rate-limited"
    );
    assert!(limited.header("retry-after").is_some());
    let password = api
        .post(
            "login",
            &json!({ "email": ada.email, "password": PASSWORD }),
        )
        .await;
    password.problem(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(count_events(&pool).await, events_before);
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'LoginFailed' \
            AND payload->'LoginFailed'->>'reason' = 'mfa_failed' \
            AND payload->'LoginFailed'->>'method' = 'password+totp' \
            AND payload->'LoginFailed'->>'account_id' = $1",
    )
    .bind(&ada.account_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failed, 5);
    // The threat counter saw them (the recorder is the process's: at least ours).
    let scrape = test_support::Call::get("/metrics").send(&api.app).await;
    let mfa_failed = test_support::exposition::value(
        &scrape.text(),
        "chronicle_security_events_total",
        &[("kind", "mfa_failed")],
    );
    assert!(mfa_failed >= Some(5.0), "{mfa_failed:?}");

    // With room in the limits, 5 wrong codes still end the token itself.
    let roomy_api = instance(&pool, roomy());
    let bob = signed_in(&roomy_api, &mut mailbox, "deadtoken").await;
    let (bob_secret, _) = enabled(&roomy_api, &bob, step).await;
    let token = mfa_required(&roomy_api, &bob.email).await;
    for _ in 0..5 {
        invalid_credentials(
            &roomy_api
                .post(
                    "login/mfa",
                    &json!({ "mfa_token": token, "code": bob_secret.code_at_step(step + 7) }),
                )
                .await,
        );
    }
    invalid_credentials(
        &roomy_api
            .post(
                "login/mfa",
                &json!({ "mfa_token": token, "code": bob_secret.code_at_step(step + 1) }),
            )
            .await,
    );
    // A new token works with the same code.
    let fresh = mfa_required(&roomy_api, &bob.email).await;
    let signed = roomy_api
        .post(
            "login/mfa",
            &json!({ "mfa_token": fresh, "code": bob_secret.code_at_step(step + 1) }),
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn no_totp_secret_or_code_reaches_an_event_a_mail_or_a_log_line(pool: PgPool) {
    let captured = crate::secrets::Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, roomy());
    let ada = signed_in(&api, &mut mailbox, "totpsecret").await;
    let step = now_step();
    let (secret, codes) = enabled(&api, &ada, step).await;
    let mut secrets = vec![secret.base32()];
    secrets.extend(codes.iter().cloned());
    secrets.extend(codes.iter().filter_map(|c| auth::recovery::normalize(c)));
    let token = mfa_required(&api, &ada.email).await;
    secrets.push(token.clone());
    let wrong = secret.code_at_step(step + 9);
    api.post("login/mfa", &json!({ "mfa_token": token, "code": wrong }))
        .await;
    let right = secret.code_at_step(step + 1);
    let signed = api
        .post("login/mfa", &json!({ "mfa_token": token, "code": right }))
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    let token = mfa_required(&api, &ada.email).await;
    secrets.push(token.clone());
    api.post(
        "login/mfa",
        &json!({ "mfa_token": token, "recovery_code": codes[3] }),
    )
    .await;
    let regenerated = as_account(
        &api,
        &ada,
        "recovery-codes",
        &json!({ "password": PASSWORD, "recovery_code": codes[4] }),
    )
    .await;
    assert_eq!(regenerated.status, StatusCode::OK, "{}", regenerated.text());
    let fresh: Vec<String> =
        serde_json::from_value(regenerated.json()["recovery_codes"].clone()).unwrap();
    secrets.extend(fresh);
    let mut mails = vec![
        mailbox.take(&ada.email, "mfa_changed").await,
        mailbox.take(&ada.email, "mfa_changed").await,
    ];
    mails.extend(mailbox.to(&ada.email));
    relay.stop().await;
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret FROM auth_totp")
        .fetch_one(&pool)
        .await
        .unwrap();
    secrets.push(sealed.iter().map(|b| format!("{b:02x}")).collect());
    let code_hashes: Vec<String> = sqlx::query_scalar("SELECT code_hash FROM auth_recovery_codes")
        .fetch_all(&pool)
        .await
        .unwrap();
    secrets.extend(code_hashes);

    let events: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || ' ' || metadata::text FROM events")
            .fetch_all(&pool)
            .await
            .unwrap();
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("INFO") || logs.contains("DEBUG"),
        "logs were captured"
    );
    let mails: Vec<String> = mails.iter().map(Value::to_string).collect();
    assert!(mails.iter().all(|m| !m.contains("\"token\"")), "{mails:?}");
    for secret in &secrets {
        for event in &events {
            assert!(
                !event.contains(secret.as_str()),
                "{secret} in event {event}"
            );
        }
        for mail in &mails {
            assert!(!mail.contains(secret.as_str()), "{secret} in mail {mail}");
        }
        assert!(!logs.contains(secret.as_str()), "{secret} in the logs");
    }
    // Six-digit codes are too short to search for everywhere; none is in an event.
    for event in &events {
        assert!(!event.contains(&format!("\"{right}\"")), "{event}");
        assert!(!event.contains(&format!("\"{wrong}\"")), "{event}");
    }
}
