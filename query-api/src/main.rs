//! The query API binary: reads its settings from the environment and serves until SIGINT or
//! SIGTERM.

use service_kit::startup::{Database, serve};

/// mimalloc rather than glibc's allocator, in the query API only: allocation was 12.5 % of its
/// samples under item reads, and with mimalloc they ran at 0.82-1.01x a bare axum handler
/// against 0.68-0.77x. The projector and the command API stay on glibc: mimalloc's retained
/// pages took the projector's peak RSS from 41 to 94 MiB (goal: under 64). docs/PERFORMANCE.md,
/// "The allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
