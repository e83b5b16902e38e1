//! Accounts' write side (ACCOUNTS.md): registration, verification, login, refresh with
//! rotation and reuse detection, logout, password forgot/reset/change, the background worker
//! that serves queued registrations, and the bootstrap admin.
//!
//! Every change is event-sourced (`Account`, `Session` and `LoginAttempt` streams); the
//! secrets it needs (password hashes, refresh and mail tokens) and the mail outbox are rows
//! beside the log written in the same transaction as the events
//! (docs/decisions/0009-transactional-side-rows.md), so no secret ever enters an event.

pub mod admin;
pub mod crypto;
pub mod limits;
pub mod mfa;
pub mod passkeys;
pub mod problems;
pub mod relying_party;
pub mod routes;
pub mod sessions;
pub mod settings;
pub mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_store::append::{self, AppendReceipt, NewEvent};
use event_store::load::AggregateLoader;
use event_store::mail_outbox::{self, Mail};
use event_store::wake::{AppendNotifier, EVENTS_CHANNEL};
use events::session::SessionEvent;
use events::{ConsistencyToken, EventMetadata, LogPosition};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::Decide;
use crate::domain::account::{Account, AccountCommand};
use crate::domain::session::Session;

pub use crypto::Crypto;
pub use problems::AuthFailure;
pub use settings::AuthSettings;

/// The actor of start-up and background work.
pub const SYSTEM: &str = "system";

/// What the accounts' handlers and worker share.
pub struct AuthState {
    /// The event store's pool.
    pub pool: PgPool,
    /// Settings.
    pub settings: AuthSettings,
    /// Keys, verifier, hasher.
    pub crypto: Crypto,
    notifier: AppendNotifier,
    accounts: AggregateLoader<Account>,
    sessions: AggregateLoader<Session>,
    /// Wakes this process's worker when a request is queued here.
    queued: Notify,
    /// This replica's revocation view, told of each revocation it commits so that the
    /// session's access tokens stop working here at once (other replicas learn it from the
    /// log); set when the accounts join a router.
    revocations: std::sync::OnceLock<service_kit::revocation::RevocationView>,
}

impl AuthState {
    /// Builds the state; starts the task that announces appends to projectors.
    ///
    /// # Errors
    ///
    /// The signing keys are unusable.
    pub fn new(pool: PgPool, settings: AuthSettings) -> Result<Arc<Self>, crypto::KeyError> {
        Ok(Arc::new(Self {
            crypto: Crypto::new(&settings)?,
            notifier: AppendNotifier::spawn(pool.clone(), EVENTS_CHANNEL),
            accounts: AggregateLoader::new(pool.clone(), events::upcast::for_aggregates()),
            sessions: AggregateLoader::new(pool.clone(), events::upcast::for_aggregates()),
            queued: Notify::new(),
            revocations: std::sync::OnceLock::new(),
            pool,
            settings,
        }))
    }

    /// A link carrying `token` in its fragment, so it never reaches a server log or `Referer`.
    fn link(&self, path: &str, token: &str) -> String {
        format!("{}/{path}#token={token}", self.settings.public_url)
    }
}

/// Events decided for one stream, ready to append.
pub(crate) struct Staged {
    /// The rows.
    pub events: Vec<NewEvent>,
    /// The stream's version after them.
    pub version: i64,
}

/// Decides `commands` in order on the state of `A`'s stream `id` (read outside the
/// transaction: a concurrent writer is caught by the append's revision check), each on the
/// state the previous ones left, and stages their events.
async fn stage<A>(
    loader: &AggregateLoader<A>,
    id: &str,
    commands: Vec<<A as Decide>::Command>,
    metadata: &EventMetadata,
) -> Result<Result<Staged, <A as Decide>::Error>, AuthFailure>
where
    A: Decide + cqrs_es::Aggregate,
{
    let loaded = loader.load(id).await?;
    let mut state = loaded.aggregate;
    let mut decided = Vec::new();
    for command in commands {
        match Decide::decide(&state, command) {
            Ok(events) => {
                for event in events {
                    Decide::evolve(&mut state, event.clone());
                    decided.push(event);
                }
            }
            Err(error) => return Ok(Err(error)),
        }
    }
    let metadata = serde_json::to_value(metadata)?;
    let events = decided
        .iter()
        .zip(loaded.version + 1..)
        .map(|(event, sequence)| {
            NewEvent::of(<A as Decide>::TYPE, id, sequence, event, metadata.clone())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let version = loaded.version + i64::try_from(events.len()).unwrap_or(i64::MAX);
    Ok(Ok(Staged { events, version }))
}

impl AuthState {
    /// Stages a command on an account stream; a refusal is an [`AuthFailure::Refused`].
    pub(crate) async fn stage_account(
        &self,
        account_id: Uuid,
        command: AccountCommand,
        metadata: &EventMetadata,
    ) -> Result<Staged, AuthFailure> {
        self.stage_account_all(account_id, vec![command], metadata)
            .await
    }

    /// Stages several commands on one account stream, each decided on the state the previous
    /// ones left.
    pub(crate) async fn stage_account_all(
        &self,
        account_id: Uuid,
        commands: Vec<AccountCommand>,
        metadata: &EventMetadata,
    ) -> Result<Staged, AuthFailure> {
        stage(&self.accounts, &account_id.to_string(), commands, metadata)
            .await?
            .map_err(|error| AuthFailure::Refused(error.to_string()))
    }

    /// Stages a command on a session stream; `Ok(Err(_))` is the session's refusal.
    pub(crate) async fn stage_session(
        &self,
        session_id: Uuid,
        command: crate::domain::session::SessionCommand,
        metadata: &EventMetadata,
    ) -> Result<Result<Staged, crate::domain::session::SessionError>, AuthFailure> {
        stage(
            &self.sessions,
            &session_id.to_string(),
            vec![command],
            metadata,
        )
        .await
    }

    /// The state of a session stream.
    pub(crate) async fn session(&self, session_id: Uuid) -> Result<Session, AuthFailure> {
        Ok(self.sessions.load(&session_id.to_string()).await?.aggregate)
    }

    /// Appends `events` in `tx` and commits it; announces the append, and the mail `tx` may
    /// have written.
    pub(crate) async fn commit(
        &self,
        mut tx: Transaction<'_, Postgres>,
        events: &[NewEvent],
    ) -> Result<LogPosition, AuthFailure> {
        let AppendReceipt { last, count } = append::append_with(&mut tx, events, None).await?;
        tx.commit().await?;
        self.note_revocations(events);
        // Mail is written only in transactions committed here (with or without events), so
        // naming the outbox on each wakes the mail relay exactly when there may be mail.
        let appended = events.iter().map(|event| event.aggregate_type.as_str());
        self.notifier
            .notify_appended(appended.chain([event_store::wake::MAIL_OUTBOX]));
        if count > 0 {
            for event in events {
                metrics::counter!(
                    service_kit::metric_names::EVENTS_APPENDED_TOTAL,
                    "aggregate_type" => event.aggregate_type.clone(),
                )
                .increment(1);
            }
        }
        Ok(last)
    }

    /// Attaches this replica's revocation view (once; later calls are ignored).
    pub fn attach_revocations(&self, view: service_kit::revocation::RevocationView) {
        // A second router on the same state shares the first one's view: ignoring is right.
        let _ = self.revocations.set(view);
    }

    /// Tells this replica's view of the sessions, disables and role removals in `events`,
    /// once they are committed.
    fn note_revocations(&self, events: &[NewEvent]) {
        let Some(view) = self.revocations.get() else {
            return;
        };
        let now = Utc::now();
        for event in events {
            match event.aggregate_type.as_str() {
                "Session" => {
                    if let Ok(SessionEvent::SessionRevoked { session_id, .. }) =
                        serde_json::from_value(event.payload.clone())
                    {
                        view.note_revoked_session(session_id, now);
                    }
                }
                // A disable or a removed role refuses the account's tokens here at once.
                "Account" => {
                    if let Ok(account_event) = serde_json::from_value(event.payload.clone()) {
                        view.note_account_event(&account_event, now);
                    }
                }
                _ => {}
            }
        }
    }

    /// Writes a mail into the outbox inside `tx`.
    pub(crate) async fn mail(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        template: &str,
        to: &str,
        account_id: Uuid,
        link: Option<(&str, &str, DateTime<Utc>)>,
    ) -> Result<(), AuthFailure> {
        let (token, link, expires_at) = match link {
            Some((path, token, expires_at)) => (
                Some(token.to_owned()),
                Some(self.link(path, token)),
                Some(expires_at),
            ),
            None => (None, None, None),
        };
        mail_outbox::enqueue(
            tx,
            &Mail {
                message_id: Uuid::now_v7(),
                template: template.to_owned(),
                recipient: to.to_owned(),
                account_id: Some(account_id),
                token,
                link,
                expires_at,
                created_at: Utc::now(),
            },
        )
        .await?;
        Ok(())
    }
}

/// Metadata of start-up and background work.
pub fn system_metadata() -> EventMetadata {
    let id = Uuid::now_v7().to_string();
    EventMetadata {
        actor: SYSTEM.to_owned(),
        request_id: id.clone(),
        correlation_id: id.clone(),
        causation_id: id,
        ..EventMetadata::default()
    }
}

/// The consistency token of a position, as answers carry it. Untyped: one auth commit may
/// append events of several aggregates, and the reads it serves are rare enough that the query
/// API's check of what is left to apply costs nothing worth saving.
pub fn token(position: LogPosition) -> String {
    ConsistencyToken::at(position).encode()
}

/// Creates the bootstrap admin when no account has its address: verified, with `admin`,
/// actor `system`. An existing account is never changed; a replica that lost the race to
/// create it finds the address taken and does nothing.
///
/// # Errors
///
/// The address or password is unusable, hashing or the database failed.
pub async fn ensure_bootstrap_admin(state: &AuthState) -> anyhow::Result<()> {
    let Some(admin) = &state.settings.bootstrap_admin else {
        return Ok(());
    };
    let email = crypto::normalize_email(&admin.email)
        .map_err(|reason| anyhow::anyhow!("AUTH_BOOTSTRAP_ADMIN_EMAIL: {reason}"))?;
    if event_store::accounts::by_email(&state.pool, &email)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let password_hash = state.crypto.hash_password(admin.password.expose()).await?;
    let account_id = Uuid::now_v7();
    let staged = state
        .stage_account(
            account_id,
            AccountCommand::Bootstrap {
                account_id,
                email: email.clone(),
            },
            &system_metadata(),
        )
        .await?;
    let mut tx = state.pool.begin().await?;
    let inserted = event_store::accounts::insert(
        &mut tx,
        &event_store::accounts::Credentials {
            account_id,
            email: email.clone(),
            password_hash,
            verified: true,
            disabled: false,
            roles: vec!["admin".to_owned()],
        },
    )
    .await;
    match inserted {
        Ok(()) => {}
        Err(event_store::accounts::CredentialsError::EmailTaken) => return Ok(()),
        Err(event_store::accounts::CredentialsError::Database(error)) => return Err(error.into()),
    }
    state.commit(tx, &staged.events).await?;
    tracing::info!(account.id = %account_id, "bootstrap admin created");
    Ok(())
}
