//! Database settings, pool creation and start-up migration.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};

use crate::env::{EnvError, string_or, var_or};

/// The database URL used when `DATABASE_URL` is unset: this machine's PostgreSQL.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/chronicle";

/// A database URL that never prints its password.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.parse::<PgConnectOptions>() {
            Ok(options) => write!(
                f,
                "postgres://{}@{}:{}/{}",
                options.get_username(),
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            ),
            Err(_) => f.write_str("<unparsable database url>"),
        }
    }
}

/// Pool settings shared by the services.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`.
    pub url: DatabaseUrl,
    /// `DATABASE_MAX_CONNECTIONS` (default 16).
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS` (default 3000): waiting longer for a connection is a 503.
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Ok(Self {
            url: DatabaseUrl::new(string_or("DATABASE_URL", DEFAULT_DATABASE_URL)),
            max_connections: var_or("DATABASE_MAX_CONNECTIONS", 16)?,
            acquire_timeout: Duration::from_millis(var_or("DATABASE_ACQUIRE_TIMEOUT_MS", 3000)?),
        })
    }

    /// Opens a pool; connections refuse to sit idle inside a transaction, since an open
    /// transaction holds back every commit-safe reader of the log.
    pub async fn connect(&self) -> anyhow::Result<PgPool> {
        let options: PgConnectOptions = self
            .url
            .expose()
            .parse()
            .with_context(|| format!("parsing DATABASE_URL {:?}", self.url))?;
        let options = options
            .options([("idle_in_transaction_session_timeout", "30s")])
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        pool_options()
            // Every acquire's wait as an event, for chronicle_db_pool_acquire_duration_seconds
            // (sql_metrics); logged only where RUST_LOG asks for sqlx at debug.
            .acquire_time_level(tracing::log::LevelFilter::Debug)
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to {:?}", self.url))
    }
}

/// How long a pooled connection may sit idle before it is tested (one round trip) on its way
/// out of the pool.
pub const TEST_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The options every pool of the services starts from: a connection idle for
/// [`TEST_IDLE_AFTER`] or longer is pinged before it is handed out, one used a moment ago is
/// not. sqlx's default pings every connection on every acquire, one round trip per statement
/// on a busy pool (docs/decisions/0017-one-statement-idempotency.md). A connection that died
/// since its last use fails the statement it is given instead (an I/O error: 503, retry),
/// and sqlx drops it; under load connections are reused within milliseconds, and after a
/// pause the test is back.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= TEST_IDLE_AFTER {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

/// Creates the database named in `url` when it does not exist yet (connecting to the server's
/// `postgres` database to do so).
pub async fn create_database_if_missing(url: &DatabaseUrl) -> anyhow::Result<()> {
    let options: PgConnectOptions = url.expose().parse().context("parsing DATABASE_URL")?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("connecting to the server of {url:?}"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match sqlx::query(&format!("CREATE DATABASE \"{quoted}\""))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it at the same moment.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
            Err(error) => return Err(error).context("creating the database"),
        }
    }
    Ok(())
}

/// Whether `error` says the database is unreachable, overloaded or going away, rather than
/// anything about the statement: the answer is then 503 (retry later), never 500, and
/// projections wait and retry rather than blame an event.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_state(&code)),
        _ => false,
    }
}

/// SQLSTATEs of a failure that says nothing about the statement: connection exceptions (08),
/// insufficient resources (53), operator intervention such as a shutdown or cancel (57),
/// system errors (58), lock not available (55P03), read-only after a failover (25006), and
/// transaction rollbacks such as deadlocks and serialization failures (40).
fn is_transient_state(code: &str) -> bool {
    ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "55P03"
        || code == "25006"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_rollbacks_are_transient_but_bad_data_is_not() {
        for code in [
            "08006", "40001", "40P01", "53300", "57P01", "57014", "58030", "55P03", "25006",
        ] {
            assert!(is_transient_state(code), "{code}");
        }
        for code in ["22001", "23505", "42703", "P0001"] {
            assert!(!is_transient_state(code), "{code}");
        }
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
    }
}
