//! The background worker: serves queued registrations, resends and forgots after their 202
//! went out, doing what the address calls for (ACCOUNTS.md, "Registration"). Each request is
//! taken, decided and answered with events, rows and mail in one transaction; a failure rolls
//! it back into the queue. Several replicas' workers share the queue (`SKIP LOCKED`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use event_store::accounts::{self, Credentials, MailTokenKind, QueuedRequest, RequestKind};
use events::EventMetadata;
use service_kit::shutdown::Shutdown;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::crypto;
use super::problems::AuthFailure;
use super::routes::OWNER;
use super::{AuthState, Staged};
use crate::domain::account::AccountCommand;

/// Runs the worker until `shutdown`: serves the queue whenever a request is queued in this
/// process, and every `worker_poll` for those queued elsewhere; purges ended sessions' rows
/// and old rate-limit windows now and then.
pub async fn run(auth: Arc<AuthState>, shutdown: Shutdown) {
    let mut rounds: u64 = 0;
    loop {
        loop {
            match serve_one(&auth).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "auth worker: request failed; it stays queued");
                    break;
                }
            }
        }
        if rounds.is_multiple_of(3600) {
            purge(&auth).await;
        }
        rounds += 1;
        tokio::select! {
            () = shutdown.wait() => return,
            () = auth.queued.notified() => {}
            () = tokio::time::sleep(auth.settings.worker_poll) => {}
        }
    }
}

async fn purge(auth: &AuthState) {
    if let Err(error) = event_store::sessions::purge_expired(&auth.pool).await {
        tracing::warn!(%error, "cannot purge ended sessions' refresh tokens");
    }
    let day = Duration::from_secs(24 * 3600);
    if let Err(error) = event_store::rate_limits::purge(&auth.pool, day).await {
        tracing::warn!(%error, "cannot purge old rate-limit windows");
    }
}

/// Serves the oldest queued request; `false` when the queue was empty.
///
/// # Errors
///
/// The database failed; the request stays queued.
pub async fn serve_one(auth: &AuthState) -> Result<bool, AuthFailure> {
    let mut tx = auth.pool.begin().await?;
    let Some(request) = accounts::take_next(&mut tx).await? else {
        return Ok(false);
    };
    let metadata: EventMetadata = serde_json::from_value(request.metadata.clone())?;
    let existing = accounts::lock_by_email(&mut tx, &request.email).await?;
    let events = match (request.kind, existing) {
        (RequestKind::Register, None) => register_new(auth, &mut tx, &request, &metadata).await?,
        (RequestKind::Register, Some(account)) if !account.verified => {
            if let Some(hash) = &request.password_hash {
                accounts::set_password(&mut tx, account.account_id, hash).await?;
            }
            let expires_at = verification(auth, &mut tx, &account).await?;
            auth.stage_account_all(
                account.account_id,
                vec![
                    AccountCommand::RepeatRegistration,
                    AccountCommand::RequestVerification { expires_at },
                ],
                &metadata,
            )
            .await?
            .events
        }
        (RequestKind::Register, Some(account)) => {
            auth.mail(
                &mut tx,
                "account_exists",
                &account.email,
                account.account_id,
                None,
            )
            .await?;
            Vec::new()
        }
        (RequestKind::Resend, Some(account)) if !account.verified => {
            let expires_at = verification(auth, &mut tx, &account).await?;
            auth.stage_account(
                account.account_id,
                AccountCommand::RequestVerification { expires_at },
                &metadata,
            )
            .await?
            .events
        }
        (RequestKind::Forgot, Some(account)) => {
            reset(auth, &mut tx, &account, OWNER, &metadata).await?
        }
        // Unknown addresses get no mail; a verified one asking for a link neither.
        (RequestKind::Resend | RequestKind::Forgot, _) => Vec::new(),
    };
    auth.commit(tx, &events).await?;
    Ok(true)
}

async fn register_new(
    auth: &AuthState,
    tx: &mut Transaction<'_, Postgres>,
    request: &QueuedRequest,
    metadata: &EventMetadata,
) -> Result<Vec<event_store::append::NewEvent>, AuthFailure> {
    let Some(password_hash) = request.password_hash.clone() else {
        return Ok(Vec::new());
    };
    let account = Credentials {
        account_id: Uuid::now_v7(),
        email: request.email.clone(),
        password_hash,
        verified: false,
        disabled: false,
        roles: Vec::new(),
    };
    accounts::insert(tx, &account)
        .await
        .map_err(|error| match error {
            // Another worker registered the address first: roll back, serve it again later.
            accounts::CredentialsError::EmailTaken => AuthFailure::Refused("address taken".into()),
            accounts::CredentialsError::Database(error) => error.into(),
        })?;
    let expires_at = verification(auth, tx, &account).await?;
    let Staged { events, .. } = auth
        .stage_account_all(
            account.account_id,
            vec![
                AccountCommand::Register {
                    account_id: account.account_id,
                    email: account.email.clone(),
                },
                AccountCommand::RequestVerification { expires_at },
            ],
            metadata,
        )
        .await?;
    Ok(events)
}

/// Mails a new verification link (the old ones die): the token row and the outbox row;
/// returns when the link expires, for the `VerificationRequested` the caller stages.
async fn verification(
    auth: &AuthState,
    tx: &mut Transaction<'_, Postgres>,
    account: &Credentials,
) -> Result<chrono::DateTime<Utc>, AuthFailure> {
    let expires_at = Utc::now() + auth.settings.verify_ttl;
    accounts::kill_mail_tokens(tx, account.account_id, MailTokenKind::VerifyEmail).await?;
    let token = crypto::mail_token();
    accounts::insert_mail_token(
        tx,
        &token.hash,
        MailTokenKind::VerifyEmail,
        account.account_id,
        expires_at,
    )
    .await?;
    auth.mail(
        tx,
        "verify_email",
        &account.email,
        account.account_id,
        Some(("verify-email", &token.value, expires_at)),
    )
    .await?;
    Ok(expires_at)
}

/// Mails a reset link to an existing account.
/// Mails `account` a reset link (its earlier links die) inside `tx`; stages the
/// `PasswordResetRequested` that records it, asked for by `by`.
pub(crate) async fn reset(
    auth: &AuthState,
    tx: &mut Transaction<'_, Postgres>,
    account: &Credentials,
    by: events::account::ResetRequestedBy,
    metadata: &EventMetadata,
) -> Result<Vec<event_store::append::NewEvent>, AuthFailure> {
    let expires_at = Utc::now() + auth.settings.reset_ttl;
    let staged = auth
        .stage_account(
            account.account_id,
            AccountCommand::RequestPasswordReset { expires_at, by },
            metadata,
        )
        .await?;
    accounts::kill_mail_tokens(tx, account.account_id, MailTokenKind::PasswordReset).await?;
    let token = crypto::mail_token();
    accounts::insert_mail_token(
        tx,
        &token.hash,
        MailTokenKind::PasswordReset,
        account.account_id,
        expires_at,
    )
    .await?;
    auth.mail(
        tx,
        "password_reset",
        &account.email,
        account.account_id,
        Some(("reset-password", &token.value, expires_at)),
    )
    .await?;
    Ok(staged.events)
}
