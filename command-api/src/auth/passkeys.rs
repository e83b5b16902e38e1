//! Passkeys (ACCOUNTS.md, "WebAuthn (passkeys, first wave)"): registration with the password
//! re-entered, address-first sign-in, removal, under `/api/v1/auth/webauthn`.
//!
//! Ceremony state (webauthn-rs's, serialised) lives in `auth_webauthn_ceremonies` for
//! `AUTH_WEBAUTHN_CEREMONY_TTL_SECS` and is taken by the one finish that uses it, so any replica
//! finishes what another began. Registered passkeys are rows of `auth_passkeys`, written in the
//! transaction that appends `PasskeyRegistered` or `PasskeyRemoved`
//! (docs/decisions/0016-passkeys.md).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use event_store::accounts::{self, Credentials};
use event_store::passkeys::{self, Ceremony, CeremonyKind, PasskeyError};
use events::EventMetadata;
use events::login_attempt::FailureReason;
use events::session::LoginMethod;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::Problem;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse,
};

use super::limits::{self, ip_of};
use super::problems;
use super::routes::{
    AccountAnswer, AuthErrors, Login, LoginAnswer, account_answer, auth_of, count_login, failure,
    invalid, login_refused, no_store, open_session_in, refuse_unusable, session_metadata, step_up,
};
use super::{AuthState, token};
use crate::domain::account::AccountCommand;
use crate::http::X_CONSISTENCY_TOKEN;
use crate::http::input::CommandInput;
use crate::http::openapi::{ProblemDoc, text};
use crate::state::AppState;

/// The label of a passkey registered without one.
const DEFAULT_LABEL: &str = "Passkey";
/// Longest label, in characters.
const MAX_LABEL: usize = 64;

/// The passkey routes, with their OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_options))
        .routes(routes!(register_finish))
        .routes(routes!(login_options))
        .routes(routes!(login_finish))
        .routes(routes!(remove))
}

/// `{password, label?}`: register/options.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterOptions {
    /// The account's password, re-entered.
    #[schema(format = Password, max_length = 256)]
    password: String,
    /// A name for the passkey (default `Passkey`).
    #[schema(schema_with = text::passkey_label)]
    label: Option<String>,
}

/// `{challenge_id, credential, label?}`: register/finish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    /// The `challenge_id` of register/options.
    challenge_id: Uuid,
    /// The authenticator's answer: `credential.toJSON()` (`RegistrationResponseJSON`).
    #[schema(value_type = Object)]
    credential: Value,
    /// A name for the passkey, replacing the one given at register/options.
    #[schema(schema_with = text::passkey_label)]
    label: Option<String>,
}

/// `{email}`: login/options.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginOptions {
    /// The address to sign in as.
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// `{challenge_id, credential}`: login/finish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    /// The `challenge_id` of login/options.
    challenge_id: Uuid,
    /// The authenticator's answer: `credential.toJSON()` (`AuthenticationResponseJSON`).
    #[schema(value_type = Object)]
    credential: Value,
}

/// `{password}`: removing a passkey.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovePasskey {
    /// The account's password, re-entered.
    #[schema(format = Password, max_length = 256)]
    password: String,
}

/// A ceremony begun: finish it with the same `challenge_id`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CeremonyAnswer {
    /// Names this ceremony at finish; it works once, within 5 minutes.
    challenge_id: Uuid,
    /// webauthn-rs's `CreationChallengeResponse` or `RequestChallengeResponse`: pass
    /// `options.publicKey` to `PublicKeyCredential.parseCreationOptionsFromJSON` (or
    /// `parseRequestOptionsFromJSON`).
    #[schema(value_type = Object)]
    options: Value,
}

/// A passkey registered.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyAnswer {
    /// The credential id, base64url.
    id: String,
    /// Its label.
    label: String,
    /// When it was registered.
    created_at: DateTime<Utc>,
    /// Pass as `X-Consistency-Token` to read this change.
    consistency_token: String,
}

/// The credential id as the ceremony JSON spells it.
fn credential_id(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

/// A label given, trimmed and bounded; `None` when none was given.
fn label_of(label: Option<String>) -> Result<Option<String>, Problem> {
    let Some(label) = label else {
        return Ok(None);
    };
    let label = label.trim().to_owned();
    if label.is_empty() || label.chars().count() > MAX_LABEL || label.chars().any(char::is_control)
    {
        return Err(invalid(
            "label",
            "must be 1 to 64 characters, no control characters",
        ));
    }
    Ok(Some(label))
}

fn internal(error: &dyn std::fmt::Display) -> Problem {
    Problem::internal(error)
}

fn ceremony_answer(challenge_id: Uuid, options: &impl Serialize) -> Result<Response, Problem> {
    let options = serde_json::to_value(options).map_err(|e| internal(&e))?;
    Ok(no_store(
        (
            StatusCode::OK,
            Json(CeremonyAnswer {
                challenge_id,
                options,
            }),
        )
            .into_response(),
    ))
}

/// Stores a ceremony for the ceremony TTL.
async fn begin(auth: &AuthState, kind: CeremonyKind, ceremony: &Ceremony) -> Result<Uuid, Problem> {
    let challenge_id = Uuid::new_v4();
    let expires_at = Utc::now() + auth.settings.webauthn.ceremony_ttl;
    let mut conn = auth.pool.acquire().await.map_err(|e| failure(e.into()))?;
    passkeys::begin(&mut conn, challenge_id, kind, ceremony, expires_at)
        .await
        .map_err(|e| failure(e.into()))?;
    Ok(challenge_id)
}

/// The caller's live session and usable account, or the 401 to answer.
async fn caller(
    auth: &AuthState,
    headers: &HeaderMap,
) -> Result<Result<(super::crypto::Bearer, Credentials), Response>, Problem> {
    super::mfa::caller(auth, headers).await
}

#[utoipa::path(
    post, path = "/api/v1/auth/webauthn/register/options", tag = "auth",
    request_body = RegisterOptions,
    responses(
        (status = 200, description = "A registration ceremony begun (5 minutes, once); `Cache-Control: no-store`", body = CeremonyAnswer),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-failed`: the password is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn register_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let (_, credentials) = match caller(&auth, &headers).await? {
        Ok(caller) => caller,
        Err(response) => return Ok(response),
    };
    let body: RegisterOptions = input.json()?;
    super::routes::bounded("password", &body.password)?;
    let label = label_of(body.label)?;
    step_up(&auth, &credentials, &body.password, &input.metadata).await?;
    let account_id = credentials.account_id;
    let existing = passkeys::of_account(&auth.pool, account_id)
        .await
        .map_err(|e| failure(e.into()))?;
    // The authenticator refuses to make a second passkey for an account it already holds one
    // of, rather than silently replacing it.
    let exclude = existing
        .iter()
        .filter_map(|stored| serde_json::from_value::<Passkey>(stored.passkey.clone()).ok())
        .map(|passkey| passkey.cred_id().clone())
        .collect::<Vec<_>>();
    let (options, registration) = auth
        .crypto
        .passkeys()
        .webauthn
        .start_passkey_registration(
            account_id,
            &credentials.email,
            &credentials.email,
            Some(exclude),
        )
        .map_err(|e| internal(&e))?;
    let ceremony = Ceremony {
        account_id: Some(account_id),
        state: Some(serde_json::to_value(&registration).map_err(|e| internal(&e))?),
        label,
        email: None,
    };
    let challenge_id = begin(&auth, CeremonyKind::Register, &ceremony).await?;
    ceremony_answer(challenge_id, &options)
}

#[utoipa::path(
    post, path = "/api/v1/auth/webauthn/register/finish", tag = "auth",
    request_body = RegisterFinish,
    responses(
        (status = 201, description = "The passkey is registered; `PasskeyRegistered` appended, `mfa_changed` mailed", body = PasskeyAnswer),
        (status = 400, description = "`invalid-token`: the `challenge_id` is unknown, expired, spent or another account's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn register_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let (bearer, credentials) = match caller(&auth, &headers).await? {
        Ok(caller) => caller,
        Err(response) => return Ok(response),
    };
    let body: RegisterFinish = input.json()?;
    let label = label_of(body.label)?;
    let answer: RegisterPublicKeyCredential = serde_json::from_value(body.credential)
        .map_err(|_| invalid("credential", "must be a RegistrationResponseJSON"))?;
    let account_id = credentials.account_id;
    let db = |e: sqlx::Error| failure(e.into());
    // Taken before it is checked: a ceremony is spent by its first finish, right or wrong.
    let ceremony = passkeys::take(&auth.pool, body.challenge_id, CeremonyKind::Register)
        .await
        .map_err(db)?
        .filter(|ceremony| ceremony.account_id == Some(account_id));
    let Some((ceremony, Some(state))) = ceremony.map(|c| {
        let state = c.state.clone();
        (c, state)
    }) else {
        return Err(invalid_challenge());
    };
    let registration: PasskeyRegistration =
        serde_json::from_value(state).map_err(|e| internal(&e))?;
    let passkey = auth
        .crypto
        .passkeys()
        .webauthn
        .finish_passkey_registration(&answer, &registration)
        .map_err(|_| invalid("credential", "the authenticator's answer does not verify"))?;
    let id = credential_id(passkey.cred_id());
    let label = label
        .or(ceremony.label)
        .unwrap_or_else(|| DEFAULT_LABEL.to_owned());
    let stored = serde_json::to_value(&passkey).map_err(|e| internal(&e))?;
    let metadata = session_metadata(&input.metadata, account_id, bearer.session_id);
    let mut tx = auth.pool.begin().await.map_err(db)?;
    let created_at = match passkeys::insert(&mut tx, &id, account_id, &label, &stored).await {
        Ok(created_at) => created_at,
        Err(PasskeyError::Taken) => {
            return Err(invalid("credential", "this passkey is registered already"));
        }
        Err(PasskeyError::Database(e)) => return Err(db(e)),
    };
    auth.mail(&mut tx, "mfa_changed", &credentials.email, account_id, None)
        .await
        .map_err(failure)?;
    let staged = auth
        .stage_account(
            account_id,
            AccountCommand::RegisterPasskey {
                credential_id: id.clone(),
                label: label.clone(),
            },
            &metadata,
        )
        .await
        .map_err(failure)?;
    let position = auth.commit(tx, &staged.events).await.map_err(failure)?;
    let consistency_token = token(position);
    let mut response = (
        StatusCode::CREATED,
        Json(PasskeyAnswer {
            id,
            label,
            created_at,
            consistency_token: consistency_token.clone(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&consistency_token) {
        response.headers_mut().insert(X_CONSISTENCY_TOKEN, value);
    }
    Ok(response)
}

/// 400 `invalid-token` for a ceremony that cannot be finished.
fn invalid_challenge() -> Problem {
    problems::invalid_token().detail("The challenge is unknown, expired or already used.")
}

/// Options no authenticator can answer, shaped like a real account's: the address's fake,
/// stable credential ids and a fresh challenge.
fn fake_options(auth: &AuthState, email: &str) -> Result<RequestChallengeResponse, Problem> {
    let party = auth.crypto.passkeys();
    let ids = party
        .fake_ids
        .generate(email.as_bytes())
        .map_err(|e| internal(&e))?;
    let mut challenge = vec![0; 32];
    rand::rng().fill_bytes(&mut challenge);
    let options = serde_json::json!({
        "publicKey": {
            "challenge": URL_SAFE_NO_PAD.encode(&challenge),
            "timeout": party.timeout_ms,
            "rpId": auth.settings.webauthn.rp_id,
            "allowCredentials": ids
                .iter()
                .map(|id| serde_json::json!({"type": "public-key", "id": URL_SAFE_NO_PAD.encode(id)}))
                .collect::<Vec<_>>(),
            "userVerification": "required",
        }
    });
    serde_json::from_value(options).map_err(|e| internal(&e))
}

#[utoipa::path(
    post, path = "/api/v1/auth/webauthn/login/options", tag = "auth",
    request_body = LoginOptions,
    responses(
        (status = 200, description = "A sign-in ceremony begun (5 minutes, once); the same shape whether or not the address has passkeys; `Cache-Control: no-store`", body = CeremonyAnswer),
        AuthErrors,
    )
)]
async fn login_options(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let body: LoginOptions = input.json()?;
    let email = super::crypto::normalize_email(&body.email).map_err(|r| invalid("email", r))?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    limits::anonymous(&auth.pool, &auth.settings.rate_limits, &ip)
        .await
        .map_err(failure)??;
    let db = |e: sqlx::Error| failure(e.into());
    let credentials = accounts::by_email(&auth.pool, &email).await.map_err(db)?;
    let stored = match &credentials {
        Some(credentials) => passkeys::of_account(&auth.pool, credentials.account_id)
            .await
            .map_err(db)?,
        None => Vec::new(),
    };
    let keys = stored
        .iter()
        .filter_map(|stored| serde_json::from_value::<Passkey>(stored.passkey.clone()).ok())
        .collect::<Vec<_>>();
    let (options, ceremony) = match credentials {
        Some(credentials) if !keys.is_empty() => {
            let (options, authentication) = auth
                .crypto
                .passkeys()
                .webauthn
                .start_passkey_authentication(&keys)
                .map_err(|e| internal(&e))?;
            let state = serde_json::to_value(&authentication).map_err(|e| internal(&e))?;
            let ceremony = Ceremony {
                account_id: Some(credentials.account_id),
                state: Some(state),
                label: None,
                email: Some(email),
            };
            (options, ceremony)
        }
        // Unknown addresses and accounts without passkeys look alike: stored too, so the
        // work and the answer are the same, and nothing can finish it.
        _ => {
            let ceremony = Ceremony {
                account_id: None,
                state: None,
                label: None,
                email: Some(email.clone()),
            };
            (fake_options(&auth, &email)?, ceremony)
        }
    };
    let challenge_id = begin(&auth, CeremonyKind::Login, &ceremony).await?;
    ceremony_answer(challenge_id, &options)
}

#[utoipa::path(
    post, path = "/api/v1/auth/webauthn/login/finish", tag = "auth",
    request_body = LoginFinish,
    responses(
        (status = 200, description = "Signed in with a passkey (two factors: `amr` `[\"hwk\", \"mfa\"]`); the refresh cookie is set", body = LoginAnswer),
        (status = 401, description = "`invalid-credentials`: the `challenge_id` is unknown, expired or spent, or the answer does not verify", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`email-not-verified` or `account-disabled` (a verified passkey only)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn login_finish(
    State(state): State<AppState>,
    jar: CookieJar,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let body: LoginFinish = input.json()?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    let limits = &auth.settings.rate_limits;
    limits::anonymous(&auth.pool, limits, &ip)
        .await
        .map_err(failure)??;
    let db = |e: sqlx::Error| failure(e.into());
    let ceremony = passkeys::take(&auth.pool, body.challenge_id, CeremonyKind::Login)
        .await
        .map_err(db)?;
    let email = ceremony.as_ref().and_then(|c| c.email.clone());
    if let Some(email) = &email {
        // Decided before the answer is checked, even a right one: a 429 appends nothing.
        if let Err(over) = limits::login_allowed(&auth.pool, limits, email, &ip)
            .await
            .map_err(failure)?
        {
            count_login("rate_limited");
            return Err(over);
        }
    }
    let known = match ceremony.as_ref().and_then(|c| c.account_id) {
        Some(account_id) => accounts::by_id(&auth.pool, account_id).await.map_err(db)?,
        None => None,
    };
    let verified = match (&ceremony, &known) {
        (
            Some(Ceremony {
                state: Some(state), ..
            }),
            Some(credentials),
        ) => verify_assertion(&auth, state, &body.credential, credentials.account_id).await?,
        _ => None,
    };
    let (Some(credentials), Some((id, updated))) = (known.clone(), verified) else {
        return Err(login_refused(
            &auth,
            email.as_deref(),
            &ip,
            known.map(|c| c.account_id),
            LoginMethod::Passkey,
            FailureReason::InvalidCredentials,
            &input.metadata,
        )
        .await?);
    };
    refuse_unusable(&auth, &credentials, LoginMethod::Passkey, &input.metadata).await?;
    let mut tx = auth.pool.begin().await.map_err(db)?;
    passkeys::used(&mut tx, &id, &updated).await.map_err(db)?;
    // Which passkey signed in is what the credentials list shows as `last_used_at`.
    let metadata = EventMetadata {
        actor: credentials.account_id.to_string(),
        ..input.metadata.clone()
    };
    let used = auth
        .stage_account(
            credentials.account_id,
            AccountCommand::UsePasskey { credential_id: id },
            &metadata,
        )
        .await
        .map_err(failure)?;
    let login = Login {
        credentials: &credentials,
        method: LoginMethod::Passkey,
        amr: vec!["hwk".to_owned(), "mfa".to_owned()],
    };
    open_session_in(&auth, jar, tx, used.events, login, &input.metadata).await
}

/// Checks a sign-in answer against the ceremony's state and the account's passkeys: the
/// credential id and its updated state (counter) when it verifies with user verification.
async fn verify_assertion(
    auth: &AuthState,
    state: &Value,
    credential: &Value,
    account_id: Uuid,
) -> Result<Option<(String, Value)>, Problem> {
    let Ok(answer) = serde_json::from_value::<PublicKeyCredential>(credential.clone()) else {
        return Ok(None);
    };
    let authentication: PasskeyAuthentication =
        serde_json::from_value(state.clone()).map_err(|e| internal(&e))?;
    let Ok(result) = auth
        .crypto
        .passkeys()
        .webauthn
        .finish_passkey_authentication(&answer, &authentication)
    else {
        return Ok(None);
    };
    if !result.user_verified() {
        return Ok(None);
    }
    let id = credential_id(result.cred_id());
    let stored = passkeys::of_account(&auth.pool, account_id)
        .await
        .map_err(|e| failure(e.into()))?;
    let Some(row) = stored.into_iter().find(|row| row.credential_id == id) else {
        return Ok(None);
    };
    let mut passkey: Passkey = serde_json::from_value(row.passkey).map_err(|e| internal(&e))?;
    passkey.update_credential(&result);
    let updated = serde_json::to_value(&passkey).map_err(|e| internal(&e))?;
    Ok(Some((id, updated)))
}

#[utoipa::path(
    post, path = "/api/v1/auth/webauthn/credentials/{id}/remove", tag = "auth",
    params(("id" = String, Path, description = "The credential id, base64url")),
    request_body = RemovePasskey,
    responses(
        (status = 200, description = "The passkey is removed; `PasskeyRemoved` appended, `mfa_changed` mailed", body = AccountAnswer),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-failed`: the password is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The account has no passkey with this id", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let (bearer, credentials) = match caller(&auth, &headers).await? {
        Ok(caller) => caller,
        Err(response) => return Ok(response),
    };
    let body: RemovePasskey = input.json()?;
    super::routes::bounded("password", &body.password)?;
    step_up(&auth, &credentials, &body.password, &input.metadata).await?;
    let account_id = credentials.account_id;
    let metadata = session_metadata(&input.metadata, account_id, bearer.session_id);
    let db = |e: sqlx::Error| failure(e.into());
    let mut tx = auth.pool.begin().await.map_err(db)?;
    if !passkeys::remove(&mut tx, account_id, &id)
        .await
        .map_err(db)?
    {
        return Err(Problem::not_found(
            "The account has no passkey with this id.",
        ));
    }
    auth.mail(&mut tx, "mfa_changed", &credentials.email, account_id, None)
        .await
        .map_err(failure)?;
    let staged = auth
        .stage_account(
            account_id,
            AccountCommand::RemovePasskey { credential_id: id },
            &metadata,
        )
        .await
        .map_err(failure)?;
    let position = auth.commit(tx, &staged.events).await.map_err(failure)?;
    Ok(account_answer(account_id, staged.version, position))
}
