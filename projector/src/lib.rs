//! Chronicle's projector: turns the event log into read models, each projection checkpointed
//! in the same transaction as its rows, and serves its health and metrics.
//!
//! Settings (environment variables, defaults that work on this machine):
//!
//! - `PROJECTOR_ADDR` (default `0.0.0.0:8082`): where `/healthz`, `/readyz` and `/metrics` are
//!   served.
//! - `PROJECTOR_BATCH_SIZE` (default 500): the most events applied in one transaction.
//! - `PROJECTOR_BATCH_BYTES` (default 1048576, 1 MiB): the most payload bytes read into one
//!   batch (of a projection or the relay); the first event of a batch is always read, whatever
//!   its size. Every loop may hold one batch, decoded, at a time: this bounds the projector's
//!   memory (docs/decisions/0019-projector-batches-and-idle-skips.md).
//! - `PROJECTOR_SKIP_EVERY_MS` (default 1000): the least time between two moves of an idle
//!   projection's checkpoint past events it does not read; `0` moves it on every idle round.
//! - `PROJECTOR_POLL_MS` (default 500): how long an idle projection waits for an append
//!   notification before reading the log anyway.
//! - `PROJECTOR_READ_DATABASE_URL` (default: unset, read through `DATABASE_URL`): where the log
//!   is read from, e.g. a streaming replica; read models and checkpoints are always written to
//!   `DATABASE_URL`.
//! - `PROJECTOR_DEAD_LETTER` (default `false`): `true` parks poison events of every projection
//!   in `projection_dead_letters` and goes on; a comma-separated list of projection names does
//!   so for those only. Otherwise a poison event stops its projection (state `failed`).
//! - `PROJECTOR_LEADER_POLL_MS` (default 1000): how often a standby replica tries to take over
//!   a projection and a leader checks its lock connection ([`leader`]).
//! - the relay's `RABBITMQ_URL`, `RELAY_EXCHANGE`, `RELAY_ENABLED` ([`relay`]).
//! - the mail relay's `MAIL_EXCHANGE`, `MAIL_RELAY_ENABLED`, `AUTH_MAIL_LOG` ([`mail`]).
//! - the database variables of [`service_kit::db::DatabaseSettings`].

pub mod leader;
pub mod mail;
pub mod projections;
pub mod rebuild;
pub mod relay;
pub mod subscription;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use service_kit::env::{EnvError, var_or};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use subscription::DEFAULT_BATCH_BYTES;
pub use subscription::{
    CatchUp, EngineError, LoopSettings, Projection, ProjectionError, RunOptions, Target, catch_up,
    catch_up_target, run_projection, run_projection_with,
};

/// The projector's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PROJECTOR_ADDR` (default `0.0.0.0:8082`).
    pub addr: SocketAddr,
    /// `PROJECTOR_BATCH_SIZE` (default 500, at least 1).
    pub batch_size: i64,
    /// `PROJECTOR_BATCH_BYTES` (default [`DEFAULT_BATCH_BYTES`], at least 1).
    pub batch_bytes: i64,
    /// `PROJECTOR_SKIP_EVERY_MS` (default 1000).
    pub skip_every: Duration,
    /// `PROJECTOR_POLL_MS` (default 500, at least 1).
    pub poll_interval: Duration,
    /// `PROJECTOR_READ_DATABASE_URL`: the pool settings for reading the log, when it is read
    /// from another server than the one written to.
    pub read_database: Option<service_kit::db::DatabaseSettings>,
    /// `PROJECTOR_DEAD_LETTER` (default `false`).
    pub dead_letter: DeadLetter,
    /// `PROJECTOR_LEADER_POLL_MS` (default 1000, at least 1).
    pub leader_poll: Duration,
    /// The RabbitMQ relay's settings.
    pub relay: relay::RelaySettings,
    /// The mail relay's settings.
    pub mail: mail::MailSettings,
}

/// Which projections park poison events instead of stopping (`PROJECTOR_DEAD_LETTER`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeadLetter {
    /// None: a poison event stops its projection (the default).
    #[default]
    Off,
    /// Every projection.
    All,
    /// The projections named.
    Only(Vec<String>),
}

impl DeadLetter {
    /// Parses `true`/`false` or a comma-separated list of projection names.
    pub fn parse(value: &str) -> Self {
        match value.trim() {
            "" | "false" | "0" | "off" => Self::Off,
            "true" | "1" | "on" | "all" => Self::All,
            names => Self::Only(
                names
                    .split(',')
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .collect(),
            ),
        }
    }

    /// Whether `projection` parks poison events.
    pub fn applies_to(&self, projection: &str) -> bool {
        match self {
            Self::Off => false,
            Self::All => true,
            Self::Only(names) => names.iter().any(|name| name == projection),
        }
    }
}

impl Settings {
    /// Reads the settings from the environment.
    ///
    /// # Errors
    ///
    /// When a variable is set but does not parse, or is out of range.
    pub fn from_env() -> Result<Self, EnvError> {
        let addr = var_or(
            "PROJECTOR_ADDR",
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8082)),
        )?;
        let batch_size: i64 = var_or("PROJECTOR_BATCH_SIZE", 500)?;
        if batch_size < 1 {
            return Err(out_of_range("PROJECTOR_BATCH_SIZE", batch_size));
        }
        let batch_bytes: i64 = var_or("PROJECTOR_BATCH_BYTES", DEFAULT_BATCH_BYTES)?;
        if batch_bytes < 1 {
            return Err(out_of_range("PROJECTOR_BATCH_BYTES", batch_bytes));
        }
        let poll_ms: u64 = var_or("PROJECTOR_POLL_MS", 500)?;
        if poll_ms < 1 {
            return Err(out_of_range("PROJECTOR_POLL_MS", poll_ms));
        }
        let leader_poll_ms: u64 = var_or("PROJECTOR_LEADER_POLL_MS", 1000)?;
        if leader_poll_ms < 1 {
            return Err(out_of_range("PROJECTOR_LEADER_POLL_MS", leader_poll_ms));
        }
        let read_url = service_kit::env::string_or("PROJECTOR_READ_DATABASE_URL", "");
        let read_database = if read_url.is_empty() {
            None
        } else {
            Some(service_kit::db::DatabaseSettings {
                url: service_kit::db::DatabaseUrl::new(read_url),
                ..service_kit::db::DatabaseSettings::from_env()?
            })
        };
        let skip_every = Duration::from_millis(var_or(
            "PROJECTOR_SKIP_EVERY_MS",
            u64::try_from(LoopSettings::DEFAULT_SKIP_EVERY.as_millis()).unwrap_or(1000),
        )?);
        let poll_interval = Duration::from_millis(poll_ms);
        let relay = relay::RelaySettings::from_env(batch_size, batch_bytes, poll_interval)?;
        Ok(Self {
            mail: mail::MailSettings::from_env(relay.enabled, poll_interval)?,
            addr,
            batch_size,
            batch_bytes,
            skip_every,
            poll_interval,
            read_database,
            dead_letter: DeadLetter::parse(&service_kit::env::string_or(
                "PROJECTOR_DEAD_LETTER",
                "false",
            )),
            leader_poll: Duration::from_millis(leader_poll_ms),
            relay,
        })
    }

    /// Settings with the documented defaults, listening on `addr`, relay disabled: for tests
    /// and tools that set only what they need.
    pub fn local(addr: SocketAddr) -> Self {
        Self {
            addr,
            batch_size: 500,
            batch_bytes: DEFAULT_BATCH_BYTES,
            skip_every: LoopSettings::DEFAULT_SKIP_EVERY,
            poll_interval: Duration::from_millis(500),
            read_database: None,
            dead_letter: DeadLetter::Off,
            leader_poll: Duration::from_secs(1),
            relay: relay::RelaySettings::disabled(),
            mail: mail::MailSettings::disabled(),
        }
    }

    /// The settings every projection loop runs with.
    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            batch_size: self.batch_size,
            poll_interval: self.poll_interval,
            max_bytes: self.batch_bytes,
            skip_every: self.skip_every,
        }
    }
}

fn out_of_range(name: &str, value: impl ToString) -> EnvError {
    EnvError {
        name: name.to_owned(),
        value: value.to_string(),
        reason: "must be at least 1".to_owned(),
    }
}

/// Every projection the projector runs.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(projections::ProjectsProjection),
        Arc::new(projections::SupportTicketsProjection),
        Arc::new(projections::CommunityPostsProjection),
        Arc::new(projections::ServiceStatusProjection),
        Arc::new(projections::AnalyticsDailyProjection),
        Arc::new(projections::AuthAccountsProjection),
        Arc::new(projections::AuthSessionsProjection),
    ]
}

/// Runs every projection and serves `/healthz`, `/readyz` and `/metrics` on `settings.addr`
/// until `shutdown` fires; returns once the loops have finished their batches and the server
/// has drained.
///
/// A projection that fails stops alone (its state says why); the others and the server keep
/// running.
///
/// # Errors
///
/// When the address cannot be bound or the server fails; the latter fires `shutdown` so the
/// loops stop too.
pub async fn run(settings: Settings, pool: PgPool, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding {}", settings.addr))?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(settings.addr), "projector listening");
    // Installed before the loops record anything, which would be lost without a recorder.
    let _ = service_kit::telemetry::metrics_handle();

    let read_pool = match &settings.read_database {
        Some(read) => read
            .connect()
            .await
            .context("connecting to the read database")?,
        None => pool.clone(),
    };
    // Each loop wakes only for appends of the aggregate types it reads.
    let (wakes, listener_task) =
        event_store::wake::listen_routed(pool.clone(), event_store::wake::EVENTS_CHANNEL);
    let mut loops = JoinSet::new();
    for projection in projections() {
        let name = projection.name();
        let options = RunOptions {
            read_pool: Some(read_pool.clone()),
            dead_letter: settings.dead_letter.applies_to(name),
        };
        let (pool, wake, loop_settings) = (
            pool.clone(),
            wakes.register(projection.aggregate_types()),
            settings.loop_settings(),
        );
        // Each projection runs in exactly one replica at a time (see `leader`).
        loops.spawn(service_kit::sql_metrics::in_service(
            "projector",
            leader::lead(
                pool.clone(),
                name.to_owned(),
                settings.leader_poll,
                shutdown.clone(),
                move |own_shutdown| {
                    let running = run_projection_with(
                        pool.clone(),
                        Arc::clone(&projection),
                        loop_settings,
                        options.clone(),
                        Arc::clone(&wake),
                        own_shutdown,
                    );
                    async move {
                        match running.await {
                            // Failures were logged and recorded where they happened.
                            Ok(()) | Err(EngineError::Failed { .. }) => {}
                            Err(error) => tracing::error!(%error, "projection loop ended"),
                        }
                    }
                },
            ),
        ));
    }
    if settings.relay.enabled {
        let (pool, read_pool, wake, relay) = (
            pool.clone(),
            read_pool.clone(),
            // The relay publishes every event.
            wakes.register(&[]),
            settings.relay.clone(),
        );
        loops.spawn(service_kit::sql_metrics::in_service(
            "projector",
            leader::lead(
                pool.clone(),
                relay::RELAY_CHECKPOINT.to_owned(),
                settings.leader_poll,
                shutdown.clone(),
                move |own_shutdown| {
                    relay::run_relay(
                        pool.clone(),
                        read_pool.clone(),
                        relay.clone(),
                        Arc::clone(&wake),
                        own_shutdown,
                    )
                },
            ),
        ));
    }
    if settings.mail.enabled {
        let (pool, wake, mail) = (
            pool.clone(),
            wakes.register(&[event_store::wake::MAIL_OUTBOX]),
            settings.mail.clone(),
        );
        loops.spawn(service_kit::sql_metrics::in_service(
            "projector",
            leader::lead(
                pool.clone(),
                mail::MAIL_RELAY.to_owned(),
                settings.leader_poll,
                shutdown.clone(),
                move |own_shutdown| {
                    mail::run_mail_relay(
                        pool.clone(),
                        mail.clone(),
                        Arc::clone(&wake),
                        own_shutdown,
                    )
                },
            ),
        ));
    }
    loops.spawn(service_kit::sql_metrics::in_service(
        "projector",
        report_projections(pool.clone(), shutdown.clone()),
    ));

    let router = service_kit::http::with_plumbing("projector", Router::new(), pool);
    let served = service_kit::http::serve(listener, router, shutdown.clone()).await;
    if served.is_err() {
        shutdown.trigger();
    }
    while let Some(joined) = loops.join_next().await {
        if let Err(error) = joined {
            tracing::error!(%error, "projector task panicked");
        }
    }
    // The listener holds a pool connection for as long as it runs.
    listener_task.abort();
    served.context("serving HTTP")
}

/// How often [`report_projections`] reads the projections' checkpoints.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Sets the projection gauges from `projection_checkpoints` and the head of the log, for every
/// projection and the relay (docs/metrics.md): `chronicle_projection_lag_events`,
/// `chronicle_projection_lag_seconds`, `chronicle_projection_state` (one series per state, 1
/// for the current one) and `chronicle_relay_backlog_events`. Read from the database, so every
/// replica reports the same figures whichever of them runs the projection; returns how many
/// are in state `failed`. Shadow checkpoints of a rebuild are left out: the label's values stay
/// the catalogue's names.
///
/// # Errors
///
/// The database fails.
pub async fn refresh_projection_gauges(pool: &PgPool) -> Result<usize, sqlx::Error> {
    use service_kit::metric_names::{
        PROJECTION_LAG_EVENTS, PROJECTION_LAG_SECONDS, PROJECTION_STATE, PROJECTION_STATES,
        RELAY_BACKLOG_EVENTS,
    };
    let projections = projections();
    let sources: Vec<(&str, &str)> = projections
        .iter()
        .flat_map(|projection| {
            let name = projection.name();
            projection.aggregate_types().iter().map(move |t| (name, *t))
        })
        .collect();
    let statuses = event_store::checkpoints::statuses(pool, &sources).await?;
    let mut failed = 0;
    for status in statuses {
        let Some(name) = projections
            .iter()
            .map(|projection| projection.name())
            .chain([relay::RELAY_CHECKPOINT])
            .find(|name| *name == status.name)
        else {
            continue;
        };
        failed += usize::from(status.state == "failed");
        metrics::gauge!(PROJECTION_LAG_EVENTS, "projection" => name).set(status.lag_events as f64);
        metrics::gauge!(PROJECTION_LAG_SECONDS, "projection" => name).set(status.lag_seconds);
        for state in PROJECTION_STATES {
            let current = f64::from(u8::from(status.state == *state));
            metrics::gauge!(PROJECTION_STATE, "projection" => name, "state" => *state).set(current);
        }
        if name == relay::RELAY_CHECKPOINT {
            metrics::gauge!(RELAY_BACKLOG_EVENTS).set(status.lag_events as f64);
        }
    }
    Ok(failed)
}

/// Refreshes the projection gauges every few seconds until `shutdown`.
async fn report_projections(pool: PgPool, shutdown: Shutdown) {
    loop {
        if let Err(error) = refresh_projection_gauges(&pool).await {
            tracing::warn!(%error, "cannot read the projections' checkpoints for /metrics");
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(GAUGE_INTERVAL) => {}
        }
    }
}
