//! The mail outbox: every statement on `auth_mail_outbox`. Mail is written in the same
//! transaction as the events that cause it and deleted once RabbitMQ confirmed it, so a mail
//! is sent (at least once) exactly when its events exist (ACCOUNTS.md, "Mail on RabbitMQ").

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A mail waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Mail {
    /// The message id consumers dedupe on.
    pub message_id: Uuid,
    /// `verify_email`, `password_reset`, `account_exists`, `password_changed`, ...
    pub template: String,
    /// The address it goes to.
    pub recipient: String,
    /// The account it concerns.
    pub account_id: Option<Uuid>,
    /// The mailed token, for the templates with a link: the one place a token is kept whole,
    /// until the broker has it.
    pub token: Option<String>,
    /// The link carrying the token in its fragment.
    pub link: Option<String>,
    /// When the link stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the mail was written.
    pub created_at: DateTime<Utc>,
}

/// Writes `mail` into the outbox, inside the transaction of the events that cause it.
///
/// # Errors
///
/// The database failed.
pub async fn enqueue(tx: &mut PgConnection, mail: &Mail) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_mail_outbox \
                (message_id, template, recipient, account_id, token, link, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(mail.message_id)
    .bind(&mail.template)
    .bind(&mail.recipient)
    .bind(mail.account_id)
    .bind(&mail.token)
    .bind(&mail.link)
    .bind(mail.expires_at)
    .bind(mail.created_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// The oldest `limit` mails waiting.
///
/// # Errors
///
/// The database failed.
pub async fn pending<'e>(
    executor: impl PgExecutor<'e>,
    limit: i64,
) -> Result<Vec<Mail>, sqlx::Error> {
    sqlx::query_as(
        "SELECT message_id, template, recipient, account_id, token, link, expires_at, created_at \
           FROM auth_mail_outbox ORDER BY created_at, message_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// Deletes the mails the broker confirmed.
///
/// # Errors
///
/// The database failed.
pub async fn delete<'e>(executor: impl PgExecutor<'e>, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM auth_mail_outbox WHERE message_id = ANY($1)")
        .bind(ids)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}
