//! The `auth_accounts` read model: one row per account with its address, the roles its
//! tokens would carry now, whether it is verified or disabled, its second factors, and the stream revision it
//! reflects, and its passkeys (`auth_account_passkeys`: id, label, when). No secret reaches it:
//! the account events carry none.

use async_trait::async_trait;
use events::RecordedEvent;
use events::account::{self, AccountEvent};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::decode::{decode, uuid_id};
use crate::subscription::{Projection, ProjectionError};
use event_store::catalogue::{self, ReadModel};

/// Projects `Account` streams into the `auth_accounts` table.
///
/// Every event moves the row's `version`; the `version < $v` guards make a replayed event a
/// no-op.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthAccountsProjection;

impl AuthAccountsProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = catalogue::AUTH_ACCOUNTS.name;
}

/// The change an event makes to the row besides its time and revision.
enum Change {
    /// Only the revision moves (events this model does not show, e.g. a mailed link).
    Nothing,
    /// `verified` becomes true and `user` joins the roles.
    Verified,
    /// The granted roles are now these (`user` stays as `verified` says).
    Roles(Vec<String>),
    /// `disabled` becomes this.
    Disabled(bool),
    /// `totp_enabled` becomes this; switching it off also leaves no recovery code.
    Totp(bool),
    /// `recovery_codes_remaining` becomes this.
    RecoveryCodes(i32),
}

/// A change to the account's listed passkeys (`auth_account_passkeys`).
enum PasskeyChange {
    /// Listed: credential id and label.
    Registered(String, String),
    /// No longer listed.
    Removed(String),
    /// Signed in now: its `last_used_at`.
    Used(String),
}

#[async_trait]
impl Projection for AuthAccountsProjection {
    fn model(&self) -> ReadModel {
        catalogue::AUTH_ACCOUNTS
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded: AccountEvent = decode(event, Some(account::EVENT_VERSION))?;
        let id = uuid_id(event)?;
        let at = event.recorded_at;
        let version = event.version;
        let mut passkey = None;
        let change = match decoded {
            AccountEvent::AccountRegistered { email, .. } => {
                // A registration is revision 1 of its stream; a conflict can only be a replay.
                sqlx::query(
                    "INSERT INTO auth_accounts \
                         (account_id, email, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $3, $4) \
                     ON CONFLICT (account_id) DO NOTHING",
                )
                .bind(id)
                .bind(email)
                .bind(at)
                .bind(version)
                .execute(&mut **tx)
                .await?;
                return Ok(());
            }
            AccountEvent::EmailVerified { .. } => Change::Verified,
            AccountEvent::RolesChanged { roles, .. } => Change::Roles(roles),
            AccountEvent::AccountDisabled { .. } => Change::Disabled(true),
            AccountEvent::AccountEnabled { .. } => Change::Disabled(false),
            AccountEvent::TotpEnabled { .. } => Change::Totp(true),
            AccountEvent::TotpDisabled { .. } => Change::Totp(false),
            AccountEvent::RecoveryCodesGenerated { count, .. } => {
                Change::RecoveryCodes(i32::try_from(count).unwrap_or(i32::MAX))
            }
            AccountEvent::RecoveryCodeUsed { remaining, .. } => {
                Change::RecoveryCodes(i32::try_from(remaining).unwrap_or(i32::MAX))
            }
            AccountEvent::PasskeyRegistered {
                credential_id,
                label,
                ..
            } => {
                passkey = Some(PasskeyChange::Registered(credential_id, label));
                Change::Nothing
            }
            AccountEvent::PasskeyRemoved { credential_id, .. } => {
                passkey = Some(PasskeyChange::Removed(credential_id));
                Change::Nothing
            }
            AccountEvent::PasskeyUsed { credential_id, .. } => {
                passkey = Some(PasskeyChange::Used(credential_id));
                Change::Nothing
            }
            // Events this model does not show; the row still moves to this revision so its
            // ETag follows the stream.
            _ => Change::Nothing,
        };
        let set = match &change {
            Change::Nothing => "",
            Change::Verified => {
                "verified = true, roles = CASE WHEN 'user' = ANY(roles) THEN roles \
                 ELSE array_prepend('user', roles) END,"
            }
            Change::Roles(_) => {
                "roles = CASE WHEN verified THEN array_prepend('user', $4::text[]) \
                 ELSE $4::text[] END,"
            }
            Change::Disabled(_) => "disabled = $4,",
            Change::Totp(_) => {
                "totp_enabled = $4, recovery_codes_remaining = CASE WHEN $4 \
                 THEN recovery_codes_remaining ELSE 0 END,"
            }
            Change::RecoveryCodes(_) => "recovery_codes_remaining = $4,",
        };
        // `set` is one of the constants above, never input.
        let sql = format!(
            "UPDATE auth_accounts SET {set} updated_at = $2, version = $3 \
              WHERE account_id = $1 AND version < $3"
        );
        let query = sqlx::query(&sql).bind(id).bind(at).bind(version);
        let query = match change {
            Change::Roles(granted) => query.bind(granted),
            Change::Disabled(flag) | Change::Totp(flag) => query.bind(flag),
            Change::RecoveryCodes(remaining) => query.bind(remaining),
            Change::Nothing | Change::Verified => query,
        };
        let updated = query.execute(&mut **tx).await?;
        if updated.rows_affected() == 0 {
            return ensure_row(tx, id, version).await;
        }
        // Only when the row moved: a replayed event changes no passkey either.
        match passkey {
            Some(PasskeyChange::Registered(credential_id, label)) => {
                sqlx::query(
                    "INSERT INTO auth_account_passkeys \
                         (credential_id, account_id, label, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (credential_id) DO NOTHING",
                )
                .bind(credential_id)
                .bind(id)
                .bind(label)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            Some(PasskeyChange::Removed(credential_id)) => {
                sqlx::query(
                    "DELETE FROM auth_account_passkeys \
                      WHERE credential_id = $1 AND account_id = $2",
                )
                .bind(credential_id)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            // A sign-in racing the removal finds no row, and lists nothing again.
            Some(PasskeyChange::Used(credential_id)) => {
                sqlx::query(
                    "UPDATE auth_account_passkeys SET last_used_at = $3 \
                      WHERE credential_id = $1 AND account_id = $2",
                )
                .bind(credential_id)
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            None => {}
        }
        Ok(())
    }
}

/// An update that touched no row is a replay when the row exists; a stream without a row
/// contradicts the model and stops the projection.
async fn ensure_row(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    version: i64,
) -> Result<(), ProjectionError> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM auth_accounts WHERE account_id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    match current {
        Some(_) => Ok(()),
        None => Err(ProjectionError::poison(format!(
            "account {id} has no row to apply revision {version} to"
        ))),
    }
}
