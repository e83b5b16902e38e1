//! Accounts' rows beside the log: every statement on `auth_credentials` (address, password
//! hash, whether the account may log in), `auth_mail_tokens` (mailed single-use tokens, as
//! SHA-256) and `auth_requests` (registrations, resends and forgots queued for the background
//! worker). None of it may enter the event log (ACCOUNTS.md); what changes it is recorded there
//! as events appended in the same transaction (docs/decisions/0009-transactional-side-rows.md).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// What a login needs to know of an account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Credentials {
    /// The account.
    pub account_id: Uuid,
    /// The normalized address.
    pub email: String,
    /// The Argon2id PHC string.
    pub password_hash: String,
    /// Whether the address was proven.
    pub verified: bool,
    /// Whether an admin disabled the account.
    pub disabled: bool,
    /// Granted roles besides `user`.
    pub roles: Vec<String>,
}

/// Why a credentials row could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Another account has the address.
    #[error("the address belongs to another account")]
    EmailTaken,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const COLUMNS: &str = "account_id, email, password_hash, verified, disabled, roles";

/// The account with address `email` (normalized), if any.
///
/// # Errors
///
/// The database failed.
pub async fn by_email<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM auth_credentials WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(executor)
    .await
}

/// The account `account_id`, if any.
///
/// # Errors
///
/// The database failed.
pub async fn by_id<'e>(
    executor: impl PgExecutor<'e>,
    account_id: Uuid,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM auth_credentials WHERE account_id = $1"
    ))
    .bind(account_id)
    .fetch_optional(executor)
    .await
}

/// The account with address `email`, locked for the rest of the transaction so two workers
/// cannot both decide on it.
///
/// # Errors
///
/// The database failed.
pub async fn lock_by_email(
    tx: &mut PgConnection,
    email: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM auth_credentials WHERE email = $1 FOR UPDATE"
    ))
    .bind(email)
    .fetch_optional(tx)
    .await
}

/// Stores a new account's credentials.
///
/// # Errors
///
/// [`CredentialsError::EmailTaken`] when another account has the address; database failures.
pub async fn insert(
    tx: &mut PgConnection,
    credentials: &Credentials,
) -> Result<(), CredentialsError> {
    sqlx::query(
        "INSERT INTO auth_credentials \
                (account_id, email, password_hash, verified, disabled, roles) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(credentials.account_id)
    .bind(&credentials.email)
    .bind(&credentials.password_hash)
    .bind(credentials.verified)
    .bind(credentials.disabled)
    .bind(&credentials.roles)
    .execute(tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("auth_credentials_email_key") => {
            CredentialsError::EmailTaken
        }
        _ => CredentialsError::Database(error),
    })?;
    Ok(())
}

/// Replaces the account's password hash.
///
/// # Errors
///
/// The database failed.
pub async fn set_password(
    tx: &mut PgConnection,
    account_id: Uuid,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE auth_credentials SET password_hash = $2, updated_at = now() \
          WHERE account_id = $1",
    )
    .bind(account_id)
    .bind(password_hash)
    .execute(tx)
    .await?;
    Ok(())
}

/// Marks the account's address as proven.
///
/// # Errors
///
/// The database failed.
pub async fn mark_verified(tx: &mut PgConnection, account_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE auth_credentials SET verified = true, updated_at = now() WHERE account_id = $1",
    )
    .bind(account_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// Serializes every change that could take `admin` away (a role change, a disable) for the
/// rest of the transaction, so two admins demoting each other at once cannot both pass the
/// last-admin check.
///
/// # Errors
///
/// The database failed.
pub async fn lock_admin_changes(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    // The key is arbitrary but fixed: this lock's only holders are these changes.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('auth_credentials.admins'))")
        .execute(tx)
        .await?;
    Ok(())
}

/// How many enabled accounts other than `account_id` hold `admin`.
///
/// # Errors
///
/// The database failed.
pub async fn other_admins(tx: &mut PgConnection, account_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM auth_credentials \
          WHERE 'admin' = ANY(roles) AND NOT disabled AND account_id <> $1",
    )
    .bind(account_id)
    .fetch_one(tx)
    .await
}

/// Replaces the account's granted roles.
///
/// # Errors
///
/// The database failed.
pub async fn set_roles(
    tx: &mut PgConnection,
    account_id: Uuid,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE auth_credentials SET roles = $2, updated_at = now() WHERE account_id = $1")
        .bind(account_id)
        .bind(roles)
        .execute(tx)
        .await?;
    Ok(())
}

/// Disables or enables the account.
///
/// # Errors
///
/// The database failed.
pub async fn set_disabled(
    tx: &mut PgConnection,
    account_id: Uuid,
    disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE auth_credentials SET disabled = $2, updated_at = now() WHERE account_id = $1",
    )
    .bind(account_id)
    .bind(disabled)
    .execute(tx)
    .await?;
    Ok(())
}

/// What a mailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTokenKind {
    /// Proves the address (24 hours).
    VerifyEmail,
    /// Sets a new password (30 minutes).
    PasswordReset,
}

impl MailTokenKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// Kills the account's outstanding tokens of `kind` (a new link replaces the old, a reset
/// kills every reset link).
///
/// # Errors
///
/// The database failed.
pub async fn kill_mail_tokens(
    tx: &mut PgConnection,
    account_id: Uuid,
    kind: MailTokenKind,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_mail_tokens WHERE account_id = $1 AND kind = $2")
        .bind(account_id)
        .bind(kind.as_str())
        .execute(tx)
        .await?;
    Ok(())
}

/// Stores a mailed token's hash.
///
/// # Errors
///
/// The database failed.
pub async fn insert_mail_token(
    tx: &mut PgConnection,
    token_hash: &[u8],
    kind: MailTokenKind,
    account_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_mail_tokens (token_hash, kind, account_id, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(kind.as_str())
    .bind(account_id)
    .bind(expires_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// Spends the live token of `kind` with this hash and returns its account; `None` when it is
/// unknown, expired or used. Single use holds across replicas: the update is guarded.
///
/// # Errors
///
/// The database failed.
pub async fn take_mail_token(
    tx: &mut PgConnection,
    token_hash: &[u8],
    kind: MailTokenKind,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE auth_mail_tokens SET used_at = now() \
          WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > now() \
         RETURNING account_id",
    )
    .bind(token_hash)
    .bind(kind.as_str())
    .fetch_optional(tx)
    .await
}

/// What a queued request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `POST /auth/register`.
    Register,
    /// `POST /auth/resend-verification`.
    Resend,
    /// `POST /auth/password/forgot`.
    Forgot,
}

impl RequestKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Resend => "resend",
            Self::Forgot => "forgot",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [Self::Register, Self::Resend, Self::Forgot]
            .into_iter()
            .find(|kind| kind.as_str() == raw)
    }
}

/// A request waiting for the background worker.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRequest {
    /// What it asks for.
    pub kind: RequestKind,
    /// The normalized address.
    pub email: String,
    /// The new password's hash (registrations only).
    pub password_hash: Option<String>,
    /// The request's audit metadata, for the events the worker appends.
    pub metadata: Value,
}

/// Queues `request` for the worker.
///
/// # Errors
///
/// The database failed.
pub async fn enqueue<'e>(
    executor: impl PgExecutor<'e>,
    request: &QueuedRequest,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_requests (kind, email, password_hash, metadata) VALUES ($1, $2, $3, $4)",
    )
    .bind(request.kind.as_str())
    .bind(&request.email)
    .bind(&request.password_hash)
    .bind(sqlx::types::Json(&request.metadata))
    .execute(executor)
    .await?;
    Ok(())
}

/// Takes the oldest queued request inside `tx`: deleted now, gone for good when `tx`
/// commits, back in the queue when it rolls back; other workers skip it meanwhile.
///
/// # Errors
///
/// The database failed.
pub async fn take_next(tx: &mut PgConnection) -> Result<Option<QueuedRequest>, sqlx::Error> {
    let row: Option<(String, String, Option<String>, sqlx::types::Json<Value>)> = sqlx::query_as(
        "DELETE FROM auth_requests WHERE id = ( \
             SELECT id FROM auth_requests ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) \
         RETURNING kind, email, password_hash, metadata",
    )
    .fetch_optional(tx)
    .await?;
    Ok(row.and_then(|(kind, email, password_hash, metadata)| {
        RequestKind::parse(&kind).map(|kind| QueuedRequest {
            kind,
            email,
            password_hash,
            metadata: metadata.0,
        })
    }))
}
