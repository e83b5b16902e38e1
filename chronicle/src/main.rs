//! The `chronicle` command.
//!
//! - `chronicle` or `chronicle serve`: one process running the whole system on this machine:
//!   creates and migrates the database, then serves the command API, the query API and the
//!   projector side by side until SIGINT/SIGTERM. Each part reads the same environment
//!   variables as its own binary, except `QUERY_DATABASE_URL`: the runner's query API reads
//!   the runner's database. Accounts need no setup here: without configured keys the runner
//!   generates dev keys once into `.chronicle/dev-secrets/` (and warns), creates the
//!   bootstrap admin (`admin@chronicle.test` / `chronicle-dev-admin` unless
//!   `AUTH_BOOTSTRAP_ADMIN_EMAIL`/`_PASSWORD` say otherwise), and logs every mail
//!   (`AUTH_MAIL_LOG`, on by default here). Browser pages on `http://localhost:5173` and
//!   `http://localhost:8000` may call both APIs unless `CORS_ALLOWED_ORIGINS` says otherwise.
//! - `chronicle export [filters]`: writes the event log (or a filtered part) to stdout as
//!   NDJSON, one envelope per line (`DATABASE_URL` names the database).
//! - `chronicle keygen`: prints a new Ed25519 signing key (PKCS#8 PEM) and an
//!   `AUTH_SECRET_KEY=` line; touches no database.
//! - `chronicle openapi [PATH]`: prints the one OpenAPI document of both APIs, or writes it to
//!   `PATH` (the committed `openapi/chronicle.json` must equal it); touches no database.

use std::io::Write as _;

use anyhow::Context as _;
use chronicle::export::{ExportOptions, export_ndjson};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use event_store::LogFilter;
use service_kit::db::DatabaseSettings;
use service_kit::shutdown::Shutdown;
use service_kit::startup::{Database, prepare};

/// Chronicle: an event-sourced CQRS backend.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate the database and run command API, query API and projector (the default).
    Serve,
    /// Write the event log (or part of it) to stdout as NDJSON, in commit-safe order.
    Export(ExportArgs),
    /// Print a new Ed25519 signing key (PKCS#8 PEM) and a new AUTH_SECRET_KEY line.
    Keygen,
    /// Print the OpenAPI document of both APIs, or write it to a file
    /// (`chronicle openapi openapi/chronicle.json`, then commit it).
    Openapi {
        /// Write the document here instead of to stdout (written whole, then renamed).
        path: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Start after this cursor (a `next` of the audit API, or the cursor an export printed).
    #[arg(long)]
    after: Option<String>,
    /// Only this aggregate type.
    #[arg(long)]
    aggregate_type: Option<String>,
    /// Only this aggregate id.
    #[arg(long)]
    aggregate_id: Option<String>,
    /// Only this event type.
    #[arg(long)]
    event_type: Option<String>,
    /// Only events whose metadata names this actor.
    #[arg(long)]
    actor: Option<String>,
    /// Recorded at or after (RFC 3339).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Recorded before (RFC 3339).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// Events read per database round trip.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    page_size: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Export(args) => export(args).await,
        Command::Keygen => {
            let mut out = std::io::stdout().lock();
            out.write_all(chronicle::keygen::keygen_text().as_bytes())
                .context("writing to stdout")?;
            out.flush().context("flushing stdout")
        }
        Command::Openapi { path } => {
            let text = chronicle::openapi::document_text().context("merging the documents")?;
            match path {
                Some(path) => chronicle::openapi::write(&path, &text),
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())
                        .context("writing to stdout")?;
                    out.flush().context("flushing stdout")
                }
            }
        }
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    // No log subscriber: stdout carries only the NDJSON, errors go to stderr.
    let after = match args.after.as_deref() {
        Some(raw) => events::position::decode_position(raw)
            .map_err(|_| anyhow::anyhow!("--after {raw:?} is not a cursor"))?,
        None => events::LogPosition::START,
    };
    let options = ExportOptions {
        after,
        filter: LogFilter {
            aggregate_types: args.aggregate_type.into_iter().collect(),
            aggregate_id: args.aggregate_id,
            event_type: args.event_type,
            actor: args.actor,
            from: args.from,
            to: args.to,
        },
        page_size: args.page_size,
    };
    let pool = DatabaseSettings::from_env()?.connect().await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let summary = export_ndjson(&pool, &options, &mut out).await?;
    out.flush().context("flushing stdout")?;
    eprintln!(
        "exported {} events; continue with --after {}",
        summary.exported,
        events::position::encode_position(summary.cursor)
    );
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let (settings, pool) = prepare(|| {
        let database = Database::from_env()?
            .create_if_missing()
            .migrate(&event_store::MIGRATOR);
        let mut projector_settings = projector::Settings::from_env()?;
        projector_settings.mail.log = chronicle::dev::mail_log();
        let settings = (
            database.settings().url.clone(),
            (
                command_api::Settings::from_env()?,
                chronicle::dev::auth_settings()?,
            ),
            query_api::Settings::from_env()?,
            projector_settings,
        );
        Ok((settings, database))
    })
    .await?;
    let (url, (mut command_settings, account_settings), mut query_settings, projector_settings) =
        settings;
    if command_settings.auth.signing_keys_pem.trim().is_empty() {
        // The dev runner alone may run without configured keys: it keeps its own, git-ignored.
        let dev = auth::dev::load_or_generate(std::path::Path::new(".chronicle/dev-secrets"))?;
        tracing::warn!("no AUTH_SIGNING_KEYS: using the dev key in .chronicle/dev-secrets");
        command_settings.auth.signing_keys_pem = dev.signing_pem.clone();
        query_settings.auth.signing_keys_pem = dev.signing_pem;
    }
    // The dev runner lets the PWA's dev and preview servers call it unless told otherwise.
    let cors =
        service_kit::frontend::CorsSettings::from_env_or(service_kit::frontend::DEV_ORIGINS)?;
    command_settings.cors = cors.clone();
    query_settings.cors = cors;
    tracing::info!(database = ?url, "database ready");

    let shutdown = Shutdown::on_signals();
    let mut parts = tokio::task::JoinSet::new();
    parts.spawn(named(
        "command-api",
        command_api::run(
            (command_settings, account_settings),
            pool.clone(),
            shutdown.clone(),
        ),
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
    // The exporter's last batch goes out on a thread that blocks on its HTTP call.
    let _ = tokio::task::spawn_blocking(service_kit::telemetry::shutdown_tracing).await;
    first_error.map_or(Ok(()), Err)
}

async fn named(
    name: &'static str,
    part: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    part.await.context(name)
}
