//! The projector binary: reads its settings, connects, migrates and runs until SIGINT/SIGTERM.

use anyhow::Context as _;
use service_kit::db::DatabaseSettings;
use service_kit::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let settings = projector::Settings::from_env()?;
    let database = DatabaseSettings::from_env()?;
    let pool = database.connect().await?;
    events::MIGRATOR
        .run(&pool)
        .await
        .context("running migrations")?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    projector::run(settings, pool, shutdown).await
}
