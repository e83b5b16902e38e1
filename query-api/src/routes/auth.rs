//! The accounts' reads (ACCOUNTS.md): `GET /auth/jwks.json`, the public keys access tokens
//! are verified with, for clients and other services that check tokens themselves; and the
//! caller's own account, live sessions and passkeys (`GET /auth/me`, `GET /auth/sessions`,
//! `GET /auth/webauthn/credentials`) from the `auth_accounts` (with `auth_account_passkeys`)
//! and `auth_sessions` read models.

use axum::Json;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, VARY};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use service_kit::Caller;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::consistency;
use crate::error::ApiError;
use crate::etag::{PRIVATE_CACHE_CONTROL, VARY_VALUE};
use crate::openapi::ReadHeaders;
use crate::openapi::answers::{BadRequest, NotFound, Unavailable};
use crate::state::AppState;

/// The projection behind `GET /auth/me`.
pub const ACCOUNTS_PROJECTION: &str = event_store::catalogue::AUTH_ACCOUNTS.name;

/// The projection behind `GET /auth/sessions`.
pub const SESSIONS_PROJECTION: &str = event_store::catalogue::AUTH_SESSIONS.name;

/// The most sessions one answer lists: the live-session limit (50 by default) with room to
/// spare, so a raised limit still fits and the read stays bounded.
const MAX_SESSIONS_LISTED: i64 = 200;

/// Key rotation waits this long between steps, so every cached copy has the new key first.
const CACHE_CONTROL_JWKS: &str = "public, max-age=300";

/// The JWKS route (anonymous) and the caller's own reads (an account).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks)).merge(
        OpenApiRouter::new()
            .routes(routes!(me))
            .routes(routes!(sessions))
            .routes(routes!(passkeys))
            .route_layer(axum::middleware::from_fn(
                service_kit::caller::needs_account,
            )),
    )
}

/// The caller's account (`GET /auth/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Me {
    /// The account.
    pub account_id: Uuid,
    /// Its address.
    #[schema(format = Email)]
    pub email: String,
    /// Its roles now (`user`, and `admin` or `auditor` when granted); a token carries those
    /// of its issue.
    pub roles: Vec<String>,
    /// Whether TOTP is on.
    pub totp_enabled: bool,
    /// How many unused recovery codes are left.
    pub recovery_codes_remaining: i32,
    /// The account's passkeys, oldest first.
    pub passkeys: Vec<PasskeyDoc>,
    /// When it registered (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// The session of the token that asked.
    pub session_id: Uuid,
}

/// A passkey of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct PasskeyDoc {
    /// The credential id, base64url.
    pub id: String,
    /// The owner's label for it.
    pub label: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in; `null` until it does.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// `GET /auth/webauthn/credentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Passkeys {
    /// The account's passkeys, oldest first.
    pub items: Vec<PasskeyDoc>,
}

/// The passkeys of `account_id`, oldest first (an account has a handful).
async fn passkeys_of(state: &AppState, account_id: Uuid) -> Result<Vec<PasskeyDoc>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT credential_id AS id, label, created_at, last_used_at \
           FROM auth_account_passkeys WHERE account_id = $1 \
          ORDER BY created_at, credential_id LIMIT 100",
    )
    .bind(account_id)
    .fetch_all(state.pool())
    .await?)
}

/// The caller's passkeys.
#[utoipa::path(
    get,
    path = "/api/v1/auth/webauthn/credentials",
    tag = "auth",
    operation_id = "passkeys",
    params(ReadHeaders),
    responses(
        (status = 200, description = "The caller's passkeys, oldest first", body = Passkeys),
        BadRequest,
        Unavailable,
    )
)]
pub async fn passkeys(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let account = caller.account().ok_or(ApiError::Unauthenticated)?;
    consistency::honour(&state, &headers, ACCOUNTS_PROJECTION).await?;
    let items = passkeys_of(&state, account.account_id).await?;
    Ok(private(Passkeys { items }))
}

/// One live session of the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct SessionItem {
    /// The session.
    pub id: Uuid,
    /// Whether it is the session of the token that asked.
    #[sqlx(default)]
    pub current: bool,
    /// When it was opened (the login).
    pub created_at: DateTime<Utc>,
    /// When it last refreshed.
    pub last_used_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub expires_at: DateTime<Utc>,
    /// The client address of its login, as recorded.
    pub ip: Option<String>,
    /// The user agent of its login.
    pub user_agent: Option<String>,
    /// How its login proved itself (`pwd`, `otp`, `hwk`, `mfa`).
    pub amr: Vec<String>,
}

/// `GET /auth/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Sessions {
    /// Live sessions, newest first.
    pub items: Vec<SessionItem>,
}

/// A private answer: never stored by a shared cache, varying with the token.
fn private(body: impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(PRIVATE_CACHE_CONTROL),
    );
    headers.insert(VARY, HeaderValue::from_static(VARY_VALUE));
    response
}

/// The caller's own account.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    operation_id = "me",
    params(ReadHeaders),
    responses(
        (status = 200, description = "The caller's account", body = Me),
        BadRequest,
        NotFound,
        Unavailable,
    )
)]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let account = caller.account().ok_or(ApiError::Unauthenticated)?;
    consistency::honour(&state, &headers, ACCOUNTS_PROJECTION).await?;
    let row: Option<AccountRow> = sqlx::query_as(
        "SELECT email, roles, totp_enabled, recovery_codes_remaining, created_at \
           FROM auth_accounts WHERE account_id = $1",
    )
    .bind(account.account_id)
    .fetch_optional(state.pool())
    .await?;
    // A token's account always has a row once the projection has seen its registration.
    let Some(row) = row else {
        return Err(ApiError::NotFound("no such account".to_owned()));
    };
    Ok(private(Me {
        account_id: account.account_id,
        email: row.email,
        roles: row.roles,
        totp_enabled: row.totp_enabled,
        recovery_codes_remaining: row.recovery_codes_remaining,
        passkeys: passkeys_of(&state, account.account_id).await?,
        created_at: row.created_at,
        session_id: account.session_id,
    }))
}

/// What `GET /auth/me` reads of the caller's `auth_accounts` row.
#[derive(sqlx::FromRow)]
struct AccountRow {
    email: String,
    roles: Vec<String>,
    totp_enabled: bool,
    recovery_codes_remaining: i32,
    created_at: DateTime<Utc>,
}

/// The caller's live sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/auth/sessions",
    tag = "auth",
    operation_id = "sessions",
    params(ReadHeaders),
    responses(
        (status = 200, description = "Live sessions, newest first", body = Sessions),
        BadRequest,
        Unavailable,
    )
)]
pub async fn sessions(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let account = caller.account().ok_or(ApiError::Unauthenticated)?;
    consistency::honour(&state, &headers, SESSIONS_PROJECTION).await?;
    let mut items: Vec<SessionItem> = sqlx::query_as(
        "SELECT id, created_at, last_used_at, expires_at, ip, user_agent, amr \
           FROM auth_sessions \
          WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > now() \
            AND (refresh_expires_at IS NULL OR refresh_expires_at > now()) \
          ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(account.account_id)
    .bind(MAX_SESSIONS_LISTED)
    .fetch_all(state.pool())
    .await?;
    for item in &mut items {
        item.current = item.id == account.session_id;
    }
    Ok(private(Sessions { items }))
}

/// The key set (RFC 7517). Documentation only: the body is `auth::Jwks`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Jwks)]
pub struct JwksDoc {
    /// Every verifying key, the signing one first.
    pub keys: Vec<JwkDoc>,
}

/// One Ed25519 public key (RFC 8037). Documentation only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Jwk)]
pub struct JwkDoc {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id: its RFC 7638 thumbprint, as tokens name it in `kid`.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// The public keys access tokens are signed with.
#[utoipa::path(
    get,
    path = "/api/v1/auth/jwks.json",
    tag = "auth",
    operation_id = "jwks",
    responses(
        (status = 200, description = "The key set", body = JwksDoc, headers(
            ("Cache-Control" = String, description = "public, max-age=300"),
        )),
    )
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.authenticator().verifier().jwks()).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_JWKS));
    response
}
