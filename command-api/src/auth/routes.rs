//! The accounts' command routes under `/api/v1/auth` (ACCOUNTS.md, "Endpoints"): register,
//! resend-verification, verify-email, login, refresh, logout, password forgot, reset and
//! change. Answers that carry tokens have `Cache-Control: no-store`; register, resend and
//! forgot answer the same bytes for every address.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::{DateTime, Utc};
use event_store::accounts::{self, Credentials, MailTokenKind, QueuedRequest, RequestKind};
use event_store::append::NewEvent;
use event_store::sessions::{self, RefreshToken};
use events::EventMetadata;
use events::account::ResetRequestedBy;
use events::login_attempt::{self, FailureReason, LoginAttemptEvent};
use events::session::{LoginMethod, RevokeReason};
use serde::{Deserialize, Serialize};
use service_kit::Problem;
use service_kit::problem::FieldError;
use sqlx::{Postgres, Transaction};
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::crypto::{self, Bearer};
use super::limits::{self, ip_of};
use super::problems::{self, AuthFailure};
use super::{AuthState, token};
use crate::domain::account::AccountCommand;
use crate::domain::session::{SessionCommand, SessionError};
use crate::http::X_CONSISTENCY_TOKEN;
use crate::http::input::CommandInput;
use crate::http::openapi::ProblemDoc;
use crate::state::AppState;

/// The refresh cookie's name; the `__Host-` prefix pins it to this host and path `/`.
pub const REFRESH_COOKIE: &str = "__Host-chronicle-refresh";

/// The accounts' routes, with their OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(resend_verification))
        .routes(routes!(verify_email))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(change_password))
}

pub(crate) fn auth_of(state: &AppState) -> Result<Arc<AuthState>, Problem> {
    state
        .auth
        .clone()
        .ok_or_else(|| Problem::unavailable("Accounts are not configured here.", 60))
}

/// `{email, password}`: register and login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailPassword {
    /// The address: trimmed, lowercased, at most 254 characters, one `@`.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 12 to 256 characters, compared exactly as sent (a new one must not be common or the
    /// address).
    #[schema(format = Password, min_length = 12, max_length = 256)]
    password: String,
}

/// `{email}`: resend-verification and password/forgot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailOnly {
    /// The address.
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// `{token}`: verify-email.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailedToken {
    /// The token from the mailed link's fragment.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    token: String,
}

/// `{token, new_password}`: password/reset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The token from the mailed link's fragment.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    token: String,
    /// The new password: 12 to 256 characters, not common, not the address.
    #[schema(format = Password, min_length = 12, max_length = 256)]
    new_password: String,
}

/// `{current_password, new_password}`: password/change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password now, re-entered.
    #[schema(format = Password, max_length = 256)]
    current_password: String,
    /// The new password: 12 to 256 characters, not common, not the address.
    #[schema(format = Password, min_length = 12, max_length = 256)]
    new_password: String,
}

/// `{}`: refresh and logout, whose input is the cookie or the bearer token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// The errors every accounts' operation may answer, declared once.
#[derive(IntoResponses)]
pub enum AuthErrors {
    /// Malformed JSON; for `verify-email` and `password/reset`, a mail token that is unknown,
    /// expired or used (`/problems/invalid-token`).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// A concurrent change won (retry; `code` `contention`); for `refresh`,
    /// `/problems/refresh-raced` (`code` `refresh_raced`): another tab just rotated this
    /// token, retry with the cookie now held.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDoc),
    /// The body is over 256 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(ProblemDoc),
    /// The body is not JSON (every route that reads the refresh cookie requires JSON).
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
    /// Invalid address or password (each field named), or unknown fields.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(ProblemDoc),
    /// `/problems/rate-limited`, with `Retry-After` and `retry_after`.
    #[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying, equal to the body's `retry_after`")))]
    TooManyRequests(ProblemDoc),
    /// Password hashing is saturated or the event store is unavailable; retry after
    /// `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying, equal to the body's `retry_after`")))]
    Unavailable(ProblemDoc),
}

/// The 202 of register, resend-verification and password/forgot.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedAnswer {
    /// Always `accepted`.
    status: &'static str,
}

/// The login answer (login, refresh; later login/mfa and passkey login).
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// The EdDSA JWT, sent as `Authorization: Bearer`.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires (900).
    expires_in: u64,
    /// The account.
    account_id: Uuid,
    /// The session.
    session_id: Uuid,
    /// The account's roles, `user` always among them.
    roles: Vec<String>,
    /// Pass as `X-Consistency-Token` to read this login.
    consistency_token: String,
}

/// The answer to an account change.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountAnswer {
    /// The account.
    id: Uuid,
    /// The account stream's version.
    version: i64,
    /// Pass as `X-Consistency-Token` to read this change.
    consistency_token: String,
}

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Problem {
    Problem::validation(vec![FieldError::new(field, reason)])
}

fn email_of(raw: &str) -> Result<String, Problem> {
    crypto::normalize_email(raw).map_err(|reason| invalid("email", reason))
}

/// Passwords longer than this are refused before any hash (the policy's own bound).
const MAX_PASSWORD: usize = 256;

pub(crate) fn bounded(field: &str, password: &str) -> Result<(), Problem> {
    if password.chars().count() > MAX_PASSWORD {
        return Err(invalid(field, "must be at most 256 characters"));
    }
    Ok(())
}

pub(crate) fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(AcceptedAnswer { status: "accepted" }),
    )
        .into_response()
}

pub(crate) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refresh_cookie(value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build((REFRESH_COOKIE, value))
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age.max(0)))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .build()
}

fn clear_cookie(jar: CookieJar) -> CookieJar {
    jar.add(refresh_cookie(String::new(), 0))
}

/// A problem answer that also clears the refresh cookie.
fn refused_refresh(jar: CookieJar, problem: Problem) -> Response {
    (clear_cookie(jar), problem).into_response()
}

/// A 401 `unauthenticated` with its `WWW-Authenticate`.
pub(crate) fn unauthenticated(presented: bool) -> Response {
    let challenge = if presented {
        "Bearer realm=\"chronicle\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"chronicle\""
    };
    let mut response = problems::unauthenticated().into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

pub(crate) fn failure(failure: AuthFailure) -> Problem {
    failure.into()
}

/// Queues a register, resend or forgot for the worker and wakes it.
async fn queue(
    auth: &AuthState,
    kind: RequestKind,
    email: String,
    password_hash: Option<String>,
    metadata: &EventMetadata,
) -> Result<Response, Problem> {
    let request = QueuedRequest {
        kind,
        email,
        password_hash,
        metadata: serde_json::to_value(metadata).map_err(|error| Problem::internal(&error))?,
    };
    accounts::enqueue(&auth.pool, &request)
        .await
        .map_err(|error| failure(error.into()))?;
    auth.queued.notify_one();
    Ok(accepted())
}

/// Rate limits of register, resend and forgot.
async fn mail_limits(auth: &AuthState, email: &str, ip: &str) -> Result<(), Problem> {
    let limits = &auth.settings.rate_limits;
    limits::anonymous(&auth.pool, limits, ip)
        .await
        .map_err(failure)??;
    limits::mail_request(&auth.pool, limits, email, ip)
        .await
        .map_err(failure)?
}

#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth",
    request_body = EmailPassword,
    responses(
        (status = 202, description = "Accepted, whatever the address", body = AcceptedAnswer),
        AuthErrors,
    )
)]
async fn register(State(state): State<AppState>, input: CommandInput) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let body: EmailPassword = input.json()?;
    let email = email_of(&body.email)?;
    bounded("password", &body.password)?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    mail_limits(&auth, &email, &ip).await?;
    crypto::check_password(&body.password, &email).map_err(|reason| invalid("password", reason))?;
    // Hashed whatever the address, so known and unknown ones cost the same.
    let hash = auth
        .crypto
        .hash_password(&body.password)
        .await
        .map_err(|error| failure(error.into()))?;
    queue(
        &auth,
        RequestKind::Register,
        email,
        Some(hash),
        &input.metadata,
    )
    .await
}

#[utoipa::path(
    post, path = "/api/v1/auth/resend-verification", tag = "auth",
    request_body = EmailOnly,
    responses(
        (status = 202, description = "Accepted, whatever the address", body = AcceptedAnswer),
        AuthErrors,
    )
)]
async fn resend_verification(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    queue_for_address(&state, &input, RequestKind::Resend).await
}

/// Resend and forgot: limit the address, queue the request, answer 202 whatever the address.
async fn queue_for_address(
    state: &AppState,
    input: &CommandInput,
    kind: RequestKind,
) -> Result<Response, Problem> {
    let auth = auth_of(state)?;
    let body: EmailOnly = input.json()?;
    let email = email_of(&body.email)?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    mail_limits(&auth, &email, &ip).await?;
    queue(&auth, kind, email, None, &input.metadata).await
}

#[utoipa::path(
    post, path = "/api/v1/auth/password/forgot", tag = "auth",
    request_body = EmailOnly,
    responses(
        (status = 202, description = "Accepted, whatever the address", body = AcceptedAnswer),
        AuthErrors,
    )
)]
async fn forgot_password(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    queue_for_address(&state, &input, RequestKind::Forgot).await
}

pub(crate) fn account_answer(id: Uuid, version: i64, position: events::LogPosition) -> Response {
    let consistency_token = token(position);
    let mut response = (
        StatusCode::OK,
        Json(AccountAnswer {
            id,
            version,
            consistency_token: consistency_token.clone(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&consistency_token) {
        response.headers_mut().insert(X_CONSISTENCY_TOKEN, value);
    }
    response
}

#[utoipa::path(
    post, path = "/api/v1/auth/verify-email", tag = "auth",
    request_body = MailedToken,
    responses(
        (status = 200, description = "Verified", body = AccountAnswer),
        AuthErrors,
    )
)]
async fn verify_email(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let body: MailedToken = input.json()?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    limits::anonymous(&auth.pool, &auth.settings.rate_limits, &ip)
        .await
        .map_err(failure)??;
    let hash = crypto::hash_token(&body.token);
    let mut tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    let Some(account_id) = accounts::take_mail_token(&mut tx, &hash, MailTokenKind::VerifyEmail)
        .await
        .map_err(|e| failure(e.into()))?
    else {
        return Err(problems::invalid_token());
    };
    let staged = auth
        .stage_account(account_id, AccountCommand::VerifyEmail, &input.metadata)
        .await
        .map_err(failure)?;
    accounts::mark_verified(&mut tx, account_id)
        .await
        .map_err(|e| failure(e.into()))?;
    let position = auth.commit(tx, &staged.events).await.map_err(failure)?;
    Ok(account_answer(account_id, staged.version, position))
}

/// Metadata of a session's events: the account acts, in that session.
pub(crate) fn session_metadata(
    metadata: &EventMetadata,
    account_id: Uuid,
    session_id: Uuid,
) -> EventMetadata {
    EventMetadata {
        actor: account_id.to_string(),
        session_id: Some(session_id),
        ..metadata.clone()
    }
}

/// Appends one `LoginFailed` in a stream of its own.
pub(super) async fn record_failure(
    auth: &AuthState,
    account_id: Option<Uuid>,
    method: LoginMethod,
    reason: FailureReason,
    metadata: &EventMetadata,
) -> Result<(), Problem> {
    let event = LoginAttemptEvent::LoginFailed {
        account_id,
        method,
        reason,
    };
    let metadata = serde_json::to_value(metadata).map_err(|error| Problem::internal(&error))?;
    let row = NewEvent::of(
        login_attempt::AGGREGATE_TYPE,
        &Uuid::now_v7().to_string(),
        1,
        &event,
        metadata,
    )
    .map_err(|error| Problem::internal(&error))?;
    let tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    auth.commit(tx, &[row]).await.map_err(failure)?;
    Ok(())
}

/// The roles a token carries: `user` and the granted ones.
fn roles_of(credentials: &Credentials) -> Vec<String> {
    let mut roles = vec!["user".to_owned()];
    roles.extend(credentials.roles.iter().cloned());
    roles
}

#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = EmailPassword,
    responses(
        (status = 200, description = "Signed in; the refresh cookie is set", body = LoginAnswer),
        (status = 401, description = "`invalid-credentials`; or, when TOTP is on and the password was right, `mfa-required` with the members `mfa_token` (43 base64url characters, for `POST /auth/login/mfa`), `methods` (`[\"totp\", \"recovery_code\"]`) and `expires_in` (300 seconds; 5 wrong codes end the token sooner), and `Cache-Control: no-store`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`email-not-verified` or `account-disabled` (right password only)", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let body: EmailPassword = input.json()?;
    let email = email_of(&body.email)?;
    bounded("password", &body.password)?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    let limits = &auth.settings.rate_limits;
    // Decided before any hash, even the right password's: a 429 appends nothing.
    let allowed = match limits::anonymous(&auth.pool, limits, &ip)
        .await
        .map_err(failure)?
    {
        Ok(()) => limits::login_allowed(&auth.pool, limits, &email, &ip)
            .await
            .map_err(failure)?,
        over => over,
    };
    if let Err(over) = allowed {
        count_login("rate_limited");
        return Err(over);
    }
    let credentials = accounts::by_email(&auth.pool, &email)
        .await
        .map_err(|e| failure(e.into()))?;
    let right = auth
        .crypto
        .verify_password(
            &body.password,
            credentials.as_ref().map(|c| c.password_hash.as_str()),
        )
        .await
        .map_err(|error| failure(error.into()))?;
    let credentials = match credentials {
        Some(credentials) if right => credentials,
        known => {
            return Err(login_refused(
                &auth,
                Some(&email),
                &ip,
                known.map(|c| c.account_id),
                LoginMethod::Password,
                FailureReason::InvalidCredentials,
                &input.metadata,
            )
            .await?);
        }
    };
    refuse_unusable(&auth, &credentials, LoginMethod::Password, &input.metadata).await?;
    // Counted as `mfa_required` by second_factor_due.
    if let Some(mfa_required) = super::mfa::second_factor_due(&auth, &credentials).await? {
        return Ok(mfa_required);
    }
    open_session(
        &auth,
        jar,
        &credentials,
        LoginMethod::Password,
        vec!["pwd".to_owned()],
        &input.metadata,
    )
    .await
}

/// Counts one login attempt in `chronicle_auth_logins_total{result}` (`success`, `failure`,
/// `mfa_required`, `rate_limited`).
pub(crate) fn count_login(result: &'static str) {
    metrics::counter!(service_kit::metric_names::AUTH_LOGINS_TOTAL, "result" => result)
        .increment(1);
    if result == "failure" {
        service_kit::security::record(service_kit::security::SecurityEvent::LoginFailed, 1);
    }
}

/// Opens a session after a successful login: revokes the least recently used sessions over
/// the limit, stores the first refresh token, appends `LoginSucceeded`, and answers the login
/// answer with the cookie. Every way of logging in ends here.
pub(crate) async fn open_session(
    auth: &AuthState,
    jar: CookieJar,
    credentials: &Credentials,
    method: LoginMethod,
    amr: Vec<String>,
    metadata: &EventMetadata,
) -> Result<Response, Problem> {
    let tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    let login = Login {
        credentials,
        method,
        amr,
    };
    open_session_in(auth, jar, tx, Vec::new(), login, metadata).await
}

/// How a login proved itself.
pub(crate) struct Login<'a> {
    /// Whose login it is.
    pub credentials: &'a Credentials,
    /// The way it logged in.
    pub method: LoginMethod,
    /// The access tokens' `amr`.
    pub amr: Vec<String>,
}

/// [`open_session`] inside `tx`, after `before` (events staged by the caller, whose side rows
/// `tx` already holds: a spent second factor commits with the session it opened, or not at
/// all).
pub(crate) async fn open_session_in(
    auth: &AuthState,
    jar: CookieJar,
    mut tx: Transaction<'_, Postgres>,
    before: Vec<NewEvent>,
    login: Login<'_>,
    metadata: &EventMetadata,
) -> Result<Response, Problem> {
    let Login {
        credentials,
        method,
        amr,
    } = login;
    let account_id = credentials.account_id;
    let session_id = Uuid::now_v7();
    let now = Utc::now();
    let session_expires_at = now + auth.settings.session_ttl;
    let expires_at = (now + auth.settings.refresh_ttl).min(session_expires_at);
    let metadata = session_metadata(metadata, account_id, session_id);
    let staged = auth
        .stage_session(
            session_id,
            SessionCommand::Open {
                session_id,
                account_id,
                method,
                amr: amr.clone(),
                expires_at: session_expires_at,
                refresh_expires_at: expires_at,
            },
            &metadata,
        )
        .await
        .map_err(failure)?
        .map_err(|error| failure(AuthFailure::Refused(error.to_string())))?;
    let fresh = crypto::refresh_token();
    let mut events = before;
    let live = sessions::live_sessions(&mut tx, account_id)
        .await
        .map_err(|e| failure(e.into()))?;
    let excess = (live.len() + 1).saturating_sub(auth.settings.max_sessions);
    for old in live.into_iter().take(excess) {
        events.extend(revoke_in(auth, &mut tx, old, RevokeReason::SessionLimit, &metadata).await?);
    }
    events.extend(staged.events);
    sessions::insert(
        &mut tx,
        &RefreshToken {
            token_hash: fresh.hash,
            session_id,
            account_id,
            generation: 1,
            issued_at: now,
            spent_at: None,
            expires_at,
            session_expires_at,
            authenticated_at: now,
            amr: amr.clone(),
        },
    )
    .await
    .map_err(|e| failure(e.into()))?;
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    count_login("success");
    login_answer(
        auth,
        jar,
        credentials,
        session_id,
        &amr,
        now,
        (fresh.value, expires_at),
        position,
    )
}

/// Revokes `session_id` inside `tx`: deletes its refresh tokens and stages `SessionRevoked`.
pub(crate) async fn revoke_in(
    auth: &AuthState,
    tx: &mut Transaction<'_, Postgres>,
    session_id: Uuid,
    reason: RevokeReason,
    metadata: &EventMetadata,
) -> Result<Vec<NewEvent>, Problem> {
    sessions::revoke(tx, session_id)
        .await
        .map_err(|e| failure(e.into()))?;
    match auth
        .stage_session(session_id, SessionCommand::Revoke { reason }, metadata)
        .await
        .map_err(failure)?
    {
        Ok(staged) => Ok(staged.events),
        // Rows without a stream cannot exist; nothing to record for them.
        Err(SessionError::NotFound) => Ok(Vec::new()),
        Err(error) => Err(failure(AuthFailure::Refused(error.to_string()))),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call per way of issuing tokens"
)]
fn login_answer(
    auth: &AuthState,
    jar: CookieJar,
    credentials: &Credentials,
    session_id: Uuid,
    amr: &[String],
    auth_time: DateTime<Utc>,
    (refresh, refresh_expires_at): (String, DateTime<Utc>),
    position: events::LogPosition,
) -> Result<Response, Problem> {
    let roles = roles_of(credentials);
    let access = auth
        .crypto
        .issue(credentials.account_id, session_id, &roles, amr, auth_time)
        .map_err(|error| failure(error.into()))?;
    let max_age = (refresh_expires_at - Utc::now()).num_seconds();
    let jar = jar.add(refresh_cookie(refresh, max_age));
    let answer = LoginAnswer {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        account_id: credentials.account_id,
        session_id,
        roles,
        consistency_token: token(position),
    };
    Ok(no_store((jar, Json(answer)).into_response()))
}

#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = Empty,
    responses(
        (status = 200, description = "Rotated: a new access token and refresh cookie", body = LoginAnswer),
        (status = 401, description = "No live refresh token, or a spent one (the session is then revoked); the cookie is cleared", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn refresh(
    State(state): State<AppState>,
    jar: CookieJar,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    // JSON only: a cross-site form cannot send it without a preflight CORS refuses.
    let _: Empty = input.json()?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    limits::refresh(&auth.pool, &auth.settings.rate_limits, &ip)
        .await
        .map_err(failure)??;
    let Some(presented) = jar.get(REFRESH_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(refused_refresh(jar, problems::invalid_refresh_token()));
    };
    let hash = crypto::hash_token(&presented);
    let Some(row) = sessions::by_hash(&auth.pool, &hash)
        .await
        .map_err(|e| failure(e.into()))?
    else {
        metrics::counter!(service_kit::metric_names::AUTH_REFRESH_TOTAL, "result" => "invalid")
            .increment(1);
        return Ok(refused_refresh(jar, problems::invalid_refresh_token()));
    };
    let now = Utc::now();
    if row.spent_at.is_none() {
        if row.expires_at <= now || row.session_expires_at <= now {
            return Ok(refused_refresh(jar, problems::invalid_refresh_token()));
        }
        if let Some(response) = rotate(&auth, jar.clone(), &row, &input.metadata).await? {
            return Ok(response);
        }
    }
    spent(&auth, jar, &hash, &input.metadata).await
}

/// Spends `row` and issues the next generation; `None` when another refresh spent it first
/// (then it is judged as a spent token).
async fn rotate(
    auth: &AuthState,
    jar: CookieJar,
    row: &RefreshToken,
    metadata: &EventMetadata,
) -> Result<Option<Response>, Problem> {
    let Some(credentials) = accounts::by_id(&auth.pool, row.account_id)
        .await
        .map_err(|e| failure(e.into()))?
        .filter(|c| !c.disabled)
    else {
        return Ok(Some(refused_refresh(
            jar,
            problems::invalid_refresh_token(),
        )));
    };
    let metadata = session_metadata(metadata, row.account_id, row.session_id);
    let now = Utc::now();
    let expires_at = (now + auth.settings.refresh_ttl).min(row.session_expires_at);
    let refresh = SessionCommand::Refresh {
        refresh_expires_at: expires_at,
    };
    let staged = match auth
        .stage_session(row.session_id, refresh, &metadata)
        .await
        .map_err(failure)?
    {
        Ok(staged) => staged,
        Err(_) => {
            return Ok(Some(refused_refresh(
                jar,
                problems::invalid_refresh_token(),
            )));
        }
    };
    let mut tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    if !sessions::spend(&mut tx, &row.token_hash)
        .await
        .map_err(|e| failure(e.into()))?
    {
        return Ok(None);
    }
    let fresh = crypto::refresh_token();
    sessions::insert(
        &mut tx,
        &RefreshToken {
            token_hash: fresh.hash,
            session_id: row.session_id,
            account_id: row.account_id,
            generation: row.generation + 1,
            issued_at: now,
            spent_at: None,
            expires_at,
            session_expires_at: row.session_expires_at,
            authenticated_at: row.authenticated_at,
            amr: row.amr.clone(),
        },
    )
    .await
    .map_err(|e| failure(e.into()))?;
    let position = auth.commit(tx, &staged.events).await.map_err(failure)?;
    metrics::counter!(service_kit::metric_names::AUTH_REFRESH_TOTAL, "result" => "rotated")
        .increment(1);
    login_answer(
        auth,
        jar,
        &credentials,
        row.session_id,
        &row.amr,
        row.authenticated_at,
        (fresh.value, expires_at),
        position,
    )
    .map(Some)
}

/// A spent token came back: the two-tab race (409, nothing changes) or reuse (the session is
/// revoked, `RefreshReused` and `SessionRevoked` appended, its owner mailed).
async fn spent(
    auth: &AuthState,
    jar: CookieJar,
    hash: &[u8],
    metadata: &EventMetadata,
) -> Result<Response, Problem> {
    let db = |e: sqlx::Error| failure(e.into());
    let Some(row) = sessions::by_hash(&auth.pool, hash).await.map_err(db)? else {
        return Ok(refused_refresh(jar, problems::invalid_refresh_token()));
    };
    let current = sessions::current(&auth.pool, row.session_id)
        .await
        .map_err(db)?;
    let now = Utc::now();
    let grace = chrono::Duration::from_std(auth.settings.refresh_grace).unwrap_or_default();
    if let (Some(current), Some(spent_at)) = (&current, row.spent_at)
        && current.generation == row.generation + 1
        && current.spent_at.is_none()
        && now - spent_at <= grace
    {
        metrics::counter!(service_kit::metric_names::AUTH_REFRESH_TOTAL, "result" => "raced")
            .increment(1);
        return Err(problems::refresh_raced());
    }
    let metadata = session_metadata(metadata, row.account_id, row.session_id);
    let staged = auth
        .stage_session(
            row.session_id,
            SessionCommand::DetectReuse {
                presented: row.generation,
            },
            &metadata,
        )
        .await
        .map_err(failure)?;
    let mut tx = auth.pool.begin().await.map_err(db)?;
    sessions::revoke(&mut tx, row.session_id)
        .await
        .map_err(db)?;
    let events = staged.map(|staged| staged.events).unwrap_or_default();
    if !events.is_empty()
        && let Some(credentials) = accounts::by_id(&auth.pool, row.account_id)
            .await
            .map_err(db)?
    {
        auth.mail(
            &mut tx,
            "session_reuse_detected",
            &credentials.email,
            row.account_id,
            None,
        )
        .await
        .map_err(failure)?;
    }
    auth.commit(tx, &events).await.map_err(failure)?;
    metrics::counter!(service_kit::metric_names::AUTH_REFRESH_TOTAL, "result" => "reused")
        .increment(1);
    metrics::counter!(service_kit::metric_names::SECURITY_EVENTS_TOTAL, "kind" => "refresh_reuse")
        .increment(1);
    tracing::warn!(session.id = %row.session_id, "refresh token reuse: session revoked");
    Ok(refused_refresh(jar, problems::invalid_refresh_token()))
}

/// The bearer token's account and session, if the request sent a valid one; `Err(presented)`
/// otherwise.
fn bearer(auth: &AuthState, headers: &HeaderMap) -> Result<Bearer, bool> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(false);
    };
    value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| auth.crypto.verify_access(token.trim()))
        .ok_or(true)
}

/// The live session named by the bearer token, or `Err(presented)`.
pub(super) async fn live_bearer(
    auth: &AuthState,
    headers: &HeaderMap,
) -> Result<Result<Bearer, bool>, Problem> {
    let bearer = match bearer(auth, headers) {
        Ok(bearer) => bearer,
        Err(presented) => return Ok(Err(presented)),
    };
    let session = auth.session(bearer.session_id).await.map_err(failure)?;
    if session.revoked || session.session_id.is_none() {
        return Ok(Err(true));
    }
    Ok(Ok(bearer))
}

/// Logout's path: the router lets refused bearer tokens through to it (see `logout`).
pub const LOGOUT_PATH: &str = "/api/v1/auth/logout";

#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = Empty,
    responses(
        (status = 204, description = "Signed out; the cookie is cleared; `X-Consistency-Token`"),
        (status = 401, description = "Neither a valid access token nor a live refresh cookie", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let _: Empty = input.json()?;
    let db = |e: sqlx::Error| failure(e.into());
    // The bearer token's session, or the cookie's when the access token has expired.
    let (account_id, session_id) = match live_bearer(&auth, &headers).await? {
        Ok(bearer) => (bearer.account_id, bearer.session_id),
        Err(presented) => {
            let cookie = jar.get(REFRESH_COOKIE).map(|c| c.value().to_owned());
            let row = match cookie {
                Some(value) => sessions::by_hash(&auth.pool, &crypto::hash_token(&value))
                    .await
                    .map_err(db)?
                    .filter(|row| row.spent_at.is_none() && row.expires_at > Utc::now()),
                None => None,
            };
            match row {
                Some(row) => (row.account_id, row.session_id),
                None => return Ok(unauthenticated(presented)),
            }
        }
    };
    let metadata = session_metadata(&input.metadata, account_id, session_id);
    let mut tx = auth.pool.begin().await.map_err(db)?;
    let events = revoke_in(&auth, &mut tx, session_id, RevokeReason::Logout, &metadata).await?;
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    let mut response = (clear_cookie(jar), StatusCode::NO_CONTENT).into_response();
    if let Ok(value) = HeaderValue::from_str(&token(position)) {
        response.headers_mut().insert(X_CONSISTENCY_TOKEN, value);
    }
    Ok(no_store(response))
}

/// Revokes every live session of `account_id` but `keep` inside `tx`, staging the events.
pub(crate) async fn revoke_all(
    auth: &AuthState,
    tx: &mut Transaction<'_, Postgres>,
    account_id: Uuid,
    keep: Option<Uuid>,
    reason: RevokeReason,
    metadata: &EventMetadata,
) -> Result<(u32, Vec<NewEvent>), Problem> {
    let live = sessions::live_sessions(tx, account_id)
        .await
        .map_err(|e| failure(e.into()))?;
    let mut events = Vec::new();
    let mut count = 0u32;
    for session_id in live.into_iter().filter(|id| Some(*id) != keep) {
        let metadata = EventMetadata {
            session_id: Some(session_id),
            ..metadata.clone()
        };
        events.extend(revoke_in(auth, tx, session_id, reason, &metadata).await?);
        count += 1;
    }
    Ok((count, events))
}

#[utoipa::path(
    post, path = "/api/v1/auth/password/reset", tag = "auth",
    request_body = ResetPassword,
    responses(
        (status = 200, description = "Reset; every session ended", body = AccountAnswer),
        AuthErrors,
    )
)]
async fn reset_password(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let body: ResetPassword = input.json()?;
    bounded("new_password", &body.new_password)?;
    let ip = ip_of(input.metadata.ip.as_deref()).to_owned();
    limits::anonymous(&auth.pool, &auth.settings.rate_limits, &ip)
        .await
        .map_err(failure)??;
    let db = |e: sqlx::Error| failure(e.into());
    let hash = crypto::hash_token(&body.token);
    let mut tx = auth.pool.begin().await.map_err(db)?;
    let Some(account_id) = accounts::take_mail_token(&mut tx, &hash, MailTokenKind::PasswordReset)
        .await
        .map_err(db)?
    else {
        return Err(problems::invalid_token());
    };
    let Some(credentials) = accounts::by_id(&mut *tx, account_id).await.map_err(db)? else {
        return Err(problems::invalid_token());
    };
    // A refused password rolls the transaction back, so the token stays usable.
    crypto::check_password(&body.new_password, &credentials.email)
        .map_err(|reason| invalid("new_password", reason))?;
    let password_hash = auth
        .crypto
        .hash_password(&body.new_password)
        .await
        .map_err(|error| failure(error.into()))?;
    let (revoked, mut events) = revoke_all(
        &auth,
        &mut tx,
        account_id,
        None,
        RevokeReason::PasswordReset,
        &input.metadata,
    )
    .await?;
    let staged = auth
        .stage_account(
            account_id,
            AccountCommand::ResetPassword {
                sessions_revoked: revoked,
            },
            &input.metadata,
        )
        .await
        .map_err(failure)?;
    events.extend(staged.events);
    accounts::set_password(&mut tx, account_id, &password_hash)
        .await
        .map_err(db)?;
    accounts::kill_mail_tokens(&mut tx, account_id, MailTokenKind::PasswordReset)
        .await
        .map_err(db)?;
    event_store::rate_limits::clear_email(&mut tx, &credentials.email)
        .await
        .map_err(db)?;
    auth.mail(
        &mut tx,
        "password_changed",
        &credentials.email,
        account_id,
        None,
    )
    .await
    .map_err(failure)?;
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(account_answer(account_id, staged.version, position))
}

#[utoipa::path(
    post, path = "/api/v1/auth/password/change", tag = "auth",
    request_body = ChangePassword,
    responses(
        (status = 200, description = "Changed; every other session ended", body = AccountAnswer),
        (status = 401, description = "No valid access token (`Authorization: Bearer`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-failed`: the current password is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let bearer = match live_bearer(&auth, &headers).await? {
        Ok(bearer) => bearer,
        Err(presented) => return Ok(unauthenticated(presented)),
    };
    let db = |e: sqlx::Error| failure(e.into());
    let Some(credentials) = accounts::by_id(&auth.pool, bearer.account_id)
        .await
        .map_err(db)?
        .filter(|c| !c.disabled)
    else {
        return Ok(unauthenticated(true));
    };
    let body: ChangePassword = input.json()?;
    bounded("current_password", &body.current_password)?;
    bounded("new_password", &body.new_password)?;
    crypto::check_password(&body.new_password, &credentials.email)
        .map_err(|reason| invalid("new_password", reason))?;
    step_up(&auth, &credentials, &body.current_password, &input.metadata).await?;
    let password_hash = auth
        .crypto
        .hash_password(&body.new_password)
        .await
        .map_err(|error| failure(error.into()))?;
    let metadata = session_metadata(&input.metadata, bearer.account_id, bearer.session_id);
    let mut tx = auth.pool.begin().await.map_err(db)?;
    let (revoked, mut events) = revoke_all(
        &auth,
        &mut tx,
        bearer.account_id,
        Some(bearer.session_id),
        RevokeReason::PasswordChanged,
        &metadata,
    )
    .await?;
    let staged = auth
        .stage_account(
            bearer.account_id,
            AccountCommand::ChangePassword {
                sessions_revoked: revoked,
            },
            &metadata,
        )
        .await
        .map_err(failure)?;
    events.extend(staged.events);
    accounts::set_password(&mut tx, bearer.account_id, &password_hash)
        .await
        .map_err(db)?;
    auth.mail(
        &mut tx,
        "password_changed",
        &credentials.email,
        bearer.account_id,
        None,
    )
    .await
    .map_err(failure)?;
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(account_answer(bearer.account_id, staged.version, position))
}

/// Re-proves who is asking before a change to sessions or factors (ASVS 7.5.1): the
/// re-entered `password` must be the account's. Over the failed-login limits it is a 429
/// decided before any hash; a wrong one is `403 step-up-failed` (never 401, which would make
/// the client drop its token) and counts as a failed login.
pub(crate) async fn step_up(
    auth: &AuthState,
    credentials: &Credentials,
    password: &str,
    metadata: &EventMetadata,
) -> Result<(), Problem> {
    let ip = ip_of(metadata.ip.as_deref()).to_owned();
    let limits = &auth.settings.rate_limits;
    limits::login_allowed(&auth.pool, limits, &credentials.email, &ip)
        .await
        .map_err(failure)??;
    let right = auth
        .crypto
        .verify_password(password, Some(&credentials.password_hash))
        .await
        .map_err(|error| failure(error.into()))?;
    if right {
        return Ok(());
    }
    limits::login_failed(&auth.pool, limits, &credentials.email, &ip)
        .await
        .map_err(failure)?;
    service_kit::security::record(service_kit::security::SecurityEvent::StepUpFailed, 1);
    Err(problems::step_up_failed())
}

/// The caller's credentials, or the 401 of a token whose account is gone or disabled (the
/// revocation view may not have heard of the disable yet on this replica).
pub(crate) async fn caller_credentials(
    auth: &AuthState,
    account_id: Uuid,
) -> Result<Result<Credentials, Response>, Problem> {
    let credentials = accounts::by_id(&auth.pool, account_id)
        .await
        .map_err(|e| failure(e.into()))?
        .filter(|c| !c.disabled);
    Ok(credentials.ok_or_else(|| unauthenticated(true)))
}

/// Who asked for a reset through `password/forgot`.
pub(crate) const OWNER: ResetRequestedBy = ResetRequestedBy::Owner;

/// Refuses a login whose factor was wrong or whose account is unknown: counts it against the
/// rate limits of the address tried (when there is one), records one `LoginFailed` for
/// `reason`, counts the failure, and gives the generic `invalid-credentials` to answer with.
pub(crate) async fn login_refused(
    auth: &AuthState,
    email: Option<&str>,
    ip: &str,
    account_id: Option<Uuid>,
    method: LoginMethod,
    reason: FailureReason,
    metadata: &EventMetadata,
) -> Result<Problem, Problem> {
    if let Some(email) = email {
        limits::login_failed(&auth.pool, &auth.settings.rate_limits, email, ip)
            .await
            .map_err(failure)?;
    }
    record_failure(auth, account_id, method, reason, metadata).await?;
    count_login("failure");
    Ok(problems::invalid_credentials())
}

/// Refuses a login whose account is disabled or unverified, once its first factor was right
/// (only the right factor may learn more than `invalid-credentials`): records the failure,
/// counts it, and answers `account-disabled` or `email-not-verified`.
pub(crate) async fn refuse_unusable(
    auth: &AuthState,
    credentials: &Credentials,
    method: LoginMethod,
    metadata: &EventMetadata,
) -> Result<(), Problem> {
    if !credentials.disabled && credentials.verified {
        return Ok(());
    }
    record_failure(
        auth,
        Some(credentials.account_id),
        method,
        FailureReason::UnverifiedOrDisabled,
        metadata,
    )
    .await?;
    count_login("failure");
    Err(if credentials.disabled {
        problems::account_disabled()
    } else {
        problems::email_not_verified()
    })
}
