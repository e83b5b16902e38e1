//! Passkeys' rows beside the log: every statement on `auth_webauthn_ceremonies` (ceremony
//! state between `options` and `finish`, used once, any replica) and `auth_passkeys` (the
//! registered credentials' public keys and counters). What changes the set of passkeys is
//! recorded in the log by events appended in the same transaction
//! (docs/decisions/0016-passkeys.md).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// Which ceremony a challenge belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Registering a passkey.
    Register,
    /// Signing in with one.
    Login,
}

impl CeremonyKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
        }
    }
}

/// A ceremony begun by `options`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Ceremony {
    /// The account; `None` for the fake login ceremony of an unknown address.
    pub account_id: Option<Uuid>,
    /// webauthn-rs's state; `None` when fake.
    pub state: Option<serde_json::Value>,
    /// The label asked for at register/options.
    pub label: Option<String>,
    /// The address a login ceremony was asked for.
    pub email: Option<String>,
}

/// Stores a ceremony until `expires_at`, and forgets expired ones on the way (the table stays
/// as small as the ceremonies of the last few minutes).
///
/// # Errors
///
/// The database failed.
pub async fn begin(
    executor: &mut PgConnection,
    challenge_id: Uuid,
    kind: CeremonyKind,
    ceremony: &Ceremony,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_webauthn_ceremonies WHERE expires_at < now()")
        .execute(&mut *executor)
        .await?;
    sqlx::query(
        "INSERT INTO auth_webauthn_ceremonies \
                (challenge_id, kind, account_id, state, label, email, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(challenge_id)
    .bind(kind.as_str())
    .bind(ceremony.account_id)
    .bind(&ceremony.state)
    .bind(&ceremony.label)
    .bind(&ceremony.email)
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Takes the live ceremony `challenge_id` of `kind`: deleted here, so only one finish can use
/// it. `None` when it is unknown, of the other kind, expired or already taken.
///
/// # Errors
///
/// The database failed.
pub async fn take<'e>(
    executor: impl PgExecutor<'e>,
    challenge_id: Uuid,
    kind: CeremonyKind,
) -> Result<Option<Ceremony>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM auth_webauthn_ceremonies \
          WHERE challenge_id = $1 AND kind = $2 AND expires_at > now() \
          RETURNING account_id, state, label, email",
    )
    .bind(challenge_id)
    .bind(kind.as_str())
    .fetch_optional(executor)
    .await
}

/// A registered passkey.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredPasskey {
    /// The credential id, base64url.
    pub credential_id: String,
    /// The account.
    pub account_id: Uuid,
    /// The owner's label.
    pub label: String,
    /// webauthn-rs's `Passkey`.
    pub passkey: serde_json::Value,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Why a passkey could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// A passkey with this credential id is registered already (to any account).
    #[error("the credential is registered already")]
    Taken,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Stores a newly registered passkey, inside the transaction appending `PasskeyRegistered`.
///
/// # Errors
///
/// [`PasskeyError::Taken`] for a credential id registered already; database failures.
pub async fn insert(
    tx: &mut PgConnection,
    credential_id: &str,
    account_id: Uuid,
    label: &str,
    passkey: &serde_json::Value,
) -> Result<DateTime<Utc>, PasskeyError> {
    sqlx::query_scalar(
        "INSERT INTO auth_passkeys (credential_id, account_id, label, passkey) \
         VALUES ($1, $2, $3, $4) RETURNING created_at",
    )
    .bind(credential_id)
    .bind(account_id)
    .bind(label)
    .bind(passkey)
    .fetch_one(tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("auth_passkeys_pkey") => {
            PasskeyError::Taken
        }
        _ => PasskeyError::Database(error),
    })
}

/// The account's passkeys, oldest first.
///
/// # Errors
///
/// The database failed.
pub async fn of_account<'e>(
    executor: impl PgExecutor<'e>,
    account_id: Uuid,
) -> Result<Vec<StoredPasskey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT credential_id, account_id, label, passkey, created_at, last_used_at \
           FROM auth_passkeys WHERE account_id = $1 ORDER BY created_at, credential_id",
    )
    .bind(account_id)
    .fetch_all(executor)
    .await
}

/// Records a sign-in with the passkey: its updated state (the signature counter) and when.
///
/// # Errors
///
/// The database failed.
pub async fn used(
    tx: &mut PgConnection,
    credential_id: &str,
    passkey: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE auth_passkeys SET passkey = $2, last_used_at = now() WHERE credential_id = $1",
    )
    .bind(credential_id)
    .bind(passkey)
    .execute(tx)
    .await?;
    Ok(())
}

/// Removes the account's passkey `credential_id`, inside the transaction appending
/// `PasskeyRemoved`: `false` when the account has no such passkey.
///
/// # Errors
///
/// The database failed.
pub async fn remove(
    tx: &mut PgConnection,
    account_id: Uuid,
    credential_id: &str,
) -> Result<bool, sqlx::Error> {
    let removed =
        sqlx::query("DELETE FROM auth_passkeys WHERE account_id = $1 AND credential_id = $2")
            .bind(account_id)
            .bind(credential_id)
            .execute(tx)
            .await?;
    Ok(removed.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{self, Credentials};
    use chrono::Duration;
    use sqlx::PgPool;

    async fn account(pool: &PgPool) -> Uuid {
        let account_id = Uuid::now_v7();
        let mut tx = pool.begin().await.expect("begin");
        accounts::insert(
            &mut tx,
            &Credentials {
                account_id,
                email: format!("{account_id}@example.com"),
                password_hash: "x".to_owned(),
                verified: true,
                disabled: false,
                roles: Vec::new(),
            },
        )
        .await
        .expect("insert");
        tx.commit().await.expect("commit");
        account_id
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_ceremony_is_taken_once_by_its_kind_and_never_after_it_expires(
        pool: PgPool,
    ) -> sqlx::Result<()> {
        let account_id = account(&pool).await;
        let ceremony = Ceremony {
            account_id: Some(account_id),
            state: Some(serde_json::json!({"challenge": "abc"})),
            label: Some("laptop".to_owned()),
            email: None,
        };
        let live = Uuid::now_v7();
        let expired = Uuid::now_v7();
        let mut conn = pool.acquire().await?;
        let soon = Utc::now() + Duration::minutes(5);
        begin(&mut conn, live, CeremonyKind::Register, &ceremony, soon).await?;
        let past = Utc::now() - Duration::seconds(1);
        begin(&mut conn, expired, CeremonyKind::Login, &ceremony, past).await?;

        assert_eq!(take(&pool, live, CeremonyKind::Login).await?, None, "kind");
        assert_eq!(
            take(&pool, live, CeremonyKind::Register).await?,
            Some(ceremony)
        );
        assert_eq!(
            take(&pool, live, CeremonyKind::Register).await?,
            None,
            "once"
        );
        assert_eq!(
            take(&pool, expired, CeremonyKind::Login).await?,
            None,
            "expired"
        );
        Ok(())
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_credential_id_is_registered_once_and_removed_only_by_its_account(
        pool: PgPool,
    ) -> sqlx::Result<()> {
        let owner = account(&pool).await;
        let other = account(&pool).await;
        let key = serde_json::json!({"cred": 1});
        let mut tx = pool.begin().await?;
        insert(&mut tx, "Y3JlZA", owner, "laptop", &key)
            .await
            .expect("first");
        tx.commit().await?;
        let mut tx = pool.begin().await?;
        assert!(matches!(
            insert(&mut tx, "Y3JlZA", other, "phone", &key).await,
            Err(PasskeyError::Taken)
        ));
        drop(tx);

        let mut tx = pool.begin().await?;
        used(&mut tx, "Y3JlZA", &serde_json::json!({"cred": 2})).await?;
        tx.commit().await?;
        let stored = of_account(&pool, owner).await?;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].passkey, serde_json::json!({"cred": 2}));
        assert!(stored[0].last_used_at.is_some());

        let mut tx = pool.begin().await?;
        assert!(!remove(&mut tx, other, "Y3JlZA").await?);
        assert!(remove(&mut tx, owner, "Y3JlZA").await?);
        tx.commit().await?;
        assert!(of_account(&pool, owner).await?.is_empty());
        Ok(())
    }
}
