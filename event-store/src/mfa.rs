//! Second factors' rows beside the log: every statement on `auth_totp` (sealed TOTP secrets,
//! pending and in force, and the last accepted step), `auth_recovery_codes` (one Argon2id hash
//! per code) and `auth_mfa_tokens` (half-finished logins, as SHA-256). Nothing here may enter
//! the event log (ACCOUNTS.md); what changes it is recorded there by events appended in the
//! same transaction (docs/decisions/0012-totp-and-recovery-codes.md).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// An account's TOTP row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Totp {
    /// The sealed secret in force; `None` while TOTP is off.
    pub secret: Option<Vec<u8>>,
    /// The sealed secret set up and not yet confirmed.
    pub pending_secret: Option<Vec<u8>>,
    /// When the pending secret stops being confirmable.
    pub pending_expires_at: Option<DateTime<Utc>>,
    /// The last step a code was accepted for.
    pub last_step: Option<i64>,
}

impl Totp {
    /// Whether TOTP is on.
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    /// The pending secret, if it is still confirmable at `now`.
    pub fn live_pending(&self, now: DateTime<Utc>) -> Option<&[u8]> {
        match (&self.pending_secret, self.pending_expires_at) {
            (Some(secret), Some(expires_at)) if expires_at > now => Some(secret),
            _ => None,
        }
    }
}

/// The TOTP row of `account_id`, if it ever set TOTP up.
///
/// # Errors
///
/// The database failed.
pub async fn totp<'e>(
    executor: impl PgExecutor<'e>,
    account_id: Uuid,
) -> Result<Option<Totp>, sqlx::Error> {
    sqlx::query_as(
        "SELECT secret, pending_secret, pending_expires_at, last_step \
           FROM auth_totp WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(executor)
    .await
}

/// Whether TOTP is on for `account_id`.
///
/// # Errors
///
/// The database failed.
pub async fn totp_enabled<'e>(
    executor: impl PgExecutor<'e>,
    account_id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(totp(executor, account_id)
        .await?
        .is_some_and(|row| row.enabled()))
}

/// Stores a pending secret (replacing an earlier one) until `expires_at`.
///
/// # Errors
///
/// The database failed.
pub async fn set_pending<'e>(
    executor: impl PgExecutor<'e>,
    account_id: Uuid,
    sealed: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_totp (account_id, pending_secret, pending_expires_at) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (account_id) DO UPDATE \
            SET pending_secret = EXCLUDED.pending_secret, \
                pending_expires_at = EXCLUDED.pending_expires_at, updated_at = now()",
    )
    .bind(account_id)
    .bind(sealed)
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Records `step` as the last accepted one, if it is later than the last: `false` when another
/// request accepted this step or a later one first (the code was replayed).
///
/// # Errors
///
/// The database failed.
pub async fn claim_step(
    tx: &mut PgConnection,
    account_id: Uuid,
    step: i64,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "UPDATE auth_totp SET last_step = $2, updated_at = now() \
          WHERE account_id = $1 AND (last_step IS NULL OR last_step < $2)",
    )
    .bind(account_id)
    .bind(step)
    .execute(tx)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Puts the pending secret in force, if it is still confirmable and TOTP is off: `false`
/// otherwise (a concurrent enable won, or it expired).
///
/// # Errors
///
/// The database failed.
pub async fn enable(tx: &mut PgConnection, account_id: Uuid) -> Result<bool, sqlx::Error> {
    let enabled = sqlx::query(
        "UPDATE auth_totp SET secret = pending_secret, pending_secret = NULL, \
                pending_expires_at = NULL, enabled_at = now(), updated_at = now() \
          WHERE account_id = $1 AND secret IS NULL AND pending_secret IS NOT NULL \
            AND pending_expires_at > now()",
    )
    .bind(account_id)
    .execute(tx)
    .await?;
    Ok(enabled.rows_affected() == 1)
}

/// Switches TOTP off: drops the secrets (the last step stays, so it never goes back) and
/// every recovery code. `false` when it was already off.
///
/// # Errors
///
/// The database failed.
pub async fn disable(tx: &mut PgConnection, account_id: Uuid) -> Result<bool, sqlx::Error> {
    let disabled = sqlx::query(
        "UPDATE auth_totp SET secret = NULL, pending_secret = NULL, pending_expires_at = NULL, \
                enabled_at = NULL, updated_at = now() \
          WHERE account_id = $1 AND secret IS NOT NULL",
    )
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM auth_recovery_codes WHERE account_id = $1")
        .bind(account_id)
        .execute(tx)
        .await?;
    Ok(disabled.rows_affected() == 1)
}

/// One stored recovery code.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecoveryCode {
    /// Its place in the set.
    pub position: i16,
    /// Its Argon2id PHC string.
    pub code_hash: String,
}

/// Replaces the whole set of `account_id` with `hashes`.
///
/// # Errors
///
/// The database failed.
pub async fn replace_recovery_codes(
    tx: &mut PgConnection,
    account_id: Uuid,
    hashes: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_recovery_codes WHERE account_id = $1")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    let positions: Vec<i16> = (0..hashes.len())
        .map(|i| i16::try_from(i).unwrap_or(i16::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO auth_recovery_codes (account_id, position, code_hash) \
         SELECT $1, p, h FROM unnest($2::smallint[], $3::text[]) AS c(p, h)",
    )
    .bind(account_id)
    .bind(&positions)
    .bind(hashes)
    .execute(tx)
    .await?;
    Ok(())
}

/// The unspent recovery codes of `account_id` (at most a set's size).
///
/// # Errors
///
/// The database failed.
pub async fn recovery_codes<'e>(
    executor: impl PgExecutor<'e>,
    account_id: Uuid,
) -> Result<Vec<RecoveryCode>, sqlx::Error> {
    sqlx::query_as(
        "SELECT position, code_hash FROM auth_recovery_codes \
          WHERE account_id = $1 ORDER BY position",
    )
    .bind(account_id)
    .fetch_all(executor)
    .await
}

/// Spends the code at `position`: `Some(remaining)` when this call spent it, `None` when
/// another request spent it first.
///
/// # Errors
///
/// The database failed.
pub async fn spend_recovery_code(
    tx: &mut PgConnection,
    account_id: Uuid,
    position: i16,
) -> Result<Option<u32>, sqlx::Error> {
    let spent =
        sqlx::query("DELETE FROM auth_recovery_codes WHERE account_id = $1 AND position = $2")
            .bind(account_id)
            .bind(position)
            .execute(&mut *tx)
            .await?;
    if spent.rows_affected() != 1 {
        return Ok(None);
    }
    let remaining: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth_recovery_codes WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(tx)
            .await?;
    Ok(Some(u32::try_from(remaining).unwrap_or(0)))
}

/// A half-finished login.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MfaToken {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// Whose login it is.
    pub account_id: Uuid,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Wrong codes so far.
    pub failures: i32,
}

/// Stores a new MFA token, and drops this account's expired ones.
///
/// # Errors
///
/// The database failed.
pub async fn insert_mfa_token(
    tx: &mut PgConnection,
    token_hash: &[u8],
    account_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_mfa_tokens WHERE account_id = $1 AND expires_at <= now()")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO auth_mfa_tokens (token_hash, account_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(account_id)
    .bind(expires_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// The live MFA token with `token_hash`: not expired, fewer than `max_failures` wrong codes.
///
/// # Errors
///
/// The database failed.
pub async fn live_mfa_token<'e>(
    executor: impl PgExecutor<'e>,
    token_hash: &[u8],
    max_failures: i32,
) -> Result<Option<MfaToken>, sqlx::Error> {
    sqlx::query_as(
        "SELECT token_hash, account_id, expires_at, failures FROM auth_mfa_tokens \
          WHERE token_hash = $1 AND expires_at > now() AND failures < $2",
    )
    .bind(token_hash)
    .bind(max_failures)
    .fetch_optional(executor)
    .await
}

/// Counts a wrong code against an MFA token; written on its own, so the failure stays
/// counted whatever happens to the request.
///
/// # Errors
///
/// The database failed.
pub async fn mfa_token_failed<'e>(
    executor: impl PgExecutor<'e>,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE auth_mfa_tokens SET failures = failures + 1 WHERE token_hash = $1")
        .bind(token_hash)
        .execute(executor)
        .await?;
    Ok(())
}

/// Spends an MFA token: `true` when this call took it while it was live.
///
/// # Errors
///
/// The database failed.
pub async fn take_mfa_token(
    tx: &mut PgConnection,
    token_hash: &[u8],
    max_failures: i32,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query(
        "DELETE FROM auth_mfa_tokens \
          WHERE token_hash = $1 AND expires_at > now() AND failures < $2",
    )
    .bind(token_hash)
    .bind(max_failures)
    .execute(tx)
    .await?;
    Ok(taken.rows_affected() == 1)
}
