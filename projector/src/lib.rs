//! Chronicle's projector: turns the event log into read models, each projection checkpointed
//! in the same transaction as its rows, and serves its health and metrics.
//!
//! Settings (environment variables, defaults that work on this machine):
//!
//! - `PROJECTOR_ADDR` (default `0.0.0.0:8082`): where `/healthz`, `/readyz` and `/metrics` are
//!   served.
//! - `PROJECTOR_BATCH_SIZE` (default 500): the most events applied in one transaction.
//! - `PROJECTOR_POLL_MS` (default 500): how long an idle projection waits for an append
//!   notification before reading the log anyway.
//! - the database variables of [`service_kit::db::DatabaseSettings`].

pub mod engine;
pub mod projections;

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

pub use engine::{
    CatchUp, EngineError, LoopSettings, Projection, ProjectionError, catch_up, run_projection,
};

/// The projector's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PROJECTOR_ADDR` (default `0.0.0.0:8082`).
    pub addr: SocketAddr,
    /// `PROJECTOR_BATCH_SIZE` (default 500, at least 1).
    pub batch_size: i64,
    /// `PROJECTOR_POLL_MS` (default 500, at least 1).
    pub poll_interval: Duration,
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
        let poll_ms: u64 = var_or("PROJECTOR_POLL_MS", 500)?;
        if poll_ms < 1 {
            return Err(out_of_range("PROJECTOR_POLL_MS", poll_ms));
        }
        Ok(Self {
            addr,
            batch_size,
            poll_interval: Duration::from_millis(poll_ms),
        })
    }

    /// The settings every projection loop runs with.
    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            batch_size: self.batch_size,
            poll_interval: self.poll_interval,
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
    vec![Arc::new(projections::ProjectsProjection)]
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

    let (wake, listener_task) =
        events::wake::listen_with_handle(pool.clone(), events::wake::EVENTS_CHANNEL);
    let mut loops = JoinSet::new();
    for projection in projections() {
        loops.spawn(run_projection(
            pool.clone(),
            projection,
            settings.loop_settings(),
            Arc::clone(&wake),
            shutdown.clone(),
        ));
    }

    let router = service_kit::http::with_plumbing(Router::new(), pool);
    let served = service_kit::http::serve(listener, router, shutdown.clone()).await;
    if served.is_err() {
        shutdown.trigger();
    }
    while let Some(joined) = loops.join_next().await {
        match joined {
            // Failures were logged and recorded where they happened.
            Ok(Ok(())) | Ok(Err(EngineError::Failed { .. })) => {}
            Ok(Err(error)) => tracing::error!(%error, "projection loop ended"),
            Err(error) => tracing::error!(%error, "projection loop panicked"),
        }
    }
    // The listener holds a pool connection for as long as it runs.
    listener_task.abort();
    served.context("serving HTTP")
}
