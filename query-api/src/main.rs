//! The query API binary: reads its settings from the environment and serves until SIGINT or
//! SIGTERM.

use service_kit::startup::{Database, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    serve(
        || {
            let settings = query_api::Settings::from_env()?;
            let database = match query_api::read_database_settings()? {
                // A replica is read-only: the primary's services migrate it through replication.
                Some(replica) => Database::new(replica),
                // A fresh machine has no database yet; the first service to start creates it.
                None => Database::from_env()?
                    .create_if_missing()
                    .migrate(&event_store::MIGRATOR),
            };
            Ok((settings, database))
        },
        query_api::run,
    )
    .await
}
