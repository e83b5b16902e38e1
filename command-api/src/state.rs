//! The command API's settings, test seams and the state its handlers share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use event_store::wake::{AppendNotifier, EVENTS_CHANNEL};
use service_kit::Authenticator;
use service_kit::caller::{AuthSettings, AuthSetupError};
use service_kit::env::{EnvError, var_or};
use sqlx::PgPool;

use crate::domain::analytics::AnalyticsBatch;
use crate::domain::post::CommunityPost;
use crate::domain::project::Project;
use crate::domain::service_status::ServiceStatus;
use crate::domain::ticket::SupportTicket;
use crate::execute::CommandBus;

/// The command API's settings, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `COMMAND_API_ADDR` (default `0.0.0.0:8080`).
    pub addr: SocketAddr,
    /// `BODY_LIMIT_BYTES` (default 262144): larger bodies get 413.
    pub body_limit: usize,
    /// `IDEMPOTENCY_TTL_HOURS` (default 24): how long answers are kept for replay.
    pub idempotency_ttl: Duration,
    /// `IDEMPOTENCY_LEASE_SECS` (default 30): after this an open claim is presumed dead and
    /// taken over. Only versions before decision 0017 leave open claims; this version writes a
    /// key's record complete, with its events.
    pub idempotency_lease: Duration,
    /// `COMMAND_MAX_RETRIES` (default 5): re-runs of an unconditioned command that lost a race.
    pub max_retries: u32,
    /// `REQUEST_TIMEOUT_MS` (default 15000): a command that has not reached its append by then
    /// gets 503 and writes nothing; a body not received by then is refused.
    pub request_timeout: Duration,
    /// `TRUST_FORWARDED_FOR` (default false): behind one trusted proxy (the compose gateway),
    /// record the client address that proxy appended to `X-Forwarded-For` instead of the
    /// proxy's own. Leave off when clients can reach the service directly: they could then
    /// write any address into the audit trail.
    pub trust_forwarded_for: bool,
    /// `MAX_IN_FLIGHT`, `ADMISSION_WAIT_MS`: the bound on requests worked on at once.
    pub admission: service_kit::shed::AdmissionSettings,
    /// `AUTH_SIGNING_KEYS_FILE` or `AUTH_SIGNING_KEYS`, `AUTH_ISSUER`, `AUTH_AUDIENCE`: how
    /// access tokens are verified. The service refuses to start without keys.
    pub auth: AuthSettings,
    /// `CORS_ALLOWED_ORIGINS` (default none): the browser origins that may call the API.
    pub cors: service_kit::frontend::CorsSettings,
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Ok(Self {
            addr: var_or("COMMAND_API_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            body_limit: var_or("BODY_LIMIT_BYTES", 256 * 1024)?,
            idempotency_ttl: Duration::from_secs(3600 * var_or("IDEMPOTENCY_TTL_HOURS", 24u64)?),
            idempotency_lease: Duration::from_secs(var_or("IDEMPOTENCY_LEASE_SECS", 30)?),
            max_retries: var_or("COMMAND_MAX_RETRIES", 5)?,
            request_timeout: Duration::from_millis(var_or("REQUEST_TIMEOUT_MS", 15_000)?),
            trust_forwarded_for: var_or("TRUST_FORWARDED_FOR", false)?,
            admission: service_kit::shed::AdmissionSettings::from_env()?,
            auth: AuthSettings::from_env()?,
            cors: service_kit::frontend::CorsSettings::from_env()?,
        })
    }
}

/// Test seams: code run at points where a real process could die.
#[derive(Clone)]
pub struct Hooks {
    /// Runs after a command's append committed, before its answer is sent.
    pub after_commit: Arc<dyn Fn() + Send + Sync>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            after_commit: Arc::new(|| {}),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The event store's pool.
    pub pool: PgPool,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Project commands.
    pub projects: Arc<CommandBus<Project>>,
    /// Support ticket commands.
    pub tickets: Arc<CommandBus<SupportTicket>>,
    /// Community post commands.
    pub posts: Arc<CommandBus<CommunityPost>>,
    /// Service status reports.
    pub service_status: Arc<CommandBus<ServiceStatus>>,
    /// Analytics batches.
    pub analytics: Arc<CommandBus<AnalyticsBatch>>,
    /// Verifies access tokens and knows revocations.
    pub authenticator: Authenticator,
    /// Test seams.
    pub hooks: Hooks,
    /// Accounts (keys, hasher, worker wake-up); absent in a router built without them, whose
    /// `/auth` routes then answer 503.
    pub auth: Option<Arc<crate::auth::AuthState>>,
}

impl axum::extract::FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.authenticator.clone()
    }
}

impl AppState {
    /// Builds the state; starts the task that announces appends to projectors and the one
    /// that feeds the revocation view from the log.
    ///
    /// # Errors
    ///
    /// No token signing keys are configured, or they do not load.
    pub fn new(pool: PgPool, settings: Settings, hooks: Hooks) -> Result<Self, AuthSetupError> {
        let authenticator =
            Authenticator::with_feed(settings.auth.signing_keys()?.verifier(), pool.clone());
        let notifier = AppendNotifier::spawn(pool.clone(), EVENTS_CHANNEL);
        let bus = Bus {
            pool: &pool,
            notifier: &notifier,
            max_retries: settings.max_retries,
        };
        Ok(Self {
            authenticator,
            projects: bus.build(),
            tickets: bus.build(),
            posts: bus.build(),
            service_status: bus.build(),
            analytics: bus.build(),
            pool,
            settings: Arc::new(settings),
            hooks,
            auth: None,
        })
    }

    /// The state with accounts.
    pub fn with_auth(self, auth: Arc<crate::auth::AuthState>) -> Self {
        auth.attach_revocations(self.authenticator.revocations().clone());
        Self {
            auth: Some(auth),
            ..self
        }
    }
}

/// What every command bus is built from.
struct Bus<'a> {
    pool: &'a PgPool,
    notifier: &'a AppendNotifier,
    max_retries: u32,
}

impl Bus<'_> {
    /// A bus for aggregate `A`, loading streams through every upcaster (each applies only to
    /// the event types it names; Project streams hold ProjectCreated v1, for one).
    fn build<A>(&self) -> Arc<CommandBus<A>>
    where
        A: cqrs_es::Aggregate<Services = ()> + crate::execute::Current,
        A::Command: Clone,
    {
        Arc::new(CommandBus::new(
            self.pool.clone(),
            (),
            events::upcast::for_aggregates(),
            self.notifier.clone(),
            self.max_retries,
        ))
    }
}
