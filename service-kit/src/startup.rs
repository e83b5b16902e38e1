//! The one start-up path of every binary: telemetry, settings, database, shutdown signal, then
//! the library's `run(settings, pool, shutdown)`.
//!
//! A service's `main.rs` names only what differs between binaries: how it reads its settings
//! and which database it opens and prepares.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! # struct Settings;
//! # async fn run(_: Settings, _: sqlx::PgPool, _: service_kit::shutdown::Shutdown) -> anyhow::Result<()> { Ok(()) }
//! # static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;
//! use service_kit::startup::{Database, serve};
//!
//! serve(|| Ok((Settings, Database::from_env()?.migrate(&MIGRATOR))), run).await
//! # }
//! ```
//!
//! This crate knows no migrations of its own: the binary passes the event store's migrator in,
//! so plumbing never imports the event store (docs/decisions/0006-crate-boundaries.md).

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::db::{DatabaseSettings, create_database_if_missing};
use crate::env::EnvError;
use crate::shutdown::Shutdown;
use crate::telemetry;

/// The database a binary opens, and what it does to it before serving.
#[derive(Debug, Clone)]
pub struct Database<'m> {
    settings: DatabaseSettings,
    create_if_missing: bool,
    migrator: Option<&'m Migrator>,
}

impl<'m> Database<'m> {
    /// The database of `settings`, opened as it is: neither created nor migrated (a read-only
    /// replica, which the primary migrates through replication).
    pub fn new(settings: DatabaseSettings) -> Self {
        Self {
            settings,
            create_if_missing: false,
            migrator: None,
        }
    }

    /// The database named by `DATABASE_URL` and its pool variables
    /// ([`DatabaseSettings::from_env`]).
    pub fn from_env() -> Result<Self, EnvError> {
        DatabaseSettings::from_env().map(Self::new)
    }

    /// Creates the database first when the server has none of that name: on a fresh machine
    /// the first binary to start makes it.
    #[must_use]
    pub fn create_if_missing(mut self) -> Self {
        self.create_if_missing = true;
        self
    }

    /// Applies `migrator`'s pending migrations before serving.
    #[must_use]
    pub fn migrate(mut self, migrator: &'m Migrator) -> Self {
        self.migrator = Some(migrator);
        self
    }

    /// The settings the pool is opened with.
    pub fn settings(&self) -> &DatabaseSettings {
        &self.settings
    }

    /// Creates (if asked), connects, and migrates (if asked).
    ///
    /// # Errors
    ///
    /// The server cannot be reached, the database cannot be created, or a migration fails.
    pub async fn open(&self) -> anyhow::Result<PgPool> {
        if self.create_if_missing {
            create_database_if_missing(&self.settings.url).await?;
        }
        let pool = self.settings.connect().await?;
        if let Some(migrator) = self.migrator {
            migrator.run(&pool).await.context("running migrations")?;
        }
        Ok(pool)
    }
}

/// Everything before serving: installs the log subscriber, reads the settings with
/// `configure`, then opens and prepares the database it names.
///
/// `configure` runs after telemetry is up, as every binary did before this path existed, so
/// anything it logs is formatted like the rest.
///
/// # Errors
///
/// Whatever `configure` or [`Database::open`] returns.
pub async fn prepare<'m, S>(
    configure: impl FnOnce() -> anyhow::Result<(S, Database<'m>)>,
) -> anyhow::Result<(S, PgPool)> {
    telemetry::init_tracing();
    let (settings, database) = configure()?;
    let pool = database.open().await?;
    Ok((settings, pool))
}

/// [`prepare`], then `run(settings, pool, shutdown)` with a shutdown signal that SIGINT or
/// SIGTERM fires; flushes the spans not yet exported; returns what `run` returns.
///
/// # Errors
///
/// Whatever [`prepare`] or `run` returns.
pub async fn serve<'m, S, Run>(
    configure: impl FnOnce() -> anyhow::Result<(S, Database<'m>)>,
    run: impl FnOnce(S, PgPool, Shutdown) -> Run,
) -> anyhow::Result<()>
where
    Run: Future<Output = anyhow::Result<()>>,
{
    let (settings, pool) = prepare(configure).await?;
    let result = run(settings, pool, Shutdown::on_signals()).await;
    // The exporter's last batch goes out on a thread that blocks on its HTTP call.
    let _ = tokio::task::spawn_blocking(telemetry::shutdown_tracing).await;
    result
}
