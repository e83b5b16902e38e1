//! Refresh tokens beside the log: every statement on `auth_refresh_tokens`. A session is a
//! rotation family: one row per generation, stored as SHA-256, the newest unspent one current.
//! Spent rows stay until the session ends so a replay is recognised as reuse; revoking a
//! session deletes its rows, so nothing of it can be refreshed again (ACCOUNTS.md, "Rotation
//! and reuse").

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// One generation of a session's refresh token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefreshToken {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// The session (rotation family).
    pub session_id: Uuid,
    /// Whose session it is.
    pub account_id: Uuid,
    /// 1 for the login's token, one more per rotation.
    pub generation: i64,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it was rotated, if it was.
    pub spent_at: Option<DateTime<Utc>>,
    /// When it stops working unspent.
    pub expires_at: DateTime<Utc>,
    /// When its session ends whatever happens.
    pub session_expires_at: DateTime<Utc>,
    /// When the login that opened the session happened (the access tokens' `auth_time`).
    pub authenticated_at: DateTime<Utc>,
    /// How that login proved itself (the access tokens' `amr`).
    pub amr: Vec<String>,
}

const COLUMNS: &str = "token_hash, session_id, account_id, generation, issued_at, spent_at, \
                       expires_at, session_expires_at, authenticated_at, amr";

/// Stores a newly issued token.
///
/// # Errors
///
/// The database failed.
pub async fn insert(tx: &mut PgConnection, token: &RefreshToken) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_refresh_tokens \
                (token_hash, session_id, account_id, generation, issued_at, expires_at, \
                 session_expires_at, authenticated_at, amr) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&token.token_hash)
    .bind(token.session_id)
    .bind(token.account_id)
    .bind(token.generation)
    .bind(token.issued_at)
    .bind(token.expires_at)
    .bind(token.session_expires_at)
    .bind(token.authenticated_at)
    .bind(&token.amr)
    .execute(tx)
    .await?;
    Ok(())
}

/// The token with this hash, spent or not.
///
/// # Errors
///
/// The database failed.
pub async fn by_hash<'e>(
    executor: impl PgExecutor<'e>,
    token_hash: &[u8],
) -> Result<Option<RefreshToken>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM auth_refresh_tokens WHERE token_hash = $1"
    ))
    .bind(token_hash)
    .fetch_optional(executor)
    .await
}

/// The session's newest generation.
///
/// # Errors
///
/// The database failed.
pub async fn current<'e>(
    executor: impl PgExecutor<'e>,
    session_id: Uuid,
) -> Result<Option<RefreshToken>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM auth_refresh_tokens WHERE session_id = $1 \
          ORDER BY generation DESC LIMIT 1"
    ))
    .bind(session_id)
    .fetch_optional(executor)
    .await
}

/// Spends the token if it is still unspent; `false` when another refresh spent it first (the
/// guard makes single use hold across replicas).
///
/// # Errors
///
/// The database failed.
pub async fn spend(tx: &mut PgConnection, token_hash: &[u8]) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE auth_refresh_tokens SET spent_at = now() \
          WHERE token_hash = $1 AND spent_at IS NULL",
    )
    .bind(token_hash)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes a session: deletes every generation of it. Returns whether it was live.
///
/// # Errors
///
/// The database failed.
pub async fn revoke(tx: &mut PgConnection, session_id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM auth_refresh_tokens WHERE session_id = $1")
        .bind(session_id)
        .execute(tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The account's live sessions (an unspent, unexpired token in a session not yet over), least
/// recently used first.
///
/// # Errors
///
/// The database failed.
pub async fn live_sessions(
    tx: &mut PgConnection,
    account_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT session_id FROM auth_refresh_tokens \
          WHERE account_id = $1 AND spent_at IS NULL \
            AND expires_at > now() AND session_expires_at > now() \
          ORDER BY issued_at, session_id",
    )
    .bind(account_id)
    .fetch_all(tx)
    .await
}

/// Deletes the rows of sessions that are over: their tokens could only be refused anyway.
/// Returns how many.
///
/// # Errors
///
/// The database failed.
pub async fn purge_expired<'e>(executor: impl PgExecutor<'e>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM auth_refresh_tokens WHERE session_expires_at < now()")
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use sqlx::PgPool;

    use super::*;

    fn token(session_id: Uuid, generation: i64, hash: u8) -> RefreshToken {
        let now = Utc::now();
        RefreshToken {
            token_hash: vec![hash; 32],
            session_id,
            account_id: Uuid::nil(),
            generation,
            issued_at: now,
            spent_at: None,
            expires_at: now + Duration::days(14),
            session_expires_at: now + Duration::days(30),
            authenticated_at: now,
            amr: vec!["pwd".to_owned()],
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_token_is_spent_once_and_a_revoked_session_has_none_left(
        pool: PgPool,
    ) -> sqlx::Result<()> {
        let session = Uuid::now_v7();
        let mut tx = pool.begin().await?;
        insert(&mut tx, &token(session, 1, 1)).await?;
        assert!(spend(&mut tx, &[1; 32]).await?);
        assert!(!spend(&mut tx, &[1; 32]).await?, "single use");
        insert(&mut tx, &token(session, 2, 2)).await?;
        tx.commit().await?;

        let current = current(&pool, session).await?.expect("stored");
        assert_eq!(current.generation, 2);
        let spent = by_hash(&pool, &[1; 32]).await?.expect("stored");
        assert!(spent.spent_at.is_some());

        let mut tx = pool.begin().await?;
        assert_eq!(live_sessions(&mut tx, Uuid::nil()).await?, [session]);
        assert!(revoke(&mut tx, session).await?);
        assert!(live_sessions(&mut tx, Uuid::nil()).await?.is_empty());
        tx.commit().await?;
        assert_eq!(by_hash(&pool, &[2; 32]).await?, None);
        Ok(())
    }
}
