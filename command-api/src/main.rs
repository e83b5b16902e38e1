//! The command API binary.

use service_kit::db::DatabaseSettings;
use service_kit::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let settings = command_api::Settings::from_env()?;
    let pool = DatabaseSettings::from_env()?.connect().await?;
    event_store::MIGRATOR.run(&pool).await?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    command_api::run(settings, pool, shutdown).await
}
