//! The command API binary: reads its settings, connects and migrates, then serves until SIGINT
//! or SIGTERM.

use service_kit::startup::{Database, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    serve(
        || {
            let settings = (
                command_api::Settings::from_env()?,
                command_api::auth::AuthSettings::from_env()?,
            );
            Ok((
                settings,
                Database::from_env()?.migrate(&event_store::MIGRATOR),
            ))
        },
        command_api::run,
    )
    .await
}
