//! TOTP and recovery codes (ACCOUNTS.md, "TOTP and recovery codes"): setup, enable, disable
//! and regeneration under `/api/v1/auth`, the `401 mfa-required` a right password gets when
//! TOTP is on, and `login/mfa`, which completes that login.
//!
//! Secrets stay beside the log (event_store::mfa): the TOTP secret sealed with AES-256-GCM,
//! each recovery code as its own Argon2id hash, the `mfa_token` as SHA-256. A code is spent in
//! the transaction that appends what it allowed, by claiming its step (or deleting the
//! recovery code's row) with a statement that only one request can win
//! (docs/decisions/0012-totp-and-recovery-codes.md).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use chrono::{DateTime, Utc};
use event_store::accounts::{self, Credentials};
use event_store::append::NewEvent;
use event_store::mfa::{self, Totp};
use events::EventMetadata;
use events::account::DisabledBy;
use events::login_attempt::FailureReason;
use events::session::{LoginMethod, RevokeReason};
use serde::{Deserialize, Serialize};
use service_kit::Problem;
use service_kit::security::{self, SecurityEvent};
use sqlx::{Postgres, Transaction};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::limits::{self, ip_of};
use super::problems;
use super::routes::{
    AccountAnswer, AuthErrors, Login, LoginAnswer, account_answer, auth_of, bounded, failure,
    invalid, live_bearer, login_refused, no_store, open_session_in, revoke_all, session_metadata,
    unauthenticated,
};
use super::{AuthState, crypto, token};
use crate::domain::account::AccountCommand;
use crate::http::X_CONSISTENCY_TOKEN;
use crate::http::input::CommandInput;
use crate::http::openapi::ProblemDoc;
use crate::state::AppState;

/// Wrong codes an `mfa_token` survives.
const MFA_MAX_FAILURES: i32 = 5;

/// The TOTP and recovery-code routes, with their OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(totp_setup))
        .routes(routes!(totp_enable))
        .routes(routes!(totp_disable))
        .routes(routes!(regenerate_recovery_codes))
        .routes(routes!(login_mfa))
}

/// `{password}`: totp/setup.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpSetup {
    /// The account's password, re-entered.
    #[schema(format = Password, max_length = 256)]
    password: String,
}

/// `{code, revoke_other_sessions?}`: totp/enable.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpEnable {
    /// A current code of the pending secret: 6 digits.
    #[schema(pattern = "^[0-9]{6}$")]
    code: String,
    /// End every other session of the account too (default false).
    #[serde(default)]
    revoke_other_sessions: bool,
}

/// `{password, code}` or `{password, recovery_code}`: totp/disable and recovery-codes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactorStepUp {
    /// The account's password, re-entered.
    #[schema(format = Password, max_length = 256)]
    password: String,
    /// A current TOTP code (6 digits); exactly one of `code` and `recovery_code`.
    #[schema(pattern = "^[0-9]{6}$")]
    code: Option<String>,
    /// An unused recovery code (`xxxx-xxxx-xxxx`; case, spaces and hyphens ignored); exactly
    /// one of `code` and `recovery_code`.
    #[schema(pattern = "^[0-9A-Za-z -]{12,64}$")]
    recovery_code: Option<String>,
    /// End every other session of the account too (default false).
    #[serde(default)]
    revoke_other_sessions: bool,
}

/// `{mfa_token, code}` or `{mfa_token, recovery_code}`: login/mfa.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLogin {
    /// The `mfa_token` of the `mfa-required` answer.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    mfa_token: String,
    /// A current TOTP code (6 digits); exactly one of `code` and `recovery_code`.
    #[schema(pattern = "^[0-9]{6}$")]
    code: Option<String>,
    /// An unused recovery code; exactly one of `code` and `recovery_code`.
    #[schema(pattern = "^[0-9A-Za-z -]{12,64}$")]
    recovery_code: Option<String>,
}

/// The answer to totp/setup: the pending secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetupAnswer {
    /// The secret as unpadded RFC 4648 base32 (160 bits, 32 characters).
    secret: String,
    /// The same secret as an `otpauth://totp/Chronicle:<address>?…` URI, for a QR code.
    otpauth_uri: String,
    /// When the pending secret can no longer be enabled (10 minutes).
    expires_at: DateTime<Utc>,
}

/// The answer to totp/enable and recovery-codes: the account change and the new codes, shown
/// this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodesAnswer {
    /// The account.
    id: Uuid,
    /// The account stream's version.
    version: i64,
    /// Pass as `X-Consistency-Token` to read this change.
    consistency_token: String,
    /// 10 single-use codes, `xxxx-xxxx-xxxx` (lowercase Crockford base32).
    recovery_codes: Vec<String>,
}

/// The second factor presented.
enum Factor {
    /// A TOTP code.
    Code(String),
    /// A recovery code.
    Recovery(String),
}

impl Factor {
    /// Exactly one of `code` and `recovery_code`, each of a shape that can be right.
    fn of(code: Option<String>, recovery_code: Option<String>) -> Result<Self, Problem> {
        match (code, recovery_code) {
            (Some(code), None) => {
                if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("code", "must be 6 digits"));
                }
                Ok(Self::Code(code))
            }
            (None, Some(recovery)) => {
                let shaped = (12..=64).contains(&recovery.chars().count())
                    && recovery
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
                if !shaped {
                    return Err(invalid(
                        "recovery_code",
                        "must be a recovery code (12 to 64 letters, digits, spaces or hyphens)",
                    ));
                }
                Ok(Self::Recovery(recovery))
            }
            _ => Err(invalid(
                "code",
                "give exactly one of code and recovery_code",
            )),
        }
    }

    /// How a login with this factor is recorded.
    fn method(&self) -> LoginMethod {
        match self {
            Self::Code(_) => LoginMethod::PasswordTotp,
            Self::Recovery(_) => LoginMethod::PasswordRecoveryCode,
        }
    }
}

/// What a right factor spends once its transaction commits.
enum Spend {
    /// The TOTP step the code matched.
    Step(i64),
    /// The recovery code at this position.
    Recovery(i16),
}

fn now_unix() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// The step a code of `sealed` matches, later than the last accepted one; `None` if none.
fn code_step(
    auth: &AuthState,
    account_id: Uuid,
    sealed: &[u8],
    last_step: Option<i64>,
    code: &str,
) -> Result<Option<i64>, Problem> {
    // A secret sealed under an earlier AUTH_SECRET_KEY cannot be opened: no code can match it,
    // so the owner signs in with a recovery code and sets TOTP up again (decision 0012). That
    // is the operator's doing, not the caller's, so it is logged and answered as a wrong code
    // rather than a 500 that would leave the account with no way in.
    let secret = match auth.crypto.open_totp(sealed, account_id) {
        Ok(secret) => secret,
        Err(error) => {
            tracing::error!(%account_id, %error, "TOTP secret does not open with AUTH_SECRET_KEY");
            return Ok(None);
        }
    };
    let after = last_step.and_then(|step| u64::try_from(step).ok());
    Ok(secret
        .matching_step(code, now_unix(), after)
        .and_then(|step| i64::try_from(step).ok()))
}

/// Checks `factor` against the account's TOTP in force or its recovery codes, writing
/// nothing; `None` when it is wrong.
async fn check_factor(
    auth: &AuthState,
    account_id: Uuid,
    totp: &Totp,
    factor: &Factor,
) -> Result<Option<Spend>, Problem> {
    match factor {
        Factor::Code(code) => {
            let Some(sealed) = &totp.secret else {
                return Ok(None);
            };
            Ok(code_step(auth, account_id, sealed, totp.last_step, code)?.map(Spend::Step))
        }
        Factor::Recovery(code) => {
            let stored = mfa::recovery_codes(&auth.pool, account_id)
                .await
                .map_err(|e| failure(e.into()))?;
            let position = auth
                .crypto
                .match_recovery_code(code, &stored)
                .await
                .map_err(|error| failure(error.into()))?;
            Ok(position.map(Spend::Recovery))
        }
    }
}

/// Spends what a right factor allowed, inside `tx`: `None` when a concurrent request spent it
/// first (then it counts as wrong); else the recovery codes left, when one was spent.
async fn spend(
    tx: &mut Transaction<'_, Postgres>,
    account_id: Uuid,
    spend: &Spend,
) -> Result<Option<Option<u32>>, Problem> {
    let db = |e: sqlx::Error| failure(e.into());
    match spend {
        Spend::Step(step) => Ok(mfa::claim_step(tx, account_id, *step)
            .await
            .map_err(db)?
            .then_some(None)),
        Spend::Recovery(position) => Ok(mfa::spend_recovery_code(tx, account_id, *position)
            .await
            .map_err(db)?
            .map(Some)),
    }
}

/// The caller's live session and usable account, or the 401 to answer.
pub(super) async fn caller(
    auth: &AuthState,
    headers: &HeaderMap,
) -> Result<Result<(crypto::Bearer, Credentials), Response>, Problem> {
    let bearer = match live_bearer(auth, headers).await? {
        Ok(bearer) => bearer,
        Err(presented) => return Ok(Err(unauthenticated(presented))),
    };
    let credentials = accounts::by_id(&auth.pool, bearer.account_id)
        .await
        .map_err(|e| failure(e.into()))?
        .filter(|c| !c.disabled);
    Ok(match credentials {
        Some(credentials) => Ok((bearer, credentials)),
        None => Err(unauthenticated(true)),
    })
}

/// A refused step-up: counted as a failed login of the address and in the threat counter.
async fn step_up_refused(auth: &AuthState, email: &str, ip: &str) -> Problem {
    security::record(SecurityEvent::StepUpFailed, 1);
    if let Err(error) =
        limits::login_failed(&auth.pool, &auth.settings.rate_limits, email, ip).await
    {
        return failure(error);
    }
    problems::step_up_code_failed()
}

/// The rate limits' verdict on a step-up of `email` from `ip`, decided before any check.
async fn step_up_allowed(auth: &AuthState, email: &str, ip: &str) -> Result<(), Problem> {
    limits::login_allowed(&auth.pool, &auth.settings.rate_limits, email, ip)
        .await
        .map_err(failure)?
}

/// Checks the re-entered password: `Ok(false)` when it is wrong.
async fn password_right(
    auth: &AuthState,
    credentials: &Credentials,
    password: &str,
) -> Result<bool, Problem> {
    auth.crypto
        .verify_password(password, Some(&credentials.password_hash))
        .await
        .map_err(|error| failure(error.into()))
}

/// The account's TOTP row, or an empty one when it never set TOTP up.
async fn totp_of(auth: &AuthState, account_id: Uuid) -> Result<Totp, Problem> {
    Ok(mfa::totp(&auth.pool, account_id)
        .await
        .map_err(|e| failure(e.into()))?
        .unwrap_or(Totp {
            secret: None,
            pending_secret: None,
            pending_expires_at: None,
            last_step: None,
        }))
}

/// The 401 `mfa-required` of a right password when TOTP is on, with a fresh `mfa_token`
/// stored; `None` when no second factor is due.
pub(super) async fn second_factor_due(
    auth: &AuthState,
    credentials: &Credentials,
) -> Result<Option<Response>, Problem> {
    let db = |e: sqlx::Error| failure(e.into());
    if !mfa::totp_enabled(&auth.pool, credentials.account_id)
        .await
        .map_err(db)?
    {
        return Ok(None);
    }
    let token = crypto::mfa_token();
    let ttl = auth.settings.mfa_ttl;
    let expires_at = Utc::now() + ttl;
    let mut tx = auth.pool.begin().await.map_err(db)?;
    mfa::insert_mfa_token(&mut tx, &token.hash, credentials.account_id, expires_at)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    super::routes::count_login("mfa_required");
    Ok(Some(no_store(
        problems::mfa_required(&token.value, ttl.as_secs()).into_response(),
    )))
}

/// A failed `login/mfa`: the token's failure (when it names one), the address's rate limits,
/// one `LoginFailed`, the threat counter; the generic 401.
async fn mfa_failed(
    auth: &AuthState,
    token_hash: &[u8],
    known: Option<&Credentials>,
    method: LoginMethod,
    ip: &str,
    metadata: &EventMetadata,
) -> Result<Problem, Problem> {
    let db = |e: sqlx::Error| failure(e.into());
    mfa::mfa_token_failed(&auth.pool, token_hash)
        .await
        .map_err(db)?;
    security::record(SecurityEvent::MfaFailed, 1);
    login_refused(
        auth,
        known.map(|c| c.email.as_str()),
        ip,
        known.map(|c| c.account_id),
        method,
        FailureReason::MfaFailed,
        metadata,
    )
    .await
}

#[utoipa::path(
    post, path = "/api/v1/auth/login/mfa", tag = "auth",
    request_body = MfaLogin,
    responses(
        (status = 200, description = "Signed in with two factors; the refresh cookie is set", body = LoginAnswer),
        (status = 401, description = "`invalid-credentials`: the `mfa_token` is unknown, expired or spent, or the code is wrong (5 wrong codes end the token)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn login_mfa(
    State(state): State<AppState>,
    jar: CookieJar,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let body: MfaLogin = input.json()?;
    let factor = Factor::of(body.code, body.recovery_code)?;
    let method = factor.method();
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    let limits = &auth.settings.rate_limits;
    limits::anonymous(&auth.pool, limits, &ip)
        .await
        .map_err(failure)??;
    let db = |e: sqlx::Error| failure(e.into());
    let hash = crypto::hash_token(&body.mfa_token);
    let token = mfa::live_mfa_token(&auth.pool, &hash, MFA_MAX_FAILURES)
        .await
        .map_err(db)?;
    let credentials = match &token {
        Some(token) => accounts::by_id(&auth.pool, token.account_id)
            .await
            .map_err(db)?
            .filter(|c| c.verified && !c.disabled),
        None => None,
    };
    let Some(credentials) = credentials else {
        return Err(mfa_failed(&auth, &hash, None, method, &ip, &input.metadata).await?);
    };
    // Decided before the code is checked, even a right one: a 429 appends nothing.
    limits::login_allowed(&auth.pool, limits, &credentials.email, &ip)
        .await
        .map_err(failure)??;
    let account_id = credentials.account_id;
    let totp = totp_of(&auth, account_id).await?;
    let right = if totp.enabled() {
        check_factor(&auth, account_id, &totp, &factor).await?
    } else {
        None
    };
    let wrong = || {
        mfa_failed(
            &auth,
            &hash,
            Some(&credentials),
            method,
            &ip,
            &input.metadata,
        )
    };
    let Some(right) = right else {
        return Err(wrong().await?);
    };
    let mut tx = auth.pool.begin().await.map_err(db)?;
    if !mfa::take_mfa_token(&mut tx, &hash, MFA_MAX_FAILURES)
        .await
        .map_err(db)?
    {
        drop(tx);
        return Err(wrong().await?);
    }
    let Some(remaining) = spend(&mut tx, account_id, &right).await? else {
        drop(tx);
        return Err(wrong().await?);
    };
    let mut before = Vec::new();
    if let Some(remaining) = remaining {
        let metadata = EventMetadata {
            actor: account_id.to_string(),
            ..input.metadata.clone()
        };
        let staged = auth
            .stage_account(
                account_id,
                AccountCommand::UseRecoveryCode { remaining },
                &metadata,
            )
            .await
            .map_err(failure)?;
        before = staged.events;
    }
    let login = Login {
        credentials: &credentials,
        method,
        amr: vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()],
    };
    open_session_in(&auth, jar, tx, before, login, &input.metadata).await
}

#[utoipa::path(
    post, path = "/api/v1/auth/totp/setup", tag = "auth",
    request_body = TotpSetup,
    responses(
        (status = 200, description = "A pending secret, shown this once; `Cache-Control: no-store`", body = TotpSetupAnswer),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-failed`: the password is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn totp_setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let (_, credentials) = match caller(&auth, &headers).await? {
        Ok(caller) => caller,
        Err(response) => return Ok(response),
    };
    let body: TotpSetup = input.json()?;
    bounded("password", &body.password)?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    step_up_allowed(&auth, &credentials.email, &ip).await?;
    if !password_right(&auth, &credentials, &body.password).await? {
        return Err(step_up_refused(&auth, &credentials.email, &ip).await);
    }
    let account_id = credentials.account_id;
    if totp_of(&auth, account_id).await?.enabled() {
        return Err(problems::totp_already_enabled());
    }
    let secret = auth::totp::TotpSecret::generate();
    let expires_at = Utc::now() + auth.settings.totp_setup_ttl;
    mfa::set_pending(
        &auth.pool,
        account_id,
        &auth.crypto.seal_totp(&secret, account_id),
        expires_at,
    )
    .await
    .map_err(|e| failure(e.into()))?;
    let answer = TotpSetupAnswer {
        secret: secret.base32(),
        otpauth_uri: secret.otpauth_uri(&credentials.email),
        expires_at,
    };
    Ok(no_store((StatusCode::OK, Json(answer)).into_response()))
}

/// A new set of recovery codes and their hashes.
async fn new_recovery_codes(auth: &AuthState) -> Result<(Vec<String>, Vec<String>), Problem> {
    let codes = auth::recovery::generate_set();
    let hashes = auth
        .crypto
        .hash_recovery_codes(&codes)
        .await
        .map_err(|error| failure(error.into()))?;
    Ok((codes, hashes))
}

/// How many codes a set holds, as events carry it.
fn set_size() -> u32 {
    u32::try_from(auth::recovery::SET_SIZE).unwrap_or(u32::MAX)
}

/// Ends the caller's other sessions inside `tx` when asked, and mails `mfa_changed`.
async fn after_factor_change(
    auth: &AuthState,
    tx: &mut Transaction<'_, Postgres>,
    credentials: &Credentials,
    session_id: Uuid,
    revoke_others: bool,
    metadata: &EventMetadata,
) -> Result<Vec<NewEvent>, Problem> {
    let mut events = Vec::new();
    if revoke_others {
        let (_, revoked) = revoke_all(
            auth,
            tx,
            credentials.account_id,
            Some(session_id),
            RevokeReason::Others,
            metadata,
        )
        .await?;
        events = revoked;
    }
    auth.mail(
        tx,
        "mfa_changed",
        &credentials.email,
        credentials.account_id,
        None,
    )
    .await
    .map_err(failure)?;
    Ok(events)
}

/// The answer carrying new recovery codes.
fn codes_answer(
    id: Uuid,
    version: i64,
    position: events::LogPosition,
    recovery_codes: Vec<String>,
) -> Response {
    let consistency_token = token(position);
    let mut response = (
        StatusCode::OK,
        Json(RecoveryCodesAnswer {
            id,
            version,
            consistency_token: consistency_token.clone(),
            recovery_codes,
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&consistency_token) {
        response.headers_mut().insert(X_CONSISTENCY_TOKEN, value);
    }
    no_store(response)
}

#[utoipa::path(
    post, path = "/api/v1/auth/totp/enable", tag = "auth",
    request_body = TotpEnable,
    responses(
        (status = 200, description = "TOTP is on; 10 recovery codes, shown this once; `mfa_changed` mailed", body = RecoveryCodesAnswer),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-failed`: the code is wrong, used, or older than one already used", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn totp_enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let (bearer, credentials) = match caller(&auth, &headers).await? {
        Ok(caller) => caller,
        Err(response) => return Ok(response),
    };
    let body: TotpEnable = input.json()?;
    let Factor::Code(code) = Factor::of(Some(body.code), None)? else {
        return Err(invalid("code", "must be 6 digits"));
    };
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    step_up_allowed(&auth, &credentials.email, &ip).await?;
    let account_id = credentials.account_id;
    let totp = totp_of(&auth, account_id).await?;
    if totp.enabled() {
        return Err(problems::totp_already_enabled());
    }
    let Some(pending) = totp.live_pending(Utc::now()) else {
        return Err(problems::no_pending_totp(
            "No TOTP setup is pending, or it expired: set up again.",
        ));
    };
    let Some(step) = code_step(&auth, account_id, pending, totp.last_step, &code)? else {
        return Err(step_up_refused(&auth, &credentials.email, &ip).await);
    };
    let (codes, hashes) = new_recovery_codes(&auth).await?;
    let metadata = session_metadata(&input.metadata, account_id, bearer.session_id);
    let db = |e: sqlx::Error| failure(e.into());
    let mut tx = auth.pool.begin().await.map_err(db)?;
    if !mfa::claim_step(&mut tx, account_id, step)
        .await
        .map_err(db)?
    {
        drop(tx);
        return Err(step_up_refused(&auth, &credentials.email, &ip).await);
    }
    if !mfa::enable(&mut tx, account_id).await.map_err(db)? {
        return Err(problems::totp_already_enabled());
    }
    mfa::replace_recovery_codes(&mut tx, account_id, &hashes)
        .await
        .map_err(db)?;
    let mut events = after_factor_change(
        &auth,
        &mut tx,
        &credentials,
        bearer.session_id,
        body.revoke_other_sessions,
        &metadata,
    )
    .await?;
    let staged = auth
        .stage_account_all(
            account_id,
            vec![
                AccountCommand::EnableTotp,
                AccountCommand::GenerateRecoveryCodes { count: set_size() },
            ],
            &metadata,
        )
        .await
        .map_err(failure)?;
    events.extend(staged.events);
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(codes_answer(account_id, staged.version, position, codes))
}

/// What a stepped-up factor change does.
#[derive(Clone, Copy)]
enum FactorChange {
    /// Switch TOTP off.
    Disable,
    /// Replace the recovery codes.
    Regenerate,
}

/// `totp/disable` and `recovery-codes`: password and a second factor re-proven, then the
/// change, the spent factor, the optional revocation and the mail in one transaction.
async fn stepped_up(
    state: &AppState,
    headers: &HeaderMap,
    input: &CommandInput,
    change: FactorChange,
) -> Result<Response, Problem> {
    let auth = auth_of(state)?;
    let (bearer, credentials) = match caller(&auth, headers).await? {
        Ok(caller) => caller,
        Err(response) => return Ok(response),
    };
    let body: FactorStepUp = input.json()?;
    bounded("password", &body.password)?;
    let factor = Factor::of(body.code, body.recovery_code)?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    step_up_allowed(&auth, &credentials.email, &ip).await?;
    if !password_right(&auth, &credentials, &body.password).await? {
        return Err(step_up_refused(&auth, &credentials.email, &ip).await);
    }
    let account_id = credentials.account_id;
    let totp = totp_of(&auth, account_id).await?;
    if !totp.enabled() {
        return Err(problems::no_pending_totp("TOTP is not enabled."));
    }
    let Some(right) = check_factor(&auth, account_id, &totp, &factor).await? else {
        return Err(step_up_refused(&auth, &credentials.email, &ip).await);
    };
    let fresh = match change {
        FactorChange::Regenerate => Some(new_recovery_codes(&auth).await?),
        FactorChange::Disable => None,
    };
    let metadata = session_metadata(&input.metadata, account_id, bearer.session_id);
    let db = |e: sqlx::Error| failure(e.into());
    let mut tx = auth.pool.begin().await.map_err(db)?;
    let Some(remaining) = spend(&mut tx, account_id, &right).await? else {
        drop(tx);
        return Err(step_up_refused(&auth, &credentials.email, &ip).await);
    };
    let mut commands = Vec::new();
    if let Some(remaining) = remaining {
        commands.push(AccountCommand::UseRecoveryCode { remaining });
    }
    match &fresh {
        Some((_, hashes)) => {
            mfa::replace_recovery_codes(&mut tx, account_id, hashes)
                .await
                .map_err(db)?;
            commands.push(AccountCommand::GenerateRecoveryCodes { count: set_size() });
        }
        None => {
            if !mfa::disable(&mut tx, account_id).await.map_err(db)? {
                return Err(problems::no_pending_totp("TOTP is not enabled."));
            }
            commands.push(AccountCommand::DisableTotp {
                by: DisabledBy::Owner,
            });
        }
    }
    let mut events = after_factor_change(
        &auth,
        &mut tx,
        &credentials,
        bearer.session_id,
        body.revoke_other_sessions,
        &metadata,
    )
    .await?;
    let staged = auth
        .stage_account_all(account_id, commands, &metadata)
        .await
        .map_err(failure)?;
    events.extend(staged.events);
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(match fresh {
        Some((codes, _)) => codes_answer(account_id, staged.version, position, codes),
        None => account_answer(account_id, staged.version, position),
    })
}

#[utoipa::path(
    post, path = "/api/v1/auth/totp/disable", tag = "auth",
    request_body = FactorStepUp,
    responses(
        (status = 200, description = "TOTP is off and the recovery codes are gone; `mfa_changed` mailed", body = AccountAnswer),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-failed`: the password or the code is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn totp_disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    stepped_up(&state, &headers, &input, FactorChange::Disable).await
}

#[utoipa::path(
    post, path = "/api/v1/auth/recovery-codes", tag = "auth",
    request_body = FactorStepUp,
    responses(
        (status = 200, description = "A new set of 10 recovery codes replaced the old one, shown this once; `mfa_changed` mailed", body = RecoveryCodesAnswer),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-failed`: the password or the code is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    stepped_up(&state, &headers, &input, FactorChange::Regenerate).await
}
