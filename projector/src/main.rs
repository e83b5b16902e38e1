//! The projector binary: reads its settings, connects and migrates, then either runs (the
//! default, until SIGINT/SIGTERM) or performs one maintenance command:
//!
//! - `projector rebuild <projection>`: rebuilds the read model from position zero in a shadow
//!   and swaps it in while reads go on ([`projector::rebuild::rebuild`]).
//! - `projector verify <projection>`: rebuilds into a shadow and lists every row that differs
//!   from the live model; exits with status 1 when any does.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use service_kit::shutdown::Shutdown;
use service_kit::startup::{Database, prepare};

#[derive(Debug, Parser)]
#[command(
    name = "projector",
    about = "Chronicle's projector: read models and the RabbitMQ relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every projection and the relay (the default).
    Run,
    /// Rebuild a read model from the log in a shadow, then swap it in atomically.
    Rebuild {
        /// The projection's name, as in GET /api/v1/projections.
        projection: String,
    },
    /// Rebuild a read model in a shadow and report every row that differs from the live one.
    Verify {
        /// The projection's name.
        projection: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let (settings, pool) = prepare(|| {
        let settings = projector::Settings::from_env()?;
        Ok((
            settings,
            Database::from_env()?.migrate(&event_store::MIGRATOR),
        ))
    })
    .await?;
    let read_pool = match &settings.read_database {
        Some(read) => read.connect().await?,
        None => pool.clone(),
    };
    let find = |name: &str| {
        projector::projections()
            .into_iter()
            .find(|projection| projection.name() == name)
            .ok_or_else(|| projector::rebuild::RebuildError::UnknownProjection(name.to_owned()))
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            projector::run(settings, pool, Shutdown::on_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild { projection } => {
            let projection = find(&projection)?;
            let report = projector::rebuild::rebuild(
                &pool,
                &read_pool,
                &*projection,
                settings.batch_size,
                settings.dead_letter.applies_to(projection.name()),
            )
            .await?;
            println!(
                "rebuilt {}: {} events in {:.2} s ({:.0} events/s), checkpoint at position {}",
                report.projection,
                report.events,
                report.elapsed.as_secs_f64(),
                report.events_per_second(),
                report.checkpoint.position
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { projection } => {
            let projection = find(&projection)?;
            let differences =
                projector::rebuild::verify(&pool, &read_pool, &*projection, settings.batch_size)
                    .await?;
            for difference in &differences {
                println!(
                    "{} {}: live {} rebuilt {}",
                    difference.table,
                    difference.key,
                    difference
                        .live
                        .as_ref()
                        .map_or_else(|| "(missing)".to_owned(), ToString::to_string),
                    difference
                        .rebuilt
                        .as_ref()
                        .map_or_else(|| "(missing)".to_owned(), ToString::to_string),
                );
            }
            if differences.is_empty() {
                println!("{}: the live model equals a rebuild", projection.name());
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "{}: {} rows differ from a rebuild",
                    projection.name(),
                    differences.len()
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}
