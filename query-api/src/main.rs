//! The query API binary: reads its settings from the environment and serves until SIGINT or
//! SIGTERM.

use anyhow::Context as _;
use service_kit::db::DatabaseSettings;
use service_kit::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let settings = query_api::Settings::from_env()?;
    let pool = if let Some(replica) = query_api::read_database_settings()? {
        // A replica is read-only: the primary's services migrate it through replication.
        replica.connect().await?
    } else {
        let database = DatabaseSettings::from_env()?;
        // A fresh machine has no database yet; the first service to start creates it.
        service_kit::db::create_database_if_missing(&database.url).await?;
        let pool = database.connect().await?;
        event_store::MIGRATOR
            .run(&pool)
            .await
            .context("applying migrations")?;
        pool
    };
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    query_api::run(settings, pool, shutdown).await
}
