//! One process running the whole system on this machine: creates and migrates the database,
//! then serves the command API, the query API and the projector side by side until
//! SIGINT/SIGTERM. Each part reads the same environment variables as its own binary.

use anyhow::Context as _;
use service_kit::db::{DatabaseSettings, create_database_if_missing};
use service_kit::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let database = DatabaseSettings::from_env()?;
    let command_settings = command_api::Settings::from_env()?;
    let query_settings = query_api::Settings::from_env()?;
    let projector_settings = projector::Settings::from_env()?;

    create_database_if_missing(&database.url).await?;
    let pool = database.connect().await?;
    events::MIGRATOR
        .run(&pool)
        .await
        .context("running migrations")?;
    tracing::info!(database = ?database.url, "database ready");

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let mut parts = tokio::task::JoinSet::new();
    parts.spawn(named(
        "command-api",
        command_api::run(command_settings, pool.clone(), shutdown.clone()),
    ));
    parts.spawn(named(
        "query-api",
        query_api::run(query_settings, pool.clone(), shutdown.clone()),
    ));
    parts.spawn(named(
        "projector",
        projector::run(projector_settings, pool, shutdown.clone()),
    ));

    // When any part stops (an error, or shutdown), stop the others; report the first error.
    let mut first_error = None;
    while let Some(joined) = parts.join_next().await {
        shutdown.trigger();
        let outcome = joined
            .context("a part panicked")
            .and_then(|outcome| outcome);
        if let Err(error) = outcome {
            tracing::error!(error = %format!("{error:#}"), "stopped with an error");
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn named(
    name: &'static str,
    part: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    part.await.context(name)
}
