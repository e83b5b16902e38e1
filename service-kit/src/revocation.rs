//! What every replica knows about revoked access tokens: revoked sessions, disabled accounts
//! and removed roles, kept in memory and fed from the event log (ACCOUNTS.md, "Revocation
//! reaches access tokens").
//!
//! Access tokens are checked without touching the database; a background task reads the
//! `Session` and `Account` streams after the position it reached (index-backed, from the
//! primary), woken by the append notifications that name those streams (or name nothing), with
//! a poll fallback, so a revocation on any replica reaches every other within two seconds. The
//! revoking replica notes it at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use auth::{AccessClaims, Role};
use chrono::{DateTime, TimeDelta, Utc};
use event_store::LogFilter;
use event_store::wake::{EVENTS_CHANNEL, Wakes, listen_routed};
use events::account::AccountEvent;
use events::session::SessionEvent;
use events::{LogPosition, RecordedEvent};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long after a revocation an access token it affects can still be valid: the access
/// token lifetime plus the verifier's clock leeway (ACCOUNTS.md: 15 minutes, 30 s), with a
/// margin for clock skew between the database and the services.
pub const REVOCATION_WINDOW: Duration = Duration::from_secs(15 * 60 + 30 + 60);

/// The longest the feed waits for a wake-up before it reads the log anyway: a lost
/// notification (or a hot standby that refuses `LISTEN`) then costs at most this much.
pub const POLL_FALLBACK: Duration = Duration::from_millis(500);

/// Connections of the feed's own pool: the listener's and one to read the log with.
pub const FEED_CONNECTIONS: u32 = 2;

/// How many events one read of the log takes.
const PAGE: i64 = 500;

/// Why a token that verified is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Its session was revoked.
    Session,
    /// Its account is disabled, or was disabled after the token was issued.
    Account,
    /// A role it carries was removed after it was issued.
    Role,
}

impl Revoked {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Session => "session_revoked",
            Self::Account => "account_disabled",
            Self::Role => "role_removed",
        }
    }
}

#[derive(Debug, Default)]
struct Account {
    /// Whether the account is disabled now (until an `AccountEnabled`).
    disabled: bool,
    /// Tokens issued at or before this second are refused.
    cutoff: Option<DateTime<Utc>>,
    /// Roles removed, and when: a token issued at or before then that carries one is refused.
    removed_roles: Vec<(DateTime<Utc>, Vec<Role>)>,
    /// When the newest entry was noted; the account's entry is forgotten a window later.
    noted: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Revoked session ids and when they were noted.
    sessions: HashMap<Uuid, DateTime<Utc>>,
    accounts: HashMap<Uuid, Account>,
}

/// The in-memory revocation set; clones share one set.
#[derive(Debug, Clone, Default)]
pub struct RevocationView {
    inner: Arc<RwLock<Inner>>,
}

fn window() -> TimeDelta {
    TimeDelta::from_std(REVOCATION_WINDOW).unwrap_or(TimeDelta::MAX)
}

impl RevocationView {
    /// An empty view, fed by nothing until [`RevocationView::spawn_feed`] or the `note_*`
    /// methods.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough to
        // read: refusing every request because of it would be worse.
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that a session was revoked: its access tokens are refused from now on.
    pub fn note_revoked_session(&self, session_id: Uuid, at: DateTime<Utc>) {
        self.write().sessions.insert(session_id, at);
    }

    /// Records that an account was disabled at `at`: all its tokens are refused while it is
    /// disabled, and those issued before `at` for good.
    pub fn note_disabled_account(&self, account_id: Uuid, at: DateTime<Utc>) {
        let mut inner = self.write();
        let account = inner.accounts.entry(account_id).or_default();
        account.disabled = true;
        account.cutoff = Some(account.cutoff.map_or(at, |cutoff| cutoff.max(at)));
        account.noted = account.noted.max(at);
    }

    /// Records that an account was enabled again: tokens issued from now on are accepted.
    pub fn note_enabled_account(&self, account_id: Uuid, at: DateTime<Utc>) {
        let mut inner = self.write();
        if let Some(account) = inner.accounts.get_mut(&account_id) {
            account.disabled = false;
            account.noted = account.noted.max(at);
        }
    }

    /// Records that an account's roles changed at `at` from `previous` to `roles`: tokens
    /// issued before then that carry a removed role are refused. A change that only adds
    /// roles refuses nothing (a new role shows at the next refresh).
    pub fn note_roles_changed(
        &self,
        account_id: Uuid,
        roles: &[Role],
        previous: &[Role],
        at: DateTime<Utc>,
    ) {
        let removed: Vec<Role> = previous
            .iter()
            .filter(|role| !roles.contains(role))
            .copied()
            .collect();
        if removed.is_empty() {
            return;
        }
        let mut inner = self.write();
        let account = inner.accounts.entry(account_id).or_default();
        account.removed_roles.push((at, removed));
        account.noted = account.noted.max(at);
    }

    /// Whether a verified token's claims are still good.
    ///
    /// # Errors
    ///
    /// Why the token is refused.
    pub fn check(&self, claims: &AccessClaims) -> Result<(), Revoked> {
        let inner = self.read();
        if inner.sessions.contains_key(&claims.sid) {
            return Err(Revoked::Session);
        }
        let Some(account) = inner.accounts.get(&claims.sub) else {
            return Ok(());
        };
        if account.disabled
            || account
                .cutoff
                .is_some_and(|cutoff| claims.iat <= cutoff.timestamp())
        {
            return Err(Revoked::Account);
        }
        let role_removed = account.removed_roles.iter().any(|(at, removed)| {
            claims.iat <= at.timestamp() && removed.iter().any(|role| claims.roles.contains(role))
        });
        if role_removed {
            return Err(Revoked::Role);
        }
        Ok(())
    }

    /// Forgets every entry older than the revocation window at `now`: no token it could
    /// refuse is still valid. A disabled account stays until enabled.
    pub fn expire(&self, now: DateTime<Utc>) {
        let horizon = now - window();
        let mut inner = self.write();
        inner.sessions.retain(|_, noted| *noted > horizon);
        inner.accounts.retain(|_, account| {
            account.removed_roles.retain(|(at, _)| *at > horizon);
            account.disabled || account.noted > horizon
        });
    }

    /// How many sessions and accounts the view holds (for tests and metrics).
    pub fn len(&self) -> (usize, usize) {
        let inner = self.read();
        (inner.sessions.len(), inner.accounts.len())
    }

    /// Whether the view holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Notes what an account event revokes (a disable, an enable, a removed role); other
    /// account events revoke nothing. The revoking replica calls it at once, the feed later.
    pub fn note_account_event(&self, event: &AccountEvent, at: DateTime<Utc>) {
        match event {
            AccountEvent::AccountDisabled { account_id, .. } => {
                self.note_disabled_account(*account_id, at);
            }
            AccountEvent::AccountEnabled { account_id } => {
                self.note_enabled_account(*account_id, at);
            }
            AccountEvent::RolesChanged {
                account_id,
                roles,
                previous,
            } => {
                self.note_roles_changed(
                    *account_id,
                    &parse_roles(roles),
                    &parse_roles(previous),
                    at,
                );
            }
            _ => {}
        }
    }

    /// Applies one event of the `Session` or `Account` streams; others are ignored.
    pub fn apply(&self, event: &RecordedEvent) {
        let at = event.recorded_at;
        let payload = event.payload.get();
        // The stored payloads are the accounts side's own event types (externally tagged, as
        // every event in the log): decoding through them keeps this view and the writer in
        // step. An event of a later version that no longer decodes is skipped, not fatal.
        match event.aggregate_type.as_str() {
            "Session" => {
                if let Ok(SessionEvent::SessionRevoked { session_id, .. }) =
                    serde_json::from_str(payload)
                {
                    self.note_revoked_session(session_id, at);
                }
            }
            "Account" => {
                if let Ok(account_event) = serde_json::from_str(payload) {
                    self.note_account_event(&account_event, at);
                }
            }
            _ => {}
        }
    }

    /// Starts feeding the view from the log of the database `primary` connects to, woken by
    /// appends of its streams on the events channel. The returned guard stops both tasks when
    /// dropped.
    ///
    /// The feed has a pool of its own, of [`FEED_CONNECTIONS`], made with `primary`'s
    /// options: its `LISTEN` holds a connection for good, which would otherwise be one fewer
    /// for requests (a service run with `DATABASE_MAX_CONNECTIONS=2` would have none left).
    pub fn spawn_feed(&self, primary: &PgPool) -> FeedGuard {
        let options = (*primary.connect_options()).clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(FEED_CONNECTIONS)
            .min_connections(0)
            .connect_lazy_with(options);
        let (wakes, listener) = listen_routed(pool.clone(), EVENTS_CHANNEL);
        let wake = feed_wake(&wakes);
        let feed = tokio::spawn(run_feed(self.clone(), pool, wake));
        FeedGuard {
            tasks: vec![listener, feed],
        }
    }
}

/// Stops the feed's tasks when dropped (the listener's connection goes back to the pool).
#[derive(Debug)]
pub struct FeedGuard {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The roles named in a `RolesChanged`; a name this build does not know grants nothing here.
fn parse_roles(names: &[String]) -> Vec<Role> {
    names
        .iter()
        .filter_map(|name| serde_json::from_value(serde_json::Value::String(name.clone())).ok())
        .collect()
}

/// The aggregate types whose events can revoke a token.
const STREAMS: [&str; 2] = ["Account", "Session"];

/// The feed's wake-up: only appends of [`STREAMS`] (or of something unnamed, or a reconnect)
/// make it read. Every replica runs a feed, and a wake on every append of every type made
/// each of them read the log once per commit for nothing (PERFORMANCE.md, "The revocation
/// feeds woken by their own streams").
fn feed_wake(wakes: &Wakes) -> Arc<Notify> {
    wakes.register(&STREAMS)
}

async fn run_feed(view: RevocationView, pool: PgPool, wake: Arc<Notify>) {
    let mut after = LogPosition::START;
    loop {
        let now = Utc::now();
        view.expire(now);
        // Only events inside the window can refuse a token still valid; older ones are skipped
        // on the server, so a restart does not replay every login ever made into memory.
        let filter = LogFilter {
            aggregate_types: STREAMS.iter().map(|s| (*s).to_owned()).collect(),
            from: Some(now - window()),
            ..LogFilter::default()
        };
        match event_store::log::read_after(&pool, after, PAGE, &filter).await {
            Ok(page) => {
                let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= PAGE;
                for event in &page {
                    view.apply(event);
                    after = event.log_position;
                }
                if full {
                    continue;
                }
            }
            Err(error) => tracing::warn!(%error, "revocation feed could not read the log"),
        }
        // A wake-up that arrives while reading is kept as a permit by `notify_one`.
        let _ = tokio::time::timeout(POLL_FALLBACK, wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_store::wake::Delivery;

    /// Whether `wake` holds a wake-up (a permit `notify_one` left), taking it.
    async fn woken(wake: &Notify) -> bool {
        // `timeout` polls the future before its deadline, so a stored permit is taken at once.
        tokio::time::timeout(Duration::ZERO, wake.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_feed_wakes_for_its_streams_and_unnamed_appends_only() {
        let wakes = Wakes::default();
        let wake = feed_wake(&wakes);
        let deliver = |payload: &str| wakes.deliver(&Delivery::Payload(Arc::from(payload)));
        deliver("Project");
        deliver("SupportTicket,mail_outbox");
        assert!(!woken(&wake).await, "other streams' appends do not wake it");
        for payload in ["Session", "Project,Account", ""] {
            deliver(payload);
            assert!(woken(&wake).await, "{payload:?} wakes it");
        }
        wakes.deliver(&Delivery::Gap);
        assert!(woken(&wake).await, "a reconnect wakes it");
    }

    fn claims(sub: Uuid, sid: Uuid, roles: Vec<Role>, iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "chronicle".to_owned(),
            aud: "chronicle-api".to_owned(),
            sub,
            sid,
            roles,
            amr: vec!["pwd".to_owned()],
            auth_time: iat,
            iat,
            nbf: iat,
            exp: iat + 900,
            jti: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_revoked_session_is_refused_until_the_window_passes() {
        let view = RevocationView::new();
        let now = Utc::now();
        let (account, session) = (Uuid::now_v7(), Uuid::now_v7());
        let token = claims(account, session, vec![Role::User], now.timestamp());
        assert_eq!(view.check(&token), Ok(()));
        view.note_revoked_session(session, now);
        assert_eq!(view.check(&token), Err(Revoked::Session));
        view.expire(now + window() - TimeDelta::seconds(1));
        assert_eq!(view.check(&token), Err(Revoked::Session));
        view.expire(now + window() + TimeDelta::seconds(1));
        assert!(view.is_empty());
    }

    #[test]
    fn a_disabled_account_refuses_old_tokens_even_after_it_is_enabled() {
        let view = RevocationView::new();
        let now = Utc::now();
        let account = Uuid::now_v7();
        let old = claims(
            account,
            Uuid::now_v7(),
            vec![Role::User],
            now.timestamp() - 10,
        );
        view.note_disabled_account(account, now);
        assert_eq!(view.check(&old), Err(Revoked::Account));
        let later = now + TimeDelta::seconds(5);
        view.note_enabled_account(account, later);
        assert_eq!(view.check(&old), Err(Revoked::Account));
        let fresh = claims(
            account,
            Uuid::now_v7(),
            vec![Role::User],
            later.timestamp() + 1,
        );
        assert_eq!(view.check(&fresh), Ok(()));
    }

    #[test]
    fn only_a_removed_role_refuses_tokens_issued_before_the_change() {
        let view = RevocationView::new();
        let now = Utc::now();
        let account = Uuid::now_v7();
        let admin = claims(
            account,
            Uuid::now_v7(),
            vec![Role::User, Role::Admin],
            now.timestamp() - 10,
        );
        let user = claims(
            account,
            Uuid::now_v7(),
            vec![Role::User],
            now.timestamp() - 10,
        );
        view.note_roles_changed(account, &[Role::Auditor], &[], now);
        assert_eq!(view.check(&admin), Ok(()));
        view.note_roles_changed(account, &[], &[Role::Admin], now);
        assert_eq!(view.check(&admin), Err(Revoked::Role));
        assert_eq!(view.check(&user), Ok(()));
        let fresh = claims(
            account,
            Uuid::now_v7(),
            vec![Role::User],
            now.timestamp() + 1,
        );
        assert_eq!(view.check(&fresh), Ok(()));
    }
}
