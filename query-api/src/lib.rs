//! The query side of Chronicle: serves the read models the projector builds, paginated,
//! filtered and ETagged, and reports how far behind each projection is.
//!
//! The crate is a library so that tests and the one-process dev runner start exactly the code
//! `main.rs` runs: build [`Settings`], make an [`AppState`] with [`app_state`], and either
//! mount [`router`] or call [`run`].
//!
//! Configuration (environment variables):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `QUERY_API_ADDR` | `0.0.0.0:8081` | address to listen on |
//! | `CONSISTENCY_WAIT_MS` | `5000` | longest wait for a projection to reach an `X-Consistency-Token` |
//!
//! The database is configured by [`service_kit::db::DatabaseSettings`]; `QUERY_DATABASE_URL`
//! (default: unset) points the query API at another server instead, such as a streaming
//! replica ([`read_database_settings`]).

pub mod consistency;
pub mod error;
pub mod etag;
pub mod openapi;
pub mod pagination;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use service_kit::env::{EnvError, var_or};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use error::ApiError;

/// The query API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `QUERY_API_ADDR` (default `0.0.0.0:8081`): where to listen.
    pub addr: SocketAddr,
    /// `CONSISTENCY_WAIT_MS` (default 5000): how long a request carrying an
    /// `X-Consistency-Token` waits for the projection before answering 503.
    pub consistency_wait: Duration,
    /// `MAX_IN_FLIGHT`, `ADMISSION_WAIT_MS`: the bound on requests worked on at once.
    pub admission: service_kit::shed::AdmissionSettings,
}

/// `QUERY_API_ADDR` when unset: every interface, port 8081.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081);

/// `CONSISTENCY_WAIT_MS` when unset.
pub const DEFAULT_CONSISTENCY_WAIT_MS: u64 = 5000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR,
            consistency_wait: Duration::from_millis(DEFAULT_CONSISTENCY_WAIT_MS),
            admission: service_kit::shed::AdmissionSettings::default(),
        }
    }
}

impl Settings {
    /// Reads the settings from the environment; unset or empty variables take their defaults.
    ///
    /// # Errors
    ///
    /// A variable that is set but does not parse.
    pub fn from_env() -> Result<Self, EnvError> {
        Ok(Self {
            addr: var_or("QUERY_API_ADDR", DEFAULT_ADDR)?,
            consistency_wait: Duration::from_millis(var_or(
                "CONSISTENCY_WAIT_MS",
                DEFAULT_CONSISTENCY_WAIT_MS,
            )?),
            admission: service_kit::shed::AdmissionSettings::from_env()?,
        })
    }
}

/// The database to serve reads from when `QUERY_DATABASE_URL` is set (a streaming replica of
/// the primary, say), with the pool settings of [`service_kit::db::DatabaseSettings`]; `None`
/// when unset, meaning `DATABASE_URL`.
///
/// Read-your-writes still holds on a lagging replica: a projection's checkpoint is committed
/// in the same transaction as its rows, so the replica never shows a checkpoint without the
/// rows it covers, and a consistency-token wait compares with the checkpoint as replicated.
///
/// # Errors
///
/// A database variable that is set but does not parse.
pub fn read_database_settings() -> Result<Option<service_kit::db::DatabaseSettings>, EnvError> {
    let url = service_kit::env::string_or("QUERY_DATABASE_URL", "");
    if url.is_empty() {
        return Ok(None);
    }
    Ok(Some(service_kit::db::DatabaseSettings {
        url: service_kit::db::DatabaseUrl::new(url),
        ..service_kit::db::DatabaseSettings::from_env()?
    }))
}

/// What every handler shares: the pool, the settings and the wake-up signal for checkpoint
/// moves. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    settings: Settings,
    checkpoints: Arc<Notify>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The listener holds a pooled connection for as long as it runs; stopping it with the
        // last state lets `PgPool::close` finish instead of waiting on it forever.
        self.listener.abort();
    }
}

impl AppState {
    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The settings the state was made with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Woken whenever a projector announces that a checkpoint moved
    /// ([`event_store::wake::CHECKPOINTS_CHANNEL`]).
    pub fn checkpoints(&self) -> &Notify {
        &self.inner.checkpoints
    }
}

/// Makes the shared state and starts listening for checkpoint announcements on `pool`. The
/// listener stops when the last clone of the state is dropped.
pub async fn app_state(pool: PgPool, settings: Settings) -> AppState {
    let (checkpoints, listener) =
        event_store::wake::listen_with_handle(pool.clone(), event_store::wake::CHECKPOINTS_CHANNEL);
    AppState {
        inner: Arc::new(Inner {
            pool,
            settings,
            checkpoints,
            listener,
        }),
    }
}

/// The whole application: the `/api/v1` routes, the OpenAPI document, and the shared plumbing
/// (`/healthz`, `/readyz`, `/metrics`, request ids, problem+json fallbacks, panic catching).
pub fn router(state: AppState) -> axum::Router {
    let pool = state.pool().clone();
    let admission = state.settings().admission;
    service_kit::http::with_plumbing_bounded(routes::router(state), pool, &admission)
}

/// Serves the query API on `settings.addr` until `shutdown` fires.
///
/// # Errors
///
/// The address cannot be bound, or the server fails.
pub async fn run(settings: Settings, pool: PgPool, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding {}", settings.addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %local, "query-api listening");
    let state = app_state(pool, settings).await;
    service_kit::http::serve(listener, router(state), shutdown)
        .await
        .context("serving the query API")
}
