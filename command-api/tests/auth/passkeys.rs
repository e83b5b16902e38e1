//! Passkeys end to end (ACCOUNTS.md, "WebAuthn (passkeys, first wave)"): real ceremonies driven
//! by webauthn-authenticator-rs's software passkey, on two instances so that one finishes what
//! the other began.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use crate::helpers::*;

fn origin() -> Url {
    Url::parse("http://localhost:8080").unwrap()
}

async fn as_bearer(api: &Instance, access: &str, path: &str, body: &Value) -> Answer {
    api.call(
        path,
        body,
        &[("authorization", &format!("Bearer {access}"))],
    )
    .await
}

/// Registers a passkey made by `authenticator` for the signed-in `session`; returns its id.
async fn register(
    begin: &Instance,
    finish: &Instance,
    session: &Session,
    authenticator: &mut SoftPasskey,
) -> String {
    let options = as_bearer(
        begin,
        &session.access,
        "webauthn/register/options",
        &json!({ "password": PASSWORD, "label": "laptop" }),
    )
    .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.text());
    assert_eq!(options.header("cache-control"), Some("no-store"));
    let body = options.json();
    assert_eq!(
        body["options"]["publicKey"]["authenticatorSelection"]["userVerification"], "required",
        "{body}"
    );
    let creation: CreationChallengeResponse =
        serde_json::from_value(body["options"].clone()).unwrap();
    let credential = authenticator.do_registration(origin(), creation).unwrap();
    let finished = as_bearer(
        finish,
        &session.access,
        "webauthn/register/finish",
        &json!({ "challenge_id": body["challenge_id"], "credential": credential }),
    )
    .await;
    assert_eq!(finished.status, StatusCode::CREATED, "{}", finished.text());
    let answer = finished.json();
    assert_eq!(answer["label"], "laptop");
    assert!(answer["consistency_token"].is_string());
    // The same ceremony never finishes twice.
    let again = as_bearer(
        finish,
        &session.access,
        "webauthn/register/finish",
        &json!({ "challenge_id": body["challenge_id"], "credential": credential }),
    )
    .await;
    let problem = again.problem(StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "/problems/invalid-token", "{problem}");
    answer["id"].as_str().unwrap().to_owned()
}

/// Begins a sign-in as `email`: the challenge id and the options.
async fn login_options(api: &Instance, email: &str) -> (String, Value) {
    let answer = api
        .post("webauthn/login/options", &json!({ "email": email }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    (
        body["challenge_id"].as_str().unwrap().to_owned(),
        body["options"].clone(),
    )
}

fn allowed_ids(options: &Value) -> Vec<String> {
    options["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_passkey_registered_on_one_replica_signs_in_on_another_as_two_factors(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let settings = auth_settings();
    let first = instance(&pool, settings.clone());
    let second = instance(&pool, settings);
    let email = address("passkey");
    let account_id = registered(&first, &mut mailbox, &email).await;
    let session = first.login(&email, PASSWORD).await;
    let mut authenticator = SoftPasskey::new(true);

    // A wrong password begins nothing.
    let refused = as_bearer(
        &first,
        &session.access,
        "webauthn/register/options",
        &json!({ "password": "wrong password entirely" }),
    )
    .await;
    let problem = refused.problem(StatusCode::FORBIDDEN);
    assert_eq!(problem["type"], "/problems/step-up-failed", "{problem}");

    let id = register(&first, &second, &session, &mut authenticator).await;
    mailbox.take(&email, "mfa_changed").await;
    assert!(
        stream(&pool, "Account", &account_id)
            .await
            .contains(&"PasskeyRegistered".to_owned())
    );
    let actor: String = sqlx::query_scalar(
        "SELECT metadata->>'actor' FROM events WHERE event_type = 'PasskeyRegistered'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(actor, account_id);

    // Address first: the options name the passkey; another replica finishes.
    let (challenge_id, options) = login_options(&first, &email).await;
    assert_eq!(allowed_ids(&options), std::slice::from_ref(&id));
    let request: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let assertion = authenticator.do_authentication(origin(), request).unwrap();
    let signed = second
        .post(
            "webauthn/login/finish",
            &json!({ "challenge_id": challenge_id, "credential": assertion }),
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    let body = signed.json();
    assert_eq!(body["account_id"], account_id.as_str());
    let passkey_session = Session::of(&signed);
    let (method, amr): (String, Value) = sqlx::query_as(
        "SELECT payload->'LoginSucceeded'->>'method', payload->'LoginSucceeded'->'amr' \
           FROM events WHERE aggregate_type = 'Session' AND aggregate_id = $1",
    )
    .bind(passkey_session.id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(method, "passkey");
    assert_eq!(amr, json!(["hwk", "mfa"]));
    // The sign-in names its passkey, in the account's stream, with the account as actor.
    let (used, actor): (String, String) = sqlx::query_as(
        "SELECT payload->'PasskeyUsed'->>'credential_id', metadata->>'actor' FROM events \
          WHERE aggregate_type = 'Account' AND event_type = 'PasskeyUsed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (used.as_str(), actor.as_str()),
        (id.as_str(), account_id.as_str())
    );

    // The same assertion replayed is the generic 401 and a failed login.
    let replayed = second
        .post(
            "webauthn/login/finish",
            &json!({ "challenge_id": challenge_id, "credential": assertion }),
        )
        .await;
    let problem = replayed.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        problem["type"], "/problems/invalid-credentials",
        "{problem}"
    );
    assert_eq!(count(&pool, "LoginFailed").await, 1);

    // Removal needs the password, then the passkey no longer signs in.
    let path = format!("webauthn/credentials/{id}/remove");
    let removed = as_bearer(
        &first,
        &session.access,
        &path,
        &json!({ "password": PASSWORD }),
    )
    .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text());
    assert_eq!(removed.json()["id"], account_id.as_str());
    mailbox.take(&email, "mfa_changed").await;
    assert_eq!(count(&pool, "PasskeyRemoved").await, 1);
    let gone = as_bearer(
        &first,
        &session.access,
        &path,
        &json!({ "password": PASSWORD }),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text());
    let (_, options) = login_options(&first, &email).await;
    assert!(!allowed_ids(&options).contains(&id), "fake ids only now");
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_authenticator_without_user_verification_registers_nothing(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("no-uv");
    registered(&api, &mut mailbox, &email).await;
    let session = api.login(&email, PASSWORD).await;
    let options = as_bearer(
        &api,
        &session.access,
        "webauthn/register/options",
        &json!({ "password": PASSWORD }),
    )
    .await;
    let body = options.json();
    let creation: CreationChallengeResponse =
        serde_json::from_value(body["options"].clone()).unwrap();
    // Without user verification the soft authenticator either refuses the ceremony or answers
    // without the UV flag, which the server must refuse.
    if let Ok(credential) = SoftPasskey::new(false).do_registration(origin(), creation) {
        let finished = as_bearer(
            &api,
            &session.access,
            "webauthn/register/finish",
            &json!({ "challenge_id": body["challenge_id"], "credential": credential }),
        )
        .await;
        assert_eq!(
            finished.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            finished.text()
        );
    }
    assert_eq!(count(&pool, "PasskeyRegistered").await, 0);
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_unknown_address_gets_stable_fake_credential_ids_and_the_generic_401(pool: PgPool) {
    let api = instance(&pool, auth_settings());
    let email = address("nobody");
    let (challenge_id, options) = login_options(&api, &email).await;
    let (_, again) = login_options(&api, &email).await;
    assert_eq!(allowed_ids(&options), allowed_ids(&again), "stable");
    // Per address: webauthn-rs draws how many ids from a spread (none for about 15 % of
    // addresses), so one other address may match by chance, ten all alike would not.
    let mut others = Vec::new();
    for n in 0..10 {
        let (_, other) = login_options(&api, &address(&format!("someone-else-{n}"))).await;
        others.push(allowed_ids(&other));
    }
    assert!(
        others.iter().any(|ids| *ids != allowed_ids(&options)),
        "ten other addresses got the same ids: {others:?}"
    );
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert_eq!(options["publicKey"]["rpId"], "localhost");
    assert_ne!(
        options["publicKey"]["challenge"], again["publicKey"]["challenge"],
        "a fresh challenge each time"
    );
    // Parses as what a real account gets.
    let _: RequestChallengeResponse = serde_json::from_value(options).unwrap();

    let failed = api
        .post(
            "webauthn/login/finish",
            &json!({ "challenge_id": challenge_id, "credential": { "id": "x" } }),
        )
        .await;
    let problem = failed.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        problem["type"], "/problems/invalid-credentials",
        "{problem}"
    );
    assert_eq!(count(&pool, "LoginFailed").await, 1);
}
